"""Every function of the fast tier against its textbook twin in ``scratchnet.ops``.

Same inputs, float64: the same outputs and gradients to rounding (norm_rel_error < 1e-12;
the fast code adds the same terms in another order). The fast ops also meet PyTorch and
finite differences on their own, through tests/op_cases.py. Threads must give bit for bit
what one core gives.
"""
import threading
import time

import numpy as np
import pytest

from op_cases import swap_batch_and_channels as swap
from op_cases import symmetric_away_from_zero
from scratchnet import backend, fast, ops
from scratchnet.backend import to_device, to_numpy
from scratchnet.gradcheck import norm_rel_error

ROUNDING = 1e-12


def assert_all_close(ours, textbook, what):
    assert len(ours) == len(textbook), what
    for i, (a, b) in enumerate(zip(ours, textbook)):
        if b is None:
            assert a is None, f"{what}: result {i}"
            continue
        assert a.shape == b.shape, f"{what}: result {i} has shape {a.shape}, the textbook's {b.shape}"
        error = norm_rel_error(a, b)
        assert error < ROUNDING, f"{what}: result {i} differs from the textbook's by {error:.1e}"


CONVOLUTIONS = {   # x (N, C, H, W), w, stride, pad, bias
    "3x3, fewer filters than channels": ((2, 12, 9, 7), (4, 12, 3, 3), 1, 1, True),
    "3x3, more filters than channels": ((2, 3, 8, 8), (16, 3, 3, 3), 1, 1, False),
    "5x5, no padding": ((1, 6, 9, 9), (3, 6, 5, 5), 1, 0, True),
    "3x3, stride 2": ((2, 5, 9, 8), (4, 5, 3, 3), 2, 1, True),
    "1x1": ((3, 10, 5, 6), (7, 10, 1, 1), 1, 0, False),
    "1x1, stride 2": ((2, 6, 6, 6), (4, 6, 1, 1), 2, 0, True),
    "padding wider than the image": ((2, 3, 2, 1), (2, 3, 5, 6), 1, 3, True),   # some offsets see only padding
}


@pytest.mark.parametrize("name, method", [(name, method) for name in sorted(CONVOLUTIONS)
                                          for method in ("auto", "im2col", "kn2row")
                                          if method != "kn2row" or CONVOLUTIONS[name][2] == 1])   # kn2row: stride 1
def test_conv2d_equals_the_textbook_convolution(name, method, device, rng):
    x_shape, w_shape, stride, pad, bias = CONVOLUTIONS[name]
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if bias else None
    x, w, b = (to_device(a, device) for a in (x, w, b))
    out, cache = ops.conv2d_forward(x, w, b, stride, pad)
    dout = to_device(rng.standard_normal(out.shape), device)
    textbook = [out, *ops.conv2d_backward(dout, cache)]

    out_fast, cache_fast = fast.conv2d_forward(swap(x), w, b, stride, pad, method)
    dx, dw, db = fast.conv2d_backward(swap(dout), cache_fast)
    ours = [swap(out_fast), swap(dx), dw, db]
    assert_all_close([to_numpy(a) for a in ours], [to_numpy(a) for a in textbook], f"{name}, {method}")


