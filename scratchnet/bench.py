"""Benchmark a DenseNet training step against PyTorch's, on the same model, side by side.

    python -m scratchnet.bench                                   # DenseNet-BC (L=40, k=12), batch 64, CPU
    python -m scratchnet.bench --depth 100 --mode plain
    python -m scratchnet.bench --memory --depths 40 100 190 --plot docs/img/memory.png
    python -m scratchnet.bench --ablation                        # what each optimisation bought
    python -m scratchnet.bench --profile                         # where scratchnet's step spends its time
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
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

from . import ops
from .backend import THREADS_ENV_VAR, GPUUnavailableError, array_module_for, cpu_threads, to_device
from .models import densenet_cifar
from .nn import Conv2d
from .optim import SGD

MODES = ("efficient", "plain")


def build_scratchnet(args, mode, state=None, layout="CNHW", conv_method="auto", threads=None):
    """A training step of scratchnet's DenseNet-BC; the last three arguments exist for --ablation."""
    model = densenet_cifar(args.depth, args.k, memory_efficient=(mode == "efficient"), layout=layout)
    if state is not None:
        model.load_state_dict(state)
    for _, module in model.named_modules():
        if isinstance(module, Conv2d):
            module.method = conv_method
    model.to(args.device)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x, y = batch(args)
    x, y = to_device(x, args.device), to_device(y, args.device)

    def step():
        with thread_count(threads):
            loss, dlogits = ops.softmax_cross_entropy(model(x), y)
            optimizer.zero_grad()
            model.backward(dlogits)
            optimizer.step()
        if args.device == "gpu":
            import cupy
            cupy.cuda.Stream.null.synchronize()

    return model, step


@contextlib.contextmanager
def thread_count(threads):
    """Run with $SCRATCHNET_THREADS set to ``threads`` (None: leave it as it is)."""
    previous = os.environ.get(THREADS_ENV_VAR)
    if threads is not None:
        os.environ[THREADS_ENV_VAR] = str(threads)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(THREADS_ENV_VAR, None)
        else:
            os.environ[THREADS_ENV_VAR] = previous


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


def alternate(runners, args):
    """Time each runner ``args.steps`` steps at a time, in turn, ``args.repeats`` rounds -> median seconds per step."""
    for step in runners.values():            # warm up: first-touch allocations, library start-up
        step()
    seconds = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, step in runners.items():   # alternating, so slow spells of the machine hit all alike
            seconds[name].append(time_steps(step, args.steps))
    return {name: float(np.median(times)) for name, times in seconds.items()}


def report(title, medians, reference, args):
    """Print images/s, ms/step and the speed relative to ``reference`` (a key of medians)."""
    print(f"{title}\n  (speed relative to: {reference})")
    results = {}
    for name, median in medians.items():
        results[name] = {"step_s": median, "images_per_s": args.batch / median, "ratio": medians[reference] / median}
        print(f"  {name:<56} {args.batch / median:8.1f} images/s  {median * 1000:8.1f} ms/step  "
              f"{medians[reference] / median:5.2f}x")
    return results


def torch_and_state(args):
    import torch
    torch_model, torch_step = build_torch(args)
    state = {name: value.detach().cpu().numpy() for name, value in torch_model.state_dict().items()}
    return f"PyTorch {torch.__version__}", torch_step, state, torch.get_num_threads()


def run_speed(args):
    torch_name, torch_step, state, torch_threads = torch_and_state(args)
    runners = {f"scratchnet ({mode})": build_scratchnet(args, mode, state)[1] for mode in args.modes}
    runners[torch_name] = torch_step
    medians = alternate(runners, args)
    threads = f"{torch_threads} PyTorch threads, {cpu_threads()} scratchnet threads"
    return report(f"DenseNet-BC (L={args.depth}, k={args.k}), batch {args.batch}, float32, {args.device} ({threads}); "
                  f"median of {args.repeats} x {args.steps} steps", medians, torch_name, args)


ABLATION = [   # (what changed, build_scratchnet options), each row adding one idea to the row above
    ("textbook: NCHW, im2col, separate BN and ReLU, 1 core", dict(mode="plain", layout="NCHW",
                                                                  conv_method="im2col", threads=1)),
    ("+ channel-major layout (C, N, H, W)", dict(mode="plain", conv_method="im2col", threads=1)),
    ("+ kn2row for the 3x3 convolutions", dict(mode="plain", threads=1)),
    ("+ memory-efficient block, fused BN-ReLU, shared stats", dict(mode="efficient", threads=1)),
    ("+ element-wise work on every core", dict(mode="efficient")),
]


def run_ablation(args):
    """Time the road from the textbook implementation to the fast one, one idea at a time."""
    torch_name, torch_step, state, _ = torch_and_state(args)
    runners = {name: build_scratchnet(args, state=state, **options)[1] for name, options in ABLATION}
    runners[torch_name] = torch_step
    medians = alternate(runners, args)
    return report(f"What each idea buys: DenseNet-BC (L={args.depth}, k={args.k}), batch {args.batch}, {args.device}; "
                  f"median of {args.repeats} x {args.steps} steps", medians, ABLATION[0][0], args)


