"""Checks for lecture 10 (when training goes wrong)."""
import math

import numpy as np

from scratchnet import ops
from scratchnet.data import normalize, synthetic_cifar
from scratchnet.models import densenet_cifar
from scratchnet.monitor import TrainingMonitor, weight_rows
from scratchnet.nn import Linear, ReLU, Sequential
from scratchnet.optim import SGD, cosine_lr

from . import ExerciseFailed, exercise, require

TRIAL_STEPS = 20          # a trial run: this many SGD steps on one fixed batch
BLOW_UP = 3.0             # a trial diverges when its loss turns non-finite or exceeds this many times its first


def _tiny_problem():
    """64 synthetic images, averaged down to 8x8 (192 numbers each), normalised; and their labels."""
    data = synthetic_cifar(num_train=64, num_test=1, seed=0)
    x = normalize(data.train_images, data.mean, data.std)
    return x.reshape(64, 3, 8, 4, 8, 4).mean(axis=(3, 5)).reshape(64, -1), data.train_labels


def trial(lr, steps=TRIAL_STEPS):
    """Train a tiny network without batch norm (Linear 192->32, ReLU, Linear 32->10; SGD, momentum 0.9) for
    ``steps`` steps at ``lr`` on one fixed batch. -> (diverged, step, loss): diverged when the loss became
    non-finite or more than BLOW_UP times the first step's; step: where (or ``steps``); loss: the last one."""
    x, y = _tiny_problem()
    rng = np.random.default_rng(0)
    model = Sequential(Linear(192, 32, rng=rng), ReLU(), Linear(32, 10, rng=rng))
    optimizer = SGD(model.parameters(), lr, momentum=0.9)
    first = None
    for step in range(steps):
        loss, dlogits = ops.softmax_cross_entropy(model(x), y)
        loss = float(loss)
        first = loss if first is None else first
        if not math.isfinite(loss) or loss > BLOW_UP * first:
            return True, step, loss
        model.zero_grad()
        model.backward(dlogits)
        optimizer.step()
    return False, steps, loss


def diverges(lr):
    """Whether ``trial(lr)`` diverges."""
    return trial(lr)[0]


def _call(function, *args):
    """The student's function on args; an error other than NotImplementedError becomes an ExerciseFailed."""
    try:
        return function(*args)
    except (NotImplementedError, ExerciseFailed):
        raise
    except Exception as e:
        raise ExerciseFailed(f"it raised {type(e).__name__}: {e}") from None


@exercise("Exercise 1, the learning rate where training diverges")
def check_find_divergence_lr(find_divergence_lr):
    """find_divergence_lr(diverges) -> an lr at which diverges(lr) is True and diverges(lr / 2) is False."""
    calls = []

    def counted(lr):
        require(len(calls) < 60, "more than 60 trial runs: double the learning rate each time, from 1e-3")
        calls.append(float(lr))
        return diverges(lr)

    lr = _call(find_divergence_lr, counted)
    require(isinstance(lr, (int, float, np.floating)) and math.isfinite(lr) and lr > 0,
            f"the answer must be a positive number (a learning rate), got {lr!r}")
    lr = float(lr)
    at, at_half = trial(lr), trial(lr / 2)
    require(at[0], f"at lr {lr:.4g} the run does not diverge ({TRIAL_STEPS} steps, last loss {at[2]:.3g}): the "
                   "answer must be a rate that diverges (did you return the last rate that was still fine?)")
    require(not at_half[0], f"lr {lr:.4g} diverges, but so does half of it, {lr / 2:.4g} (at step {at_half[1]}, "
                            f"loss {at_half[2]:.3g}): the answer must be within a factor 2 of where divergence "
                            "begins (search in steps of 2, not 10)")
    return (f"lr {lr:.4g} diverges (loss {at[2]:.3g} at step {at[1]}), lr {lr / 2:.4g} trains "
            f"(loss {at_half[2]:.3g} after {TRIAL_STEPS} steps); {len(calls)} trial runs")


def _warmup_reference(t, base_lr, warmup, total):
    if t < warmup:
        return base_lr * (t + 1) / warmup
    return cosine_lr(t - warmup, base_lr, total - warmup)


WARMUP_CASES = [(0.1, 5, 40), (1.0, 10, 100), (0.05, 1, 12), (0.1, 0, 20)]


