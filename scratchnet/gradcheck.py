"""Gradient checking: compare a hand-written backward with finite differences.

The central difference ``(f(x + h) - f(x - h)) / 2h`` approximates a derivative
with error O(h**2); its fourth-order sibling

    (8 * (f(x + h) - f(x - h)) - (f(x + 2h) - f(x - 2h))) / 12h

has error O(h**4), so it can use a larger h, which also shrinks the rounding
error (about eps * |f| / h). The fourth-order formula is the default: it is
what lets a float64 check reach relative errors near 1e-10 even for batch norm;
``order=2`` gives the classic formula.

An op's output is an array, so we check the gradient of the scalar
``sum(op(x) * dout)`` for a *random* upstream gradient ``dout``. (With
``dout = 1`` we would only check ``sum(op(x))``: the sum of a batch-norm output
is the same whatever x is, so a wrong batch-norm backward would pass.)

Everything is computed in float64; in float32 rounding error swamps the differences.

- ``numerical_gradient``: one derivative per element of x (2 forward passes each).
- ``numerical_directional_derivative``: one derivative along a random direction
  of all inputs at once (2 forward passes in all), for inputs too big to check
  element by element (Chainer's ``check_backward`` idea).
- ``check_gradients`` / ``check_directional``: run an op's forward and backward
  and report the relative error of each gradient.
"""
import numpy as np

from .backend import get_array_module, to_numpy


def _host_float64_pair(name, a, b):
    a = np.asarray(to_numpy(a), dtype=np.float64)
    b = np.asarray(to_numpy(b), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {a.shape} and {b.shape}")
    return a, b


def rel_error(a, b):
    """CS231n's relative error: max over elements of |a - b| / max(1e-8, |a| + |b|)."""
    a, b = _host_float64_pair("rel_error", a, b)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def norm_rel_error(a, b):
    """Relative error measured against the arrays' scale: max|a - b| / max(1e-8, max|a| + max|b|).

    Use it where elements near zero carry only rounding noise, as in float32:
    there the element-wise ``rel_error`` of an element that should be 0 is
    about 1 whatever the code does.
    """
    a, b = _host_float64_pair("norm_rel_error", a, b)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a)) + np.max(np.abs(b))))


def _require_float64(name, x):
    if x.dtype != np.float64:
        raise ValueError(f"{name}: finite differences need float64 arrays, got {x.dtype}; pass x.astype('float64')")


# Central differences as (step, weight) pairs, in units of h:
#     derivative = sum(weight * (f(x + step*h) - f(x - step*h))) / h
CENTRAL_DIFFERENCES = {
    2: ((1, 1 / 2),),
    4: ((1, 8 / 12), (2, -1 / 12)),
}


def _weights(order):
    if order not in CENTRAL_DIFFERENCES:
        raise ValueError(f"order must be one of {sorted(CENTRAL_DIFFERENCES)}, got {order!r}")
    return CENTRAL_DIFFERENCES[order]


def _snapshot(value):
    # f may hand back an array that aliases its input (an identity op), which the next move changes.
    return value.copy() if hasattr(value, "copy") else value


def _central_difference(f, move, order, h, dout):
    """sum(weight * (f(+step h) - f(-step h))) / h, contracted with dout, as a Python float.

    ``move(offset)`` puts the inputs at their original value + offset. Each
    pair of outputs is subtracted element by element before anything is
    summed, so large, nearly equal totals are never subtracted, and an output
    that does not move gives exactly 0.
    """
    combined = 0
    for step, weight in _weights(order):
        move(step * h)
        plus = _snapshot(f())
        move(-step * h)
        combined = combined + weight * (plus - f())
    if dout is not None:
        combined = (combined * dout).sum()
    return float(combined) / h