def batchnorm_then_relu(x, gamma, beta, running_mean, running_var, train, dout):
    """The textbook pair on (N, C, H, W) -> y, dx, dgamma, dbeta."""
    z, bn_cache = ops.batchnorm_forward(x, gamma, beta, running_mean, running_var, train)
    y, relu_cache = ops.relu_forward(z)
    return [y, *ops.batchnorm_backward(ops.relu_backward(dout, relu_cache), bn_cache)]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_relu_equals_batchnorm_then_relu(train, device, rng):
    # Inputs away from ReLU's kink, where a rounding difference would flip the mask.
    x = symmetric_away_from_zero(rng, (4, 6, 5, 7))
    gamma, beta = 1 + 0.3 * rng.standard_normal(6), np.zeros(6)
    dout = rng.standard_normal(x.shape)
    x, gamma, beta, dout = (to_device(a, device) for a in (x, gamma, beta, dout))
    buffers = [to_device(np.linspace(-0.2, 0.2, 6), device), to_device(np.linspace(0.5, 2, 6), device)]
    fused_buffers = [b.copy() for b in buffers]
    textbook = batchnorm_then_relu(x, gamma, beta, *buffers, train, dout)

    y, cache = fast.batchnorm_relu_forward(swap(x), gamma, beta, *fused_buffers, train)
    dx, dgamma, dbeta = fast.batchnorm_relu_backward(swap(dout), cache)
    mode = "train" if train else "eval"
    assert_all_close([to_numpy(a) for a in (swap(y), swap(dx), dgamma, dbeta)], [to_numpy(a) for a in textbook], mode)
    assert_all_close([to_numpy(a) for a in fused_buffers], [to_numpy(a) for a in buffers], f"{mode} running statistics")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_backward_parts_add_up_to_the_textbook_gradient(train, rng):
    x = symmetric_away_from_zero(rng, (3, 5, 4, 4))                 # (N, C, H, W)
    gamma, beta = 1 + 0.3 * rng.standard_normal(5), np.zeros(5)
    dout = rng.standard_normal(x.shape)
    running = (np.linspace(-0.2, 0.2, 5), np.linspace(0.5, 2, 5))
    _, dgamma, dbeta = textbook = batchnorm_then_relu(x, gamma, beta, *(r.copy() for r in running), train, dout)[1:]
    _, cache = fast.batchnorm_relu_forward(swap(x), gamma, beta, *(r.copy() for r in running), train)
    parts = fast.batchnorm_relu_backward_parts(swap(dout), cache)
    assembled = parts.partial_dx + parts.x_coef[:, None, None, None] * swap(x) + parts.offset[:, None, None, None]
    assert_all_close([swap(assembled), parts.dgamma, parts.dbeta], textbook, "parts")
    if not train:   # eval mode: dx is gamma * inv_std * dz, with nothing that depends on x
        assert not parts.x_coef.any() and not parts.offset.any()


def test_batch_statistics_are_the_textbook_batch_norms(device, rng):
    # The textbook op with momentum 1 leaves the batch's statistics in its running buffers:
    # the mean, and the variance made unbiased (times m / (m - 1)).
    x = rng.standard_normal((8, 6, 5, 7)) * 3 + 2                   # (N, C, H, W)
    m = 8 * 5 * 7
    running_mean, running_var = to_device(np.zeros(6), device), to_device(np.ones(6), device)
    ops.batchnorm_forward(to_device(x, device), to_device(np.ones(6), device), to_device(np.zeros(6), device),
                          running_mean, running_var, train=True, momentum=1.0)
    mean, var = fast.batch_statistics(to_device(swap(x), device))
    assert norm_rel_error(to_numpy(mean), to_numpy(running_mean)) < ROUNDING
    assert norm_rel_error(to_numpy(var) * m / (m - 1), to_numpy(running_var)) < ROUNDING


def test_precomputed_statistics_give_the_same_result(rng):
    x = rng.standard_normal((6, 8, 5, 7)) * 2 + 1
    gamma, beta = 1 + 0.3 * rng.standard_normal(6), 0.5 * rng.standard_normal(6)
    y, _ = fast.batchnorm_relu_forward(x, gamma, beta, None, None, train=True)
    shared, _ = fast.batchnorm_relu_forward(x, gamma, beta, None, None, train=True, stats=fast.batch_statistics(x))
    assert np.array_equal(y, shared)


@pytest.mark.parametrize("name, method", [("3x3, fewer filters than channels", "kn2row"),
                                          ("3x3, stride 2", "im2col"), ("1x1", "im2col")])
