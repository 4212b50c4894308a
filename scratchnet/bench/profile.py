"""Where scratchnet's training step spends its time: cProfile, summed by source file. Needs no PyTorch."""
import cProfile
import io
import os
import pstats

from .speed import build_scratchnet


def run_profile(args, top=30):
    """cProfile ``args.repeats`` x ``args.steps`` steps of scratchnet (each mode) after a warm-up; print the top functions.

    Sorted by total time spent in a function itself (not in what it calls): on the CPU that
    is where NumPy works; on a GPU, where Python issues the kernels, since CuPy calls only queue them.
    """
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