def numerical_gradient(f, x, dout=None, h=1e-3, order=4):
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to x.

    f: x -> array shaped like dout (or a scalar when dout is None).
    x: float64 array; each element is moved in place, then restored.
    -> grad: shaped like x. Costs ``order`` calls of f per element.
    """
    _require_float64("numerical_gradient", x)
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    for index in np.ndindex(*x.shape):
        original = float(x[index])

        def move(offset):
            x[index] = original + offset

        try:
            grad[index] = _central_difference(lambda: f(x), move, order, h, dout)
        finally:
            x[index] = original
    return grad


def numerical_directional_derivative(f, arrays, directions, dout=None, h=1e-3, order=4):
    """Central-difference derivative of ``sum(f() * dout)`` along ``directions``.

    Every array a is moved at once to ``a0 + step * h * d``, in place, and
    restored afterwards; f() reads the arrays it closes over. ``order`` calls of f in all.
    """
    for a in arrays:
        _require_float64("numerical_directional_derivative", a)
    originals = [a.copy() for a in arrays]

    def move(offset):
        for a, a0, d in zip(arrays, originals, directions):
            a[...] = a0 + offset * d

    try:
        return _central_difference(f, move, order, h, dout)
    finally:
        for a, a0 in zip(arrays, originals):
            a[...] = a0


def random_direction(arrays, seed=0):
    """A random direction through the space of all ``arrays`` together, of total length 1.

    One normal array per input, scaled so that the sum of all squares is 1: then a
    step h moves the whole point by exactly h, however many numbers there are.
    """
    rng = np.random.default_rng(seed)
    directions = [rng.standard_normal(a.shape) for a in arrays]
    length = np.sqrt(sum(float((d * d).sum()) for d in directions))
    return [get_array_module(a).asarray(d / length) for a, d in zip(arrays, directions)]


def _run_op(forward, backward, inputs, seed):
    """float64 copies of the inputs, a random dout, and the analytic gradients."""
    inputs = [x.astype(np.float64, copy=True) for x in inputs]
    out, cache = forward(*inputs)
    xp = get_array_module(out)
    dout = xp.asarray(np.random.default_rng(seed).standard_normal(np.shape(out)))
    grads = backward(dout, cache)
    if not isinstance(grads, (tuple, list)):
        grads = [grads]
    if len(grads) < len(inputs):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(inputs)} inputs")
    return inputs, dout, list(grads)[:len(inputs)]


def check_gradients(forward, backward, inputs, seed=0, h=1e-3, order=4):
    """Compare ``backward`` with central differences, element by element, for each input.

    forward(*inputs) -> (out, cache); backward(dout, cache) -> a gradient per input
    (a tuple or list, None for an input without one; a bare array for a single input).
    Only the inputs listed are perturbed; fix the others with a lambda.
    -> list of relative errors, one per input (None where backward gives no gradient).
    """
    inputs, dout, grads = _run_op(forward, backward, inputs, seed)
    errors = []
    for x, grad in zip(inputs, grads):
        if grad is None:
            errors.append(None)
            continue
        numeric = numerical_gradient(lambda _: forward(*inputs)[0], x, dout, h, order)
        errors.append(rel_error(grad, numeric))
    return errors


def check_directional(forward, backward, inputs, seed=0, h=1e-3, order=4):
    """Compare ``backward`` with one directional derivative over all inputs at once.

    Same arguments as ``check_gradients``. For a random unit direction d, the analytic
    ``sum_i <grad_i, d_i>`` must equal the numerical derivative of
    ``sum(forward(inputs + h d) * dout)``; inputs without a gradient stay fixed.
    -> (relative error, numerical derivative, analytic derivative).
    """
    inputs, dout, grads = _run_op(forward, backward, inputs, seed)
    moved = [(x, g) for x, g in zip(inputs, grads) if g is not None]
    directions = random_direction([x for x, _ in moved], seed + 1)
    analytic = sum(float((g * d).sum()) for (_, g), d in zip(moved, directions))
    numeric = numerical_directional_derivative(
        lambda: forward(*inputs)[0], [x for x, _ in moved], directions, dout, h, order)
    return rel_error(numeric, analytic), numeric, analytic


def check_module_directional(module, x, seed=0, h=1e-5, order=4):
    """Check a whole model's backward: one directional derivative through every parameter and the input.

    module: anything with ``parameters()``, ``module(x)`` and ``module.backward(dout)``, in float64;
    if it has a random generator ``module.rng`` (dropout masks), every pass restarts it from
    the same state, so that all passes drop the same units. The step h is small because a
    ReLU network has kinks everywhere, and a longer step along a random direction can cross
    one (then no finite difference matches any gradient).
    -> (relative error, numerical derivative, analytic derivative).
    """
    rng_state = module.rng.bit_generator.state if hasattr(module, "rng") else None

    def forward():
        if rng_state is not None:
            module.rng.bit_generator.state = rng_state
        return module(x)

    out = forward()
    xp = get_array_module(out)
    dout = xp.asarray(np.random.default_rng(seed).standard_normal(out.shape))
    module.zero_grad()
    dx = module.backward(dout)
    params = module.parameters()
    arrays = [p.data for p in params] + [x]
    grads = [p.grad for p in params] + [dx]
    directions = random_direction(arrays, seed + 1)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions))
    numeric = numerical_directional_derivative(forward, arrays, directions, dout, h, order)
    return rel_error(numeric, analytic), numeric, analytic
