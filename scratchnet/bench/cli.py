"""The command line of the benchmark: ``python -m scratchnet.bench``."""
import argparse
import json

from ..backend import GPUUnavailableError, array_module_for
from .count_ops import run_count_ops
from .memory import measure_peak_memory, run_memory
from .profile import run_profile
from .speed import MODES, run_ablation, run_speed

TORCH_INSTALL_HINT = ("pip install 'scratchnet[bench]' (from a checkout: pip install -e \".[bench]\"; on a machine "
                      "without a GPU, pip install torch==2.13.0 first, or PyPI's default build brings gigabytes of "
                      "CUDA libraries)")


class TorchUnavailableError(RuntimeError):
    """The benchmark compares against PyTorch, and PyTorch cannot be imported."""


def require_torch():
    try:
        import torch
    except ImportError as e:
        raise TorchUnavailableError(f"this benchmark times PyTorch beside scratchnet, and PyTorch is not installed "
                                    f"({e}): {TORCH_INSTALL_HINT}. (--profile needs no PyTorch.)") from None
    return torch


def check_gpu_for_both():
    """Both frameworks must reach a GPU: say which cannot, before anything is built."""
    array_module_for("gpu")
    torch = require_torch()
    if not torch.cuda.is_available():
        raise GPUUnavailableError(f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only build?): the GPU "
                                  "benchmark needs a CUDA build of PyTorch (https://pytorch.org/get-started/)")


def mode_name(text):
    """--mode's argument: one of MODES; "plain", the name of a network before the split into two tiers, is explained."""
    if text == "plain":
        raise argparse.ArgumentTypeError(
            "'plain' was the channel-major kn2row network of before the split into two tiers; time the textbook "
            "network with --mode textbook, or see --ablation's rows for the steps in between")
    if text not in MODES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(MODES)})")
    return text


def build_parser():
    p = argparse.ArgumentParser(prog="python -m scratchnet.bench",
                                description="Benchmark a DenseNet-BC training step against PyTorch's, side by side.")
    p.add_argument("--depth", type=int, default=40, help="DenseNet-BC depth L (default: %(default)s)")
    p.add_argument("--k", type=int, default=12, help="growth rate (default: %(default)s)")
    p.add_argument("--batch", type=int, default=64, help="images per training step (default: %(default)s)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="gpu: scratchnet on CuPy against PyTorch on CUDA (default: %(default)s)")
    p.add_argument("--mode", dest="modes", action="append", type=mode_name, metavar="{efficient,textbook}",
                   help="scratchnet's DenseNet(s) to time: efficient (the memory-efficient one, from the fast tier) "
                        "or textbook (scratchnet.ops only); repeat the flag for both (default: efficient)")
    p.add_argument("--repeats", type=int, default=7, help="alternating timing rounds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2, help="training steps per round (default: %(default)s)")
    p.add_argument("--memory", action="store_true", help="measure peak memory against depth instead of speed")
    p.add_argument("--ablation", action="store_true",
                   help="time the textbook implementation and each optimisation added to it in turn")
    p.add_argument("--profile", action="store_true",
                   help="cProfile scratchnet's steps (no PyTorch) and print where the time goes")
    p.add_argument("--count-ops", action="store_true",
                   help="count the array operations (on a GPU: kernel launches) and host synchronisations of one "
                        "step of the training loop, by family and by function (no PyTorch, no GPU needed)")
    p.add_argument("--depths", type=int, nargs="+", default=[40, 100, 190],
                   help="depths for --memory (default: 40 100 190)")
    p.add_argument("--plot", default=None,
                   help="with --memory: save a plot of memory against depth to this file (needs matplotlib)")
    p.add_argument("--peak-memory-of", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    args.modes = args.modes or ["efficient"]
    if args.count_ops and args.device == "gpu":
        p.error("--count-ops counts on the CPU, and what it counts is what the GPU would launch: leave out --device")
    needs_torch = not args.profile and not args.count_ops and not (args.peak_memory_of or "").startswith("scratchnet:")
    try:
        if needs_torch:
            require_torch()
        if args.device == "gpu" and not args.peak_memory_of:   # (the measuring subprocesses were checked by their parent)
            check_gpu_for_both() if needs_torch else array_module_for("gpu")
    except (TorchUnavailableError, GPUUnavailableError) as e:
        p.error(str(e))
    if args.peak_memory_of:
        print(json.dumps({"peak_mib": measure_peak_memory(args)}))
    elif args.memory:
        run_memory(args)
    elif args.ablation:
        run_ablation(args)
    elif args.profile:
        run_profile(args)
    elif args.count_ops:
        run_count_ops(args)
    else:
        run_speed(args)
    return 0