def test_parameter_gradients_written_into_given_arrays_are_the_ones_returned_otherwise(name, method, rng):
    # grad_out: the optimiser's flat gradient buffer, written by the op itself (Parameter.grad_destination).
    x_shape, w_shape, stride, pad, _ = CONVOLUTIONS[name]
    x, w, b = swap(rng.standard_normal(x_shape)), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out, cache = fast.conv2d_forward(x, w, b, stride, pad, method)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = fast.conv2d_backward(dout, cache)
    buffers = np.full(w.size + b.size, np.nan)                  # one flat array, as SGD's
    dw_out, db_out = buffers[:w.size].reshape(w.shape), buffers[w.size:]
    dx2, dw2, db2 = fast.conv2d_backward(dout, cache, grad_out=(dw_out, db_out))
    assert dw2 is dw_out and db2 is db_out
    assert np.array_equal(dx2, dx) and np.array_equal(buffers, np.concatenate([dw.ravel(), db]))
    with pytest.raises(ValueError, match="dw_out must be a contiguous array"):    # it could not be written through
        fast.conv2d_backward(dout, cache, grad_out=(np.empty(w.shape[::-1]).T, None))

    y, bn_cache = fast.batchnorm_relu_forward(x, 1 + rng.standard_normal(x.shape[0]), rng.standard_normal(x.shape[0]),
                                              None, None, train=True)
    dy = rng.standard_normal(y.shape)
    expected = fast.batchnorm_relu_backward(dy, bn_cache)
    dgamma_out, dbeta_out = np.full((2, x.shape[0]), np.nan)
    got = fast.batchnorm_relu_backward(dy, bn_cache, grad_out=(dgamma_out, dbeta_out))
    assert got[1] is dgamma_out and got[2] is dbeta_out
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_recompute_rewrites_the_output_bit_for_bit(rng):
    x = rng.standard_normal((6, 8, 5, 7))
    gamma, beta = 1 + 0.3 * rng.standard_normal(6), 0.5 * rng.standard_normal(6)
    scratch = np.empty((10,) + x.shape[1:])[:6]              # a view of a bigger shared buffer
    running_mean, running_var = np.zeros(6), np.ones(6)
    y, cache = fast.batchnorm_relu_forward(x, gamma, beta, running_mean, running_var, train=True, out=scratch)
    assert y is scratch
    expected, after_forward = y.copy(), (running_mean.copy(), running_var.copy())
    scratch[...] = np.nan                                    # another layer used the buffer
    assert fast.batchnorm_relu_recompute(cache) is scratch
    assert np.array_equal(scratch, expected)
    fast.batchnorm_relu_backward(np.ones_like(x), cache)
    assert np.array_equal(running_mean, after_forward[0]) and np.array_equal(running_var, after_forward[1])


def test_any_memory_layout_of_x_gives_the_same_result(rng):
    x = rng.standard_normal((6, 8, 5, 7))
    gamma, beta = 1 + 0.3 * rng.standard_normal(6), 0.5 * rng.standard_normal(6)
    dout = rng.standard_normal(x.shape)
    y, cache = fast.batchnorm_relu_forward(x, gamma, beta, None, None, train=True)
    y_f, cache_f = fast.batchnorm_relu_forward(np.asfortranarray(x), gamma, beta, None, None, train=True)
    assert np.array_equal(y, y_f)
    assert_all_close(fast.batchnorm_relu_backward(dout, cache_f), fast.batchnorm_relu_backward(dout, cache), "layout")


def test_fused_op_refuses_an_output_it_cannot_write_into(rng):
    x = rng.standard_normal((6, 8, 5, 7))
    with pytest.raises(ValueError, match="out must be a contiguous array of shape"):
        fast.batchnorm_relu_forward(x, np.ones(6), np.zeros(6), None, None, True, out=np.empty(x.shape)[:, :, :, ::-1])


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (3, 1)])
def test_avgpool_equals_the_textbook_pool_on_any_number_of_threads(kernel, stride, rng):
    x = rng.standard_normal((12, 64, 32, 33))                 # large enough to be split among 3 threads
    out, cache = ops.avgpool_forward(x, kernel, stride)
    dout = rng.standard_normal(out.shape)
    textbook = [out, ops.avgpool_backward(dout, cache)]
    for threads in (1, 3):
        with backend.using_cpu_threads(threads):
            out_fast, cache_fast = fast.avgpool_forward(x, kernel, stride)
            ours = [out_fast, fast.avgpool_backward(dout, cache_fast)]
        for a, b in zip(ours, textbook):
            assert np.array_equal(a, b), f"{threads} threads"     # the textbook op itself, on row blocks


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_drops_what_the_textbook_drops_for_the_same_seed(p, device, rng):
    x = to_device(rng.standard_normal((3, 4, 5, 6)), device)         # (N, C, H, W)
    dout = to_device(rng.standard_normal(x.shape), device)
    out, cache = ops.dropout_forward(x, p, True, backend.default_rng(5, "cpu"))
    out_fast, cache_fast = fast.dropout_forward(swap(x), p, True, backend.default_rng(5, "cpu"))
    assert np.array_equal(to_numpy(swap(out_fast)), to_numpy(out))
    dx = ops.dropout_backward(dout, cache)
    assert np.array_equal(to_numpy(swap(fast.dropout_backward(swap(dout), cache_fast))), to_numpy(dx))


