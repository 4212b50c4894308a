"""Every op's backward against finite differences, in float64 (relative error below 1e-7).

These tests are also the pattern to follow when you write a new op: build
inputs, run forward, pick a random upstream gradient, run backward, and compare
each gradient with the numerical one.
"""
import pytest

from op_cases import CASES, away_from_zero, distinct
from scratchnet import ops
from scratchnet.backend import default_rng, to_device
from scratchnet.gradcheck import check_directional, check_gradients

TOLERANCE = 1e-7


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backward_matches_finite_differences(case, device, rng):
    inputs = [to_device(a, device) for a in case.inputs(rng)]
    errors = check_gradients(case.forward, case.backward, inputs)
    assert len(errors) == len(inputs)
    for i, error in enumerate(errors):
        assert error is not None, f"input {i} got no gradient"
        assert error < TOLERANCE, f"input {i}: relative error {error:.2e}"


# Inputs too big to check element by element: one random direction over all inputs.
LARGE_CASES = {
    "conv2d-3x3": (lambda rng: [rng.standard_normal((8, 16, 16, 16)), rng.standard_normal((12, 16, 3, 3)),
                                rng.standard_normal(12)],
                   lambda x, w, b: ops.conv2d_forward(x, w, b, stride=1, pad=1), ops.conv2d_backward),
    "conv2d-1x1": (lambda rng: [rng.standard_normal((8, 48, 16, 16)), rng.standard_normal((48, 48, 1, 1))],
                   lambda x, w: ops.conv2d_forward(x, w), ops.conv2d_backward),
    "batchnorm": (lambda rng: [rng.standard_normal((16, 24, 8, 8)) * 3 - 1, rng.standard_normal(24),
                               rng.standard_normal(24)],
                  lambda x, g, b: ops.batchnorm_forward(x, g, b, None, None, train=True), ops.batchnorm_backward),
    "maxpool": (lambda rng: [distinct(rng, (4, 8, 16, 16))],
                lambda x: ops.maxpool_forward(x, 3, 2, 1), ops.maxpool_backward),
    "relu": (lambda rng: [away_from_zero(rng, (8, 16, 16, 16))], ops.relu_forward, ops.relu_backward),
}


@pytest.mark.parametrize("name", sorted(LARGE_CASES))
def test_directional_derivative_on_large_inputs(name, device, rng):
    make_inputs, forward, backward = LARGE_CASES[name]
    inputs = [to_device(a, device) for a in make_inputs(rng)]
    error, numeric, analytic = check_directional(forward, backward, inputs)
    assert error < TOLERANCE, f"numerical {numeric!r} vs analytic {analytic!r}"


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_backward_matches_finite_differences(p, device, rng):
    # A freshly seeded generator per call: every forward pass draws the same mask.
    def forward(x):
        return ops.dropout_forward(x, p, train=True, rng=default_rng(7, device))

    x = to_device(rng.standard_normal((3, 4, 5, 5)), device)
    [error] = check_gradients(forward, ops.dropout_backward, [x])
    assert error < TOLERANCE


def test_dropout_in_eval_mode_is_the_identity_for_gradients(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    [error] = check_gradients(lambda x: ops.dropout_forward(x, 0.5, train=False, rng=None),
                              ops.dropout_backward, [x])
    assert error < TOLERANCE
