"""Reference solutions of lecture 10's exercises (checked by tests/test_exercises.py)."""
from scratchnet.monitor import weight_rows
from scratchnet.optim import cosine_lr


def find_divergence_lr(diverges, start=1e-3):
    """Double the learning rate from ``start`` until a trial diverges: that rate diverges and half of it
    (the rate tried before) did not."""
    lr = start
    while not diverges(lr):
        lr *= 2
    return lr


def warmup_lr(t, base_lr, warmup, total):
    """Linear warm-up over the first ``warmup`` steps (base_lr / warmup at step 0, base_lr at step warmup - 1),
    then cosine annealing over the remaining total - warmup steps."""
    if t < warmup:
        return base_lr * (t + 1) / warmup
    return cosine_lr(t - warmup, base_lr, total - warmup)


def first_layer_over(records, threshold):
    """The first conv or linear layer (forward order) at the earliest recorded step whose update-to-weight
    ratio exceeds ``threshold``; None if none does."""
    for step in sorted({row["step"] for row in records}):
        for row in weight_rows(records, step):
            ratio = row["weight_update_ratio"]
            if ratio is not None and ratio > threshold:
                return row["module"]
    return None


# -- typical mistakes, which the checks must refuse --------------------------------------------------------------
def _search_in_tens(diverges, start=1e-3):
    """Steps of 10: the rate found diverges, but so may a rate several times smaller."""
    lr = start
    while not diverges(lr):
        lr *= 10
    return lr


def _last_good_lr(diverges, start=1e-3):
    """Off by one: returns the last rate that was still fine."""
    lr = start
    while not diverges(lr * 2):
        lr *= 2
    return lr


def _warmup_from_zero(t, base_lr, warmup, total):
    """Warm-up that starts at 0: step 0 does not move the weights."""
    if t < warmup:
        return base_lr * t / warmup
    return cosine_lr(t - warmup, base_lr, total - warmup)


def _cosine_over_the_whole_run(t, base_lr, warmup, total):
    """The cosine counted from step 0 over all steps: the rate drops at the end of warm-up."""
    if t < warmup:
        return base_lr * (t + 1) / warmup
    return cosine_lr(t, base_lr, total)


def _largest_ratio(records, threshold):
    """The layer with the largest ratio at that step, not the first one."""
    for step in sorted({row["step"] for row in records}):
        rows = [row for row in weight_rows(records, step) if (row["weight_update_ratio"] or 0) > threshold]
        if rows:
            return max(rows, key=lambda row: row["weight_update_ratio"])["module"]
    return None


def _in_list_order(records, threshold):
    """Whatever row comes first in the list, of any layer type (batch norm included)."""
    for row in records:
        if (row.get("weight_update_ratio") or 0) > threshold:
            return row["module"]
    return None


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"find_divergence_lr": [_search_in_tens, _last_good_lr],
         "warmup_lr": [_warmup_from_zero, _cosine_over_the_whole_run],
         "first_layer_over": [_largest_ratio, _in_list_order]}
