"""Time one DenseNet-BC training step of two (or more) scratchnet checkouts side by side.

    python tools/step_time_ab.py before=/tmp/scratchnet-old after=.
    python tools/step_time_ab.py spin=.,OPENBLAS_THREAD_TIMEOUT=28 short=.,OPENBLAS_THREAD_TIMEOUT=4

Each side is LABEL=PATH[,VAR=VALUE...]: a checkout (its ``scratchnet`` package is imported from
PATH) and environment variables for its processes. Every round starts one fresh process per side,
in turn, which builds the model (``densenet_cifar(depth, k, memory_efficient=True)``, the training
default), takes a warm-up step and times ``--steps`` more; the sides alternate so that slow spells
of a shared machine hit them alike. Prints the median step time of each side and the median over
rounds of each side's time relative to the first side's.

Only APIs that every scratchnet version has are used (``densenet_cifar``, ``ops.softmax_cross_entropy``,
``optim.SGD``), so an old checkout can be compared with a new one.
"""
import argparse
import json
import os
import subprocess
import sys
import statistics

CHILD = """
import scratchnet                       # first, as `python -m scratchnet.train` imports it
import json, sys, time
import numpy as np
from scratchnet import ops
from scratchnet.models import densenet_cifar
from scratchnet.optim import SGD

depth, k, batch, steps = (int(a) for a in sys.argv[1:5])
model = densenet_cifar(depth, k, memory_efficient=True)
optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
y = rng.integers(0, 10, batch)

def step():
    loss, dlogits = ops.softmax_cross_entropy(model(x), y)
    optimizer.zero_grad()
    model.backward(dlogits)
    optimizer.step()

step()
seconds = []
for _ in range(steps):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def parse_side(text):
    label, _, rest = text.partition("=")
    path, *assignments = rest.split(",")
    if not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH[,VAR=VALUE...], got {text!r}")
    env = dict(a.split("=", 1) for a in assignments)
    return label, os.path.abspath(path), env


def run_side(path, env, args):
    full_env = {**os.environ, **env, "PYTHONPATH": path}
    command = [sys.executable, "-c", CHILD, str(args.depth), str(args.k), str(args.batch), str(args.steps)]
    result = subprocess.run(command, cwd=path, env=full_env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the run in {path} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sides", nargs="+", type=parse_side, help="LABEL=PATH[,VAR=VALUE...]")
    parser.add_argument("--depth", type=int, default=40)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default: %(default)s)")
    args = parser.parse_args()
    times = {label: [] for label, _, _ in args.sides}
    ratios = {label: [] for label, _, _ in args.sides}
    for round_number in range(args.rounds):
        medians = {}
        for label, path, env in args.sides:
            seconds = run_side(path, env, args)
            times[label] += seconds
            medians[label] = statistics.median(seconds)
        first = args.sides[0][0]
        for label in medians:
            ratios[label].append(medians[label] / medians[first])
        print(f"round {round_number + 1}: " + "  ".join(f"{label} {1000 * m:.0f} ms" for label, m in medians.items()),
              flush=True)
    print(f"DenseNet-BC (L={args.depth}, k={args.k}), memory-efficient, batch {args.batch}: "
          f"median step time over {args.rounds} rounds x {args.steps} steps")
    for label, path, env in args.sides:
        print(f"  {label:<12} {1000 * statistics.median(times[label]):7.1f} ms   "
              f"{statistics.median(ratios[label]):5.3f}x the time of {args.sides[0][0]}   ({path} {env or ''})")


if __name__ == "__main__":
    main()
