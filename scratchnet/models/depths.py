"""Which depths a family of CIFAR networks accepts: base + step * n layers for n >= 1 units per stage."""


def nearest_depths(base, step, near, count=2):
    """The ``count`` accepted depths closest to ``near``, in increasing order."""
    n = max(1, round((near - base) / step))
    candidates = sorted({base + step * max(1, n + offset) for offset in (-1, 0, 1)}, key=lambda d: (abs(d - near), d))
    return sorted(candidates[:count])


def units_per_stage(depth, base, step, kind):
    """(depth - base) / step, or a ValueError saying why ``depth`` does not fit ``kind`` and what would."""
    if depth < base + step or (depth - base) % step:
        nearest = " or ".join(str(d) for d in nearest_depths(base, step, depth))
        raise ValueError(f"depth {depth} does not fit {kind}: (depth - {base}) must be a positive multiple of "
                         f"{step}; the nearest valid depths are {nearest}")
    return (depth - base) // step
