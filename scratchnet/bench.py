"""Benchmark a DenseNet training step against PyTorch's, on the same model, side by side.

    python -m scratchnet.bench                                   # DenseNet-BC (L=40, k=12), batch 64, CPU
    python -m scratchnet.bench --depth 100 --mode plain
    python -m scratchnet.bench --memory --depths 40 100 190 --plot docs/img/memory.png
    python -m scratchnet.bench --device gpu                      # CuPy against PyTorch on CUDA (cuDNN)

A training step is forward, loss, backward and the SGD update (Nesterov momentum,
weight decay), at float32, on the same weights (copied through the state dict) and
the same random batch. The two are timed alternately, ``--steps`` steps at a
time, ``--repeats`` times, and the medians compared: on a shared machine only
the ratio of numbers measured side by side means anything.

Peak memory is measured for each framework in a fresh process: the growth of
the process's peak resident memory during two training steps (CPU), or the
allocator's peak (GPU). Needs PyTorch (``pip install torch``), which scratchnet
itself never uses.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from . import ops
from .backend import cpu_threads, to_device
from .models import densenet_cifar
from .optim import SGD

MODES = ("efficient", "plain")


def build_scratchnet(args, mode, state=None):
    model = densenet_cifar(args.depth, args.k, memory_efficient=(mode == "efficient"))
    if state is not None:
        model.load_state_dict(state)
    model.to(args.device)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x, y = batch(args)
    x, y = to_device(x, args.device), to_device(y, args.device)

    def step():
        loss, dlogits = ops.softmax_cross_entropy(model(x), y)
        optimizer.zero_grad()
        model.backward(dlogits)
        optimizer.step()
        if args.device == "gpu":
            import cupy
            cupy.cuda.Stream.null.synchronize()

    return model, step


def build_torch(args):
    import torch
    from .torch_reference import torch_densenet_cifar
    torch.manual_seed(0)
    device = "cuda" if args.device == "gpu" else "cpu"
    model = torch_densenet_cifar(args.depth, args.k, bc=True).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x, y = (torch.from_numpy(a).to(device) for a in batch(args))

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return model, step


def batch(args):
    rng = np.random.default_rng(0)
    return rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, args.batch)


def time_steps(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def run_speed(args):
    import torch
    torch_model, torch_step = build_torch(args)
    state = {name: value.detach().cpu().numpy() for name, value in torch_model.state_dict().items()}
    runners = {f"scratchnet ({mode})": build_scratchnet(args, mode, state)[1] for mode in args.modes}
    runners[f"PyTorch {torch.__version__}"] = torch_step
    for step in runners.values():            # warm up: first-touch allocations, library start-up
        step()
    seconds = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, step in runners.items():   # alternating, so slow spells of the machine hit all alike
            seconds[name].append(time_steps(step, args.steps))
    threads = f"{torch.get_num_threads()} PyTorch threads, {cpu_threads()} scratchnet threads"
    print(f"DenseNet-BC (L={args.depth}, k={args.k}), batch {args.batch}, float32, {args.device} ({threads}); "
          f"median of {args.repeats} x {args.steps} steps")
    reference = np.median(seconds[f"PyTorch {torch.__version__}"])
    results = {}
    for name, times in seconds.items():
        median = float(np.median(times))
        results[name] = {"step_s": median, "images_per_s": args.batch / median, "ratio": reference / median}
        print(f"  {name:<24} {args.batch / median:8.1f} images/s   {median * 1000:8.1f} ms/step   "
              f"{reference / median:5.2f}x PyTorch")
    return results


def measure_peak_memory(args):
    """In this process: peak memory growth of two training steps, in MiB (run in a fresh process)."""
    framework, mode = args.peak_memory_of.split(":")
    if framework == "torch":
        import torch
        _, step = build_torch(args)
    else:
        _, step = build_scratchnet(args, mode)
    if args.device == "gpu":
        return _gpu_peak(framework, step)
    baseline = _status_kib("VmRSS")
    step()
    step()
    return (_status_kib("VmHWM") - baseline) / 1024


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _gpu_peak(framework, step):
    if framework == "torch":
        import torch
        torch.cuda.reset_peak_memory_stats()
        step()
        step()
        return torch.cuda.max_memory_allocated() / 2**20
    import cupy
    pool = cupy.get_default_memory_pool()
    before = pool.used_bytes()
    step()
    step()
    return (pool.total_bytes() - before) / 2**20        # the pool keeps what the peak needed


def peak_memory_in_subprocess(args, who, depth):
    command = [sys.executable, "-m", "scratchnet.bench", "--peak-memory-of", who, "--depth", str(depth),
               "--k", str(args.k), "--batch", str(args.batch), "--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise RuntimeError(f"measuring {who} at depth {depth} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def run_memory(args):
    who = {f"scratchnet ({mode})": f"scratchnet:{mode}" for mode in MODES}
    who["PyTorch"] = "torch:-"
    table = {name: [peak_memory_in_subprocess(args, spec, d) for d in args.depths] for name, spec in who.items()}
    print(f"Peak memory of a training step (MiB), DenseNet-BC k={args.k}, batch {args.batch}, {args.device}")
    print("| depth | " + " | ".join(table) + " |")
    print("| --- " * (len(table) + 1) + "|")
    for i, depth in enumerate(args.depths):
        print(f"| {depth} | " + " | ".join(f"{values[i]:.0f}" for values in table.values()) + " |")
    if args.plot:
        plot_memory(args, table)
    return table


def plot_memory(args, table):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in table.items():
        ax.plot(args.depths, values, marker="o", label=name)
    ax.set(xlabel="depth L", ylabel="peak memory of a training step (MiB)",
           title=f"DenseNet-BC k={args.k}, batch {args.batch}, {args.device}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"plot written to {args.plot}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scratchnet.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--depth", type=int, default=40)
    p.add_argument("--k", type=int, default=12)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--mode", dest="modes", action="append", choices=MODES,
                   help="scratchnet's DenseNet mode(s) to time (default: efficient)")
    p.add_argument("--repeats", type=int, default=7, help="alternating timing rounds")
    p.add_argument("--steps", type=int, default=2, help="training steps per round")
    p.add_argument("--memory", action="store_true", help="measure peak memory against depth instead of speed")
    p.add_argument("--depths", type=int, nargs="+", default=[40, 100, 190], help="depths for --memory")
    p.add_argument("--plot", default=None, help="with --memory: save a plot of memory against depth here")
    p.add_argument("--peak-memory-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = args.modes or ["efficient"]
    if args.peak_memory_of:
        print(json.dumps({"peak_mib": measure_peak_memory(args)}))
    elif args.memory:
        run_memory(args)
    else:
        run_speed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
