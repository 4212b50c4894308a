"""What every op must also get right beyond its formula: memory layout, in-place safety, dtypes."""
import numpy as np
import pytest

from op_cases import CASES
from scratchnet import ops
from scratchnet.backend import default_rng, to_device, to_numpy
from scratchnet.gradcheck import norm_rel_error


def non_contiguous(a):
    """The same values in a strided view: every other element of a twice-as-wide array."""
    wide = np.repeat(a[..., None], 2, axis=-1)
    view = wide[..., 0]
    assert not view.flags.c_contiguous or a.ndim == 0
    return view


def run(case, inputs, dout):
    out, cache = case.forward(*inputs)
    grads = case.backward(dout, cache)
    return [out] + list(grads if isinstance(grads, (tuple, list)) else [grads])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_non_contiguous_inputs_give_the_same_results(case, rng):
    inputs = case.inputs(rng)
    out, _ = case.forward(*inputs)
    dout = rng.standard_normal(np.shape(out))
    expected = run(case, inputs, dout)
    got = run(case, [non_contiguous(a) for a in inputs], non_contiguous(dout))
    for i, (a, b) in enumerate(zip(got, expected)):
        if b is None:   # no bias, no bias gradient
            assert a is None
            continue
        # Equal to rounding, at the result's scale: older NumPy (1.24 to 2.2) multiplies a strided matrix without
        # BLAS, in another order, so an element that cancels to near zero differs in its last digits (element-wise
        # up to 3e-11 at NumPy 1.24, 3e-16 at the result's scale); a misread stride is wrong by O(1).
        assert norm_rel_error(a, b) < 1e-12, f"result {i} changed with a strided layout"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_ops_change_neither_their_inputs_nor_dout(case, device, rng):
    inputs = [to_device(a, device) for a in case.inputs(rng)]
    originals = [a.copy() for a in inputs]
    out, cache = case.forward(*inputs)
    dout = to_device(rng.standard_normal(np.shape(out)), device)
    dout_before = dout.copy()
    case.backward(dout, cache)
    for a, a0 in zip(inputs, originals):
        assert (to_numpy(a) == to_numpy(a0)).all()
    assert (to_numpy(dout) == to_numpy(dout_before)).all()


def test_relu_backward_returns_a_new_array():
    x = np.array([-1.0, 2.0, -3.0, 4.0])
    _, mask = ops.relu_forward(x)
    dout = np.ones(4)
    dx = ops.relu_backward(dout, mask)
    dx[:] = 7.0
    assert (dout == 1.0).all()


def test_relu_lets_nan_through_like_pytorch():
    out, _ = ops.relu_forward(np.array([np.nan, -1.0, 1.0]))
    assert np.isnan(out[0]) and out[1] == 0 and out[2] == 1


def test_batchnorm_updates_running_statistics_in_place_in_train_mode_only(rng):
    x = rng.standard_normal((4, 3, 5, 5))
    gamma, beta = np.ones(3), np.zeros(3)
    running_mean, running_var = np.zeros(3), np.ones(3)
    ops.batchnorm_forward(x, gamma, beta, running_mean, running_var, train=False)
    assert (running_mean == 0).all() and (running_var == 1).all()
    mean_buffer, var_buffer = running_mean, running_var
    ops.batchnorm_forward(x, gamma, beta, running_mean, running_var, train=True, momentum=0.1)
    assert running_mean is mean_buffer and running_var is var_buffer
    # The unbiased variance, by hand: sum of squares / (m - 1).
    m = 4 * 5 * 5
    unbiased = ((x - x.mean(axis=(0, 2, 3), keepdims=True)) ** 2).sum(axis=(0, 2, 3)) / (m - 1)
    assert np.allclose(running_mean, 0.1 * x.mean(axis=(0, 2, 3)))
    assert np.allclose(running_var, 0.9 + 0.1 * unbiased)