def run_profile(args, top=30):
    """cProfile ``args.repeats`` x ``args.steps`` steps of scratchnet (each mode) after a warm-up; print the top functions.

    Sorted by total time spent in a function itself (not in what it calls): on the CPU that
    is where NumPy works; on a GPU, where Python issues the kernels, since CuPy calls only queue them.
    """
    import cProfile
    import io
    import pstats
    steps = args.repeats * args.steps
    for mode in args.modes:
        _, step = build_scratchnet(args, mode)
        step()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(top)
        print(f"scratchnet ({mode}), DenseNet-BC (L={args.depth}, k={args.k}), batch {args.batch}, {args.device}: "
              f"{stats.total_calls / steps:,.0f} Python-level calls and {stats.total_tt / steps * 1000:.1f} ms "
              f"per step under the profiler ({steps} steps)")
        print(text.getvalue())
        print("  time per step by source file (a function's own time, as above):")
        for where, seconds in sorted(own_time_by_file(stats).items(), key=lambda item: -item[1]):
            print(f"  {where:<40} {seconds / steps * 1000:8.2f} ms  {seconds / stats.total_tt:6.1%}")
        print()


def own_time_by_file(stats):
    """pstats -> {source file: seconds}, scratchnet's files by name, everything else (NumPy, CuPy, Python) together."""
    totals = {}
    for (filename, _, _), (_, _, own_seconds, _, _) in stats.stats.items():
        path = filename.replace(os.sep, "/")
        where = "scratchnet/" + path.rsplit("scratchnet/", 1)[1] if "/scratchnet/" in path else "NumPy, CuPy, Python"
        totals[where] = totals.get(where, 0.0) + own_seconds
    return totals


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
    """Growth of allocated GPU memory over the model and batch, at its peak during two steps, in MiB.

    The same measure for both: what the framework's allocator handed out (not what its
    cache holds). PyTorch keeps that peak itself; CuPy's pool does not, so every
    allocation goes through a wrapper that records it.
    """
    if framework == "torch":
        import torch
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - baseline) / 2**20
    import cupy
    pool = cupy.get_default_memory_pool()
    baseline = peak = pool.used_bytes()

    def malloc_recording_peak(size):
        nonlocal peak
        memory = pool.malloc(size)
        peak = max(peak, pool.used_bytes())
        return memory

    cupy.cuda.set_allocator(malloc_recording_peak)
    try:
        step()
        step()
        cupy.cuda.Stream.null.synchronize()
    finally:
        cupy.cuda.set_allocator(pool.malloc)
    return (peak - baseline) / 2**20


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


def check_gpu_for_both():
    """Both frameworks must reach a GPU: say which cannot, before anything is built."""
    array_module_for("gpu")
    import torch
    if not torch.cuda.is_available():
        raise GPUUnavailableError(f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only build?): the GPU "
                                  "benchmark needs a CUDA build of PyTorch (https://pytorch.org/get-started/)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scratchnet.bench", description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=40, help="DenseNet-BC depth L (default: %(default)s)")
    p.add_argument("--k", type=int, default=12, help="growth rate (default: %(default)s)")
    p.add_argument("--batch", type=int, default=64, help="images per training step (default: %(default)s)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="gpu: scratchnet on CuPy against PyTorch on CUDA (default: %(default)s)")
    p.add_argument("--mode", dest="modes", action="append", choices=MODES,
                   help="scratchnet's DenseNet mode(s) to time, repeat the flag for both (default: efficient)")
    p.add_argument("--repeats", type=int, default=7, help="alternating timing rounds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2, help="training steps per round (default: %(default)s)")
    p.add_argument("--memory", action="store_true", help="measure peak memory against depth instead of speed")
    p.add_argument("--ablation", action="store_true",
                   help="time the textbook implementation and each optimisation added to it in turn")
    p.add_argument("--profile", action="store_true",
                   help="cProfile scratchnet's steps (no PyTorch) and print where the time goes")
    p.add_argument("--depths", type=int, nargs="+", default=[40, 100, 190],
                   help="depths for --memory (default: 40 100 190)")
    p.add_argument("--plot", default=None,
                   help="with --memory: save a plot of memory against depth to this file (needs matplotlib)")
    p.add_argument("--peak-memory-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = args.modes or ["efficient"]
    if args.device == "gpu" and not args.peak_memory_of:    # (the measuring subprocesses were checked by their parent)
        try:
            check_gpu_for_both()
        except GPUUnavailableError as e:
            p.error(str(e))
    if args.peak_memory_of:
        print(json.dumps({"peak_mib": measure_peak_memory(args)}))
    elif args.memory:
        run_memory(args)
    elif args.ablation:
        run_ablation(args)
    elif args.profile:
        run_profile(args)
    else:
        run_speed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