@exercise("Exercise 2, a warm-up schedule")
def check_warmup_lr(warmup_lr):
    """warmup_lr(t, base_lr, warmup, total): base_lr * (t + 1) / warmup for t < warmup, then
    cosine_lr(t - warmup, base_lr, total - warmup), for every step t of several runs."""
    for base_lr, warmup, total in WARMUP_CASES:
        case = f"base_lr {base_lr}, warmup {warmup}, total {total}"
        got = [_call(warmup_lr, t, base_lr, warmup, total) for t in range(total)]
        expected = [_warmup_reference(t, base_lr, warmup, total) for t in range(total)]
        for t, (g, e) in enumerate(zip(got, expected)):
            if not (isinstance(g, (int, float, np.floating)) and math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-15)):
                hint = ""
                if t == 0 and warmup:
                    hint = (" Step 0 is the first step of warm-up and should already move the weights: "
                            "base_lr * 1 / warmup, not 0.")
                elif t == warmup:
                    hint = (" The first step after warm-up should be at the full base_lr: the cosine starts at "
                            "t - warmup = 0 and runs over the remaining total - warmup steps.")
                elif t < warmup:
                    hint = " During warm-up the rate rises linearly: base_lr * (t + 1) / warmup."
                raise ExerciseFailed(f"{case}: at step {t} the rate is {g!r}, expected {e:.6g}.{hint}")
    return f"equal to the closed form at every step of {len(WARMUP_CASES)} runs (one without warm-up)"


def _toy_records():
    """The monitor's records of a tiny DenseNet-BC trained 3 steps at lr 100 (every step recorded), and of
    the same network trained 3 steps at lr 0.01."""
    data = synthetic_cifar(num_train=16, num_test=1, seed=0)
    x = normalize(data.train_images, data.mean, data.std)[:, :, ::2, ::2].copy()     # 16x16: fast
    y = data.train_labels
    records = {}
    for lr in (100.0, 0.01):
        model = densenet_cifar(depth=10, k=4, memory_efficient=True, seed=0)
        optimizer = SGD(model.parameters(), lr, momentum=0.9, nesterov=True)
        monitor = TrainingMonitor(model, every=1)
        for step in range(3):
            with monitor.step(step):
                loss, dlogits = ops.softmax_cross_entropy(model(x), y)
                model.zero_grad()
                model.backward(dlogits)
                optimizer.step()
        records[lr] = monitor.records
    return records


def _first_over_reference(records, threshold):
    for step in sorted({row["step"] for row in records}):
        for row in weight_rows(records, step):
            ratio = row["weight_update_ratio"]
            if ratio is not None and ratio > threshold:
                return row["module"]
    return None


@exercise("Exercise 3, the first layer whose updates are too large")
def check_first_layer_over(first_layer_over):
    """first_layer_over(records, threshold) -> the module name of the first convolution or linear layer, in
    forward order, at the earliest recorded step where any of their update-to-weight ratios exceeds
    threshold; None if none does."""
    records = _toy_records()
    rng = np.random.default_rng(0)
    cases = [(records[100.0], 1.0), (records[100.0], 30.0), (records[0.01], 1e-3), (records[0.01], 1.0)]
    shuffled = list(records[100.0])
    rng.shuffle(shuffled)
    cases.append((shuffled, 1.0))
    for i, (rows, threshold) in enumerate(cases):
        got = _call(first_layer_over, [dict(row) for row in rows], threshold)
        expected = _first_over_reference(rows, threshold)
        run = "lr 100" if rows is records[100.0] else "lr 0.01" if rows is records[0.01] else "lr 100, shuffled"
        if got != expected:
            hint = ""
            if i == 4:
                hint = " The records are in no particular order: sort by step, then by each row's 'index'."
            raise ExerciseFailed(f"records of {run}, threshold {threshold:g}: got {got!r}, expected {expected!r}."
                                 f"{hint} Only convolutions and linear layers count (monitor.weight_rows), the "
                                 "earliest step first, then forward order; None when no ratio exceeds the threshold.")
    first, first_30 = _first_over_reference(records[100.0], 1.0), _first_over_reference(records[100.0], 30.0)
    return (f"on the monitor's records of a tiny DenseNet at lr 100 the first over 1 is {first}, the first over 30 "
            f"{first_30}; at lr 0.01 none exceeds 1 (5 cases, one with shuffled records)")