def test_batchnorm_normalises_any_n_c_shaped_input_per_channel(rng):
    for shape in ((6, 4), (5, 4, 7), (3, 4, 2, 5, 2)):             # (N, C), (N, C, L), (N, C, D, H, W)
        x = rng.standard_normal(shape) * 3 + 1
        out, _ = ops.batchnorm_forward(x, np.ones(4), np.zeros(4), None, None, train=True)
        axes = (0,) + tuple(range(2, len(shape)))
        assert np.allclose(out.mean(axis=axes), 0, atol=1e-12) and np.allclose(out.var(axis=axes), 1, atol=1e-3)


def test_batchnorm_without_running_buffers_uses_batch_statistics(rng):
    x = rng.standard_normal((8, 2, 3, 3)) * 5 + 2
    out, _ = ops.batchnorm_forward(x, np.ones(2), np.zeros(2), None, None, train=True)
    assert np.allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    assert np.allclose(out.var(axis=(0, 2, 3)), 1, atol=1e-3)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-5e4, 5e4, 0.0]], dtype=np.float32)
    loss, dlogits = ops.softmax_cross_entropy(logits, np.array([0, 0]))
    # Row 0 is certain and right (loss 0); row 1 is certain and 1e5 off (loss 1e5).
    assert np.isfinite(float(loss)) and np.isclose(float(loss), 1e5 / 2)
    assert np.allclose(dlogits, [[0, 0, 0], [-0.5, 0.5, 0]])


def test_conv_of_a_delta_image_recovers_the_flipped_kernel():
    # Cross-correlation of a single bright pixel with w paints w rotated by 180 degrees.
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    out, _ = ops.conv2d_forward(x, w, pad=1)
    assert np.array_equal(out[0, 0, 1:4, 1:4], w[0, 0, ::-1, ::-1])


def test_im2col_columns_are_the_windows(rng):
    x = rng.standard_normal((2, 3, 5, 6))
    col = ops.im2col(x, 3, 3, stride=2, pad=1)
    assert col.shape == (3 * 3 * 3, 2 * 3 * 3)
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n in range(2):
        for p in range(3):
            for q in range(3):
                window = x_pad[n, :, 2 * p:2 * p + 3, 2 * q:2 * q + 3]
                assert np.array_equal(col[:, n * 9 + p * 3 + q], window.reshape(-1))


def test_col2im_is_the_adjoint_of_im2col(rng):
    # <im2col(x), c> == <x, col2im(c)> for any x and c: the defining property of the backward.
    x = rng.standard_normal((2, 3, 7, 9))
    col = ops.im2col(x, 4, 4, stride=2, pad=1)
    c = rng.standard_normal(col.shape)
    lhs = (col * c).sum()
    rhs = (x * ops.col2im(c, x.shape, 4, 4, stride=2, pad=1)).sum()
    assert np.isclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zeroes_a_fraction_p_and_keeps_the_mean(p, device):
    x = to_device(np.ones((200, 500)), device)
    out, _ = ops.dropout_forward(x, p, train=True, rng=default_rng(0, device))
    out = to_numpy(out)
    assert abs((out == 0).mean() - p) < 0.01
    assert abs(out.mean() - 1.0) < 0.03
    assert set(np.unique(out)) <= {0.0, 1.0 / (1.0 - p)}


def test_dropout_mask_is_reproducible_from_the_generator(rng):
    x = rng.standard_normal((4, 6, 5, 5))
    first, _ = ops.dropout_forward(x, 0.3, True, np.random.default_rng(42))
    again, _ = ops.dropout_forward(x, 0.3, True, np.random.default_rng(42))
    other, _ = ops.dropout_forward(x, 0.3, True, np.random.default_rng(43))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dropout_is_the_identity_in_eval_mode(rng):
    x = rng.standard_normal((3, 4))
    out, cache = ops.dropout_forward(x, 0.5, train=False, rng=None)
    assert np.array_equal(out, x)
    assert np.array_equal(ops.dropout_backward(np.ones((3, 4)), cache), np.ones((3, 4)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_maxpool_and_relu_keep_the_dtype(dtype, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    out, cache = ops.maxpool_forward(x)
    assert out.dtype == dtype and ops.maxpool_backward(np.ones_like(out), cache).dtype == dtype
    out, cache = ops.relu_forward(x)
    assert out.dtype == dtype and ops.relu_backward(np.ones_like(out), cache).dtype == dtype
