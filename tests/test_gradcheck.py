"""The gradient checker itself, including why its upstream gradient must be random."""
import numpy as np
import pytest

from scratchnet import ops
from scratchnet.gradcheck import (check_directional, check_gradients, norm_rel_error, numerical_directional_derivative,
                                  numerical_gradient, rel_error)


def test_rel_error_is_cs231ns_elementwise_formula():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0
    assert rel_error(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == 1.0   # opposite signs: the worst case
    assert np.isclose(rel_error(np.array([1.0, 100.0]), np.array([1.1, 100.0])), 0.1 / 2.1)
    # Below 1e-8 in magnitude the denominator stops shrinking.
    assert np.isclose(rel_error(np.array([0.0]), np.array([1e-12])), 1e-4)


def test_norm_rel_error_measures_against_the_largest_value():
    a, b = np.array([100.0, 1e-3]), np.array([100.0, 2e-3])
    assert rel_error(a, b) > 0.3                          # the tiny element dominates element-wise...
    assert np.isclose(norm_rel_error(a, b), 1e-3 / 200)   # ...but is noise at the tensors' scale


def test_errors_refuse_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))


@pytest.mark.parametrize("order, tolerance", [(2, 1e-6), (4, 1e-10)])
def test_numerical_gradient_of_a_known_function(order, tolerance, rng):
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    numeric = numerical_gradient(lambda x: np.sin(x) * x, x, dout, order=order)
    assert rel_error(numeric, (np.cos(x) * x + np.sin(x)) * dout) < tolerance


def test_fourth_order_differences_beat_second_order_at_the_same_step(rng):
    x = rng.standard_normal(20)
    exact = np.exp(x)
    second = rel_error(numerical_gradient(np.exp, x, np.ones(20), h=1e-2, order=2), exact)
    fourth = rel_error(numerical_gradient(np.exp, x, np.ones(20), h=1e-2, order=4), exact)
    assert fourth < second / 1000


def test_numerical_gradient_restores_x_and_needs_float64(rng):
    x = rng.standard_normal(5)
    before = x.copy()
    numerical_gradient(lambda x: x ** 2, x, np.ones(5))
    assert np.array_equal(x, before)
    with pytest.raises(ValueError, match="need float64"):
        numerical_gradient(lambda x: x, x.astype(np.float32), np.ones(5))
    with pytest.raises(ValueError, match="order must be one of"):
        numerical_gradient(lambda x: x, x, np.ones(5), order=3)


def test_numerical_gradient_of_a_scalar_function(rng):
    x = rng.standard_normal(6)
    assert rel_error(numerical_gradient(lambda x: (x ** 2).sum(), x), 2 * x) < 1e-10


def test_directional_derivative_of_a_known_function(rng):
    a, b = rng.standard_normal(4), rng.standard_normal(4)
    da, db = rng.standard_normal(4), rng.standard_normal(4)
    # f(a, b) = sum(a * b): the derivative along (da, db) is <b, da> + <a, db>.
    numeric = numerical_directional_derivative(lambda: (a * b).sum(), [a, b], [da, db])
    assert np.isclose(numeric, b @ da + a @ db, rtol=1e-12)


def batchnorm_backward_without_the_x_hat_term(dout, cache):
    """A plausible mistake: forgetting that the variance depends on x too."""
    x_hat, gamma, inv_std = cache[:3]
    dx = gamma[None, :, None, None] * inv_std[None, :, None, None] * (dout - dout.mean(axis=(0, 2, 3), keepdims=True))
    return dx, None, None


def batchnorm_train(x, gamma, beta):
    return ops.batchnorm_forward(x, gamma, beta, None, None, train=True)


def test_a_sum_as_upstream_gradient_cannot_see_a_wrong_batchnorm_backward(rng):
    # Each channel of a batch-norm output sums to m * beta whatever x is, so
    # d sum(out) / dx = 0, and the broken backward returns 0 for dout = 1 too.
    x, gamma, beta = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal(3), rng.standard_normal(3)
    out, cache = batchnorm_train(x, gamma, beta)
    ones = np.ones_like(out)
    wrong_dx, _, _ = batchnorm_backward_without_the_x_hat_term(ones, cache)
    numeric = numerical_gradient(lambda x: batchnorm_train(x, gamma, beta)[0], x, ones)
    assert np.abs(wrong_dx).max() < 1e-12 and np.abs(numeric).max() < 1e-9
    # A random upstream gradient exposes the mistake, and passes the real backward.
    [wrong_error, _, _] = check_gradients(batchnorm_train, batchnorm_backward_without_the_x_hat_term,
                                          [x, gamma, beta])
    [right_error, _, _] = check_gradients(batchnorm_train, ops.batchnorm_backward, [x, gamma, beta])
    assert wrong_error > 1e-2 and right_error < 1e-7


def test_the_directional_check_catches_a_slightly_wrong_gradient(rng):
    def conv(x, w):
        return ops.conv2d_forward(x, w, pad=1)

    def off_by_one_percent(dout, cache):
        dx, dw, _ = ops.conv2d_backward(dout, cache)
        return dx, dw * 1.01

    inputs = [rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))]
    right, _, _ = check_directional(conv, ops.conv2d_backward, inputs)
    wrong, _, _ = check_directional(conv, off_by_one_percent, inputs)
    assert right < 1e-10 and wrong > 1e-4


def test_check_gradients_copies_inputs_to_float64(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    [error] = check_gradients(ops.relu_forward, ops.relu_backward, [x + np.sign(x)])
    assert error < 1e-9 and x.dtype == np.float32