class RecordingThreads:
    """Counts the threads that ran a function of parallel_slices (to know the work was really split)."""

    def __init__(self, monkeypatch):
        self.names = set()
        original = fast.threads.parallel_slices

        def recording(fn, n, xp=np, size=None):
            def wrapped(rows):
                self.names.add(threading.current_thread().name)
                return fn(rows)
            return original(wrapped, n, xp, size)

        for module in (fast.threads, fast.conv, fast.batchnorm_relu, fast.pool):
            monkeypatch.setattr(module, "parallel_slices", recording)


def test_row_helpers_do_what_their_one_line_numpy_versions_do(rng, monkeypatch):
    # No textbook op to compare with: they are the slice-add of concatenation's backward and batch norm's
    # affine terms, done in place by rows.
    target, source = rng.standard_normal((20, 64, 32, 32)), rng.standard_normal((20, 64, 32, 32))
    scale, shift = rng.standard_normal(20), rng.standard_normal(20)
    threads = RecordingThreads(monkeypatch)
    with backend.using_cpu_threads(3):
        added = target.copy()
        fast.add_rows(added, source)
        affine = target.copy()
        fast.add_per_row_affine(affine, source, scale, shift)
    assert len(threads.names) >= 2, threads.names              # the work was split
    assert np.array_equal(added, target + source)
    expected = target.copy()
    expected += source * scale[:, None, None, None]
    expected += shift[:, None, None, None]
    assert np.array_equal(affine, expected)


def run_threaded_ops(rng):
    """Fused batch norm + ReLU, a kn2row convolution and average pooling: every threaded op."""
    x = (rng.standard_normal((64, 32, 16, 16)) * 2 + 1).astype(np.float32)
    gamma, beta = (1 + 0.3 * rng.standard_normal(64)).astype(np.float32), np.zeros(64, np.float32)
    y, cache = fast.batchnorm_relu_forward(x, gamma, beta, np.zeros(64, np.float32), np.ones(64, np.float32), True)
    grads = fast.batchnorm_relu_backward(np.ones_like(y), cache)
    stats = fast.batch_statistics(x)
    w = rng.standard_normal((16, 64, 3, 3)).astype(np.float32)
    out, conv_cache = fast.conv2d_forward(y, w, pad=1, method="kn2row")
    pooled, pool_cache = fast.avgpool_forward(out)
    return [y, *grads, *stats, out, *fast.conv2d_backward(out, conv_cache)[:2], pooled,
            fast.avgpool_backward(pooled, pool_cache)]


def test_threads_give_bit_for_bit_the_result_of_one_core(monkeypatch):
    threads = RecordingThreads(monkeypatch)
    with backend.using_cpu_threads(1):
        one = run_threaded_ops(np.random.default_rng(0))
    assert len(threads.names) == 1
    with backend.using_cpu_threads(3):
        three = run_threaded_ops(np.random.default_rng(0))
    assert len(threads.names) >= 2, threads.names              # the work was split
    for i, (a, b) in enumerate(zip(one, three)):
        assert np.array_equal(a, b), f"result {i}"


def test_parallel_slices_covers_every_row_once_on_every_thread_and_the_pool_restarts():
    for _ in range(2):
        seen, names = np.zeros(10, int), set()

        def visit(rows):
            seen[rows] += 1
            names.add(threading.current_thread().name)
            time.sleep(0.05)                 # long enough that no worker takes two parts

        with backend.using_cpu_threads(4):
            fast.parallel_slices(visit, 10, size=10 * fast.MIN_ELEMENTS_PER_THREAD)
        assert (seen == 1).all() and len(names) == 4
        fast.shutdown_pool()                 # what happens at exit; a later call makes new threads


