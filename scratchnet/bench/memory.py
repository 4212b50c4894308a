"""Peak memory of a training step against depth, each framework measured in a fresh process.

CPU: the growth of the process's peak resident memory (``VmHWM``) during two training steps;
GPU: the allocator's peak growth, for both frameworks.
"""
import json
import os
import subprocess
import sys

from .speed import MODES, build_scratchnet, build_torch


def measure_peak_memory(args):
    """In this process: peak memory growth of two training steps, in MiB (run in a fresh process)."""
    framework, mode = args.peak_memory_of.split(":")
    if framework == "torch":
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
