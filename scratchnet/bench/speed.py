"""Training steps of scratchnet and PyTorch on the same DenseNet-BC, timed side by side.

A training step is forward, loss, backward and the SGD update (Nesterov momentum, weight
decay), at float32, on the same weights (copied through the state dict) and the same random
batch. The runners are timed alternately, ``--steps`` steps at a time, ``--repeats`` times,
and the medians compared: on a shared machine only the ratio of numbers measured side by
side means anything.
"""
import contextlib
import time
from functools import partial

import numpy as np

from .. import ops
from ..backend import cpu_threads, to_device, using_cpu_threads
from ..models import FastLayerFactory, densenet_cifar
from ..optim import SGD

MODES = ("efficient", "textbook")   # scratchnet's memory-efficient DenseNet (fast tier) and its textbook one


def build_scratchnet(args, mode="efficient", state=None, layers=None, threads=None):
    """A training step of scratchnet's DenseNet-BC -> (model, step).

    mode: "efficient" or "textbook"; layers: the efficient network's layer factory instead (``--ablation``'s rows);
    threads: element-wise CPU threads during the step (None: as ``backend`` is set).
    """
    model = densenet_cifar(args.depth, args.k, memory_efficient=(mode == "efficient"), layers=layers)
    if state is not None:
        model.load_state_dict(state)
    model.to(args.device)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x, y = batch(args)
    x, y = to_device(x, args.device), to_device(y, args.device)

    def step():
        with using_cpu_threads(threads) if threads is not None else contextlib.nullcontext():
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
    ("textbook (scratchnet.ops): NCHW, im2col, separate BN and ReLU, 1 core", dict(mode="textbook", threads=1)),
    ("+ fast tier: channel-major layout, fused BN-ReLU",
     dict(layers=partial(FastLayerFactory, conv_method="im2col", shared_buffers=False), threads=1)),
    ("+ kn2row for the 3x3 convolutions", dict(layers=partial(FastLayerFactory, shared_buffers=False), threads=1)),
    ("+ shared-buffer dense blocks, statistics once per map", dict(threads=1)),
    ("+ element-wise work on every core", dict()),
]


def run_ablation(args):
    """Time the road from the textbook implementation to the fast one, one idea at a time."""
    torch_name, torch_step, state, _ = torch_and_state(args)
    runners = {name: build_scratchnet(args, state=state, **options)[1] for name, options in ABLATION}
    runners[torch_name] = torch_step
    medians = alternate(runners, args)
    return report(f"What each idea buys: DenseNet-BC (L={args.depth}, k={args.k}), batch {args.batch}, {args.device}; "
                  f"median of {args.repeats} x {args.steps} steps", medians, ABLATION[0][0], args)