def test_parallel_slices_waits_for_every_thread_when_one_part_fails():
    finished = []

    def work(rows):
        if rows.start == 0:                  # the calling thread's part fails at once
            raise RuntimeError("part 0 failed")
        time.sleep(0.2)
        finished.append(rows.start)

    with backend.using_cpu_threads(3), pytest.raises(RuntimeError, match="part 0 failed"):
        fast.parallel_slices(work, 3)
    assert sorted(finished) == [1, 2]        # no worker is still running when the error arrives


def test_small_work_stays_on_the_calling_thread():
    names = set()
    with backend.using_cpu_threads(4):
        fast.parallel_slices(lambda rows: names.add(threading.current_thread().name), 10,
                             size=fast.MIN_ELEMENTS_PER_THREAD - 1)
    assert names == {threading.current_thread().name}


def test_choose_method_picks_the_one_that_copies_less():
    assert fast.choose_method((8, 48, 3, 3), stride=1) == "kn2row"      # a dense layer's 3x3: 4k in, k out
    assert fast.choose_method((48, 8, 3, 3), stride=1) == "im2col"      # more filters than channels
    assert fast.choose_method((8, 48, 1, 1), stride=1) == "im2col"      # 1x1: x is already the column matrix
    assert fast.choose_method((8, 48, 3, 3), stride=2) == "im2col"      # kn2row is for stride 1


def test_fast_conv_keeps_x_itself_for_kn2row_and_1x1(rng):
    # The aliasing contract of FastConvCache: x is saved as a view, not copied (im2col saves a copy).
    x = rng.standard_normal((6, 2, 5, 5))
    for w_shape, pad, keeps_x in (((3, 6, 3, 3), 1, True), ((3, 6, 1, 1), 0, True), ((9, 6, 3, 3), 1, False)):
        _, cache = fast.conv2d_forward(x, rng.standard_normal(w_shape), pad=pad)
        assert np.shares_memory(cache.saved, x) == keeps_x, (w_shape, cache.method)


TWINS = {   # each public function of scratchnet.fast -> the test above that holds it to its textbook twin
           # (or, where it has none, to what it stands for)
    "conv2d_forward": test_conv2d_equals_the_textbook_convolution,
    "conv2d_backward": test_conv2d_equals_the_textbook_convolution,
    "choose_method": test_choose_method_picks_the_one_that_copies_less,               # a rule, no computation
    "batchnorm_relu_forward": test_batchnorm_relu_equals_batchnorm_then_relu,
    "batchnorm_relu_backward": test_batchnorm_relu_equals_batchnorm_then_relu,
    "batchnorm_relu_backward_parts": test_backward_parts_add_up_to_the_textbook_gradient,
    "batchnorm_relu_recompute": test_recompute_rewrites_the_output_bit_for_bit,         # the forward's twin
    "batch_statistics": test_batch_statistics_are_the_textbook_batch_norms,
    "avgpool_forward": test_avgpool_equals_the_textbook_pool_on_any_number_of_threads,
    "avgpool_backward": test_avgpool_equals_the_textbook_pool_on_any_number_of_threads,
    "dropout_forward": test_dropout_drops_what_the_textbook_drops_for_the_same_seed,
    "dropout_backward": test_dropout_drops_what_the_textbook_drops_for_the_same_seed,
    "parallel_slices": test_parallel_slices_covers_every_row_once_on_every_thread_and_the_pool_restarts,
    "add_rows": test_row_helpers_do_what_their_one_line_numpy_versions_do,
    "add_per_row_affine": test_row_helpers_do_what_their_one_line_numpy_versions_do,
    "shutdown_pool": test_parallel_slices_covers_every_row_once_on_every_thread_and_the_pool_restarts,
}


def test_every_fast_function_is_held_to_its_twin():
    assert set(fast.__all__) == set(TWINS), "a fast function without a test against its textbook twin"
