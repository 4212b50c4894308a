"""The fast paths: fused batch norm + ReLU, CPU threads, and the memory-efficient DenseNet.

Each must give what the plain, textbook path gives: the fused op against PyTorch
(also in tests/test_ops_torch.py, through op_cases), threads against one core bit
for bit, and the memory-efficient network against the plain one and PyTorch.
"""
import numpy as np
import pytest

from scratchnet import backend, ops
from scratchnet.backend import to_device, to_numpy
from scratchnet.gradcheck import check_module_directional, norm_rel_error, rel_error
from scratchnet.models import densenet121, densenet_cifar

torch = pytest.importorskip("torch")
from scratchnet.torch_reference import torch_densenet121, torch_densenet_cifar  # noqa: E402


def channel_major_input(rng, shape=(6, 8, 5, 7)):
    C = shape[0]
    return rng.standard_normal(shape) * 2 + 1, 1 + 0.3 * rng.standard_normal(C), 0.5 * rng.standard_normal(C)


def test_recompute_rewrites_the_output_bit_for_bit(rng):
    x, gamma, beta = channel_major_input(rng)
    scratch = np.empty((10,) + x.shape[1:])[:6]              # a view of a bigger shared buffer
    y, cache = ops.batchnorm_relu_forward(x, gamma, beta, None, None, train=True, out=scratch)
    assert y is scratch
    expected = y.copy()
    scratch[...] = np.nan                                    # another layer used the buffer
    ops.batchnorm_relu_recompute(cache)
    assert np.array_equal(scratch, expected)


def test_recompute_leaves_running_statistics_alone(rng):
    x, gamma, beta = channel_major_input(rng)
    running_mean, running_var = np.zeros(6), np.ones(6)
    _, cache = ops.batchnorm_relu_forward(x, gamma, beta, running_mean, running_var, train=True)
    after_forward = running_mean.copy(), running_var.copy()
    ops.batchnorm_relu_recompute(cache)
    ops.batchnorm_relu_backward(np.ones_like(x), cache)
    assert np.array_equal(running_mean, after_forward[0]) and np.array_equal(running_var, after_forward[1])


def test_precomputed_statistics_give_the_same_result(rng):
    x, gamma, beta = channel_major_input(rng)
    y, _ = ops.batchnorm_relu_forward(x, gamma, beta, None, None, train=True)
    shared, _ = ops.batchnorm_relu_forward(x, gamma, beta, None, None, train=True, stats=ops.batch_statistics(x))
    assert np.array_equal(y, shared)
    mean, var = ops.batch_statistics(x)
    assert np.allclose(mean, x.mean(axis=(1, 2, 3)), rtol=1e-14) and np.allclose(var, x.var(axis=(1, 2, 3)), rtol=1e-12)


def test_any_memory_layout_of_x_gives_the_same_result(rng):
    x, gamma, beta = channel_major_input(rng)
    dout = rng.standard_normal(x.shape)
    expected = ops.batchnorm_relu_forward(x, gamma, beta, None, None, train=True)
    transposed = ops.batchnorm_relu_forward(np.asfortranarray(x), gamma, beta, None, None, train=True)
    assert np.array_equal(expected[0], transposed[0])
    for a, b in zip(ops.batchnorm_relu_backward(dout, expected[1]), ops.batchnorm_relu_backward(dout, transposed[1])):
        assert rel_error(a, b) < 1e-14


def test_fused_op_refuses_an_output_it_cannot_write_into(rng):
    x, gamma, beta = channel_major_input(rng)
    with pytest.raises(ValueError, match="out must be a contiguous array of shape"):
        ops.batchnorm_relu_forward(x, gamma, beta, None, None, True, out=np.empty(x.shape)[:, ::1, :, ::-1])


def run_ops(rng):
    """Fused batch norm + ReLU, a kn2row convolution and average pooling: every threaded op."""
    x, gamma, beta = channel_major_input(rng, (64, 32, 16, 16))
    x, gamma, beta = (a.astype(np.float32) for a in (x, gamma, beta))
    y, cache = ops.batchnorm_relu_forward(x, gamma, beta, np.zeros(64, np.float32), np.ones(64, np.float32), True)
    grads = ops.batchnorm_relu_backward(np.ones_like(y), cache)
    w = rng.standard_normal((16, 64, 3, 3)).astype(np.float32)
    out, conv_cache = ops.conv2d_forward(y, w, pad=1, layout="CNHW", method="kn2row")
    pooled, pool_cache = ops.avgpool_forward(out)
    return [y, *grads, out, *ops.conv2d_backward(out, conv_cache)[:2], pooled, ops.avgpool_backward(pooled, pool_cache)]


def test_threads_give_bit_for_bit_the_result_of_one_core(monkeypatch):
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "1")
    one = run_ops(np.random.default_rng(0))
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "3")
    three = run_ops(np.random.default_rng(0))
    for a, b in zip(one, three):
        assert np.array_equal(a, b)


def test_parallel_slices_covers_every_row_once(monkeypatch):
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "4")
    seen = np.zeros(10, int)

    def visit(rows):
        seen[rows] += 1

    backend.parallel_slices(visit, 10, size=10 * backend.MIN_ELEMENTS_PER_THREAD)
    assert (seen == 1).all()
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "zero")
    with pytest.raises(ValueError, match="SCRATCHNET_THREADS='zero' must be a positive integer"):
        backend.cpu_threads()


def copy_from_torch(model, reference):
    model.load_state_dict({name: value.detach().numpy() for name, value in reference.state_dict().items()})


def run_step(model, x, dlogits, mode):
    model.train(mode == "train")
    model.zero_grad()
    logits = model(x)
    dx = model.backward(dlogits)
    grads = {name: to_numpy(p.grad) for name, p in model.named_parameters()}
    buffers = {name: to_numpy(b) for name, b in model.named_buffers()}
    return to_numpy(logits), to_numpy(dx), grads, buffers


CONFIGS = {
    "BC-16-6": (lambda **kw: densenet_cifar(16, 6, dtype=np.float64, **kw),
                lambda: torch_densenet_cifar(16, 6, True), 16),
    "BC-16-6-dropout": (lambda **kw: densenet_cifar(16, 6, dropout=0.2, dtype=np.float64, **kw), None, 16),
    "DenseNet-10-4": (lambda **kw: densenet_cifar(10, 4, bc=False, dtype=np.float64, **kw),
                      lambda: torch_densenet_cifar(10, 4, False), 16),
    "DenseNet-121": (lambda **kw: densenet121(num_classes=7, dtype=np.float64, **kw), lambda: torch_densenet121(7), 64),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_memory_efficient_gradients_are_those_of_the_plain_model(name, device):
    # The same numbers up to float64 rounding: the fused op folds batch norm into one
    # multiply-add per channel, which rounds differently from the textbook formula.
    build, _, size = CONFIGS[name]
    plain, efficient = build(), build(memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    plain.to(device)
    efficient.to(device)
    rng = np.random.default_rng(0)
    for mode in ("train", "eval"):
        x = to_device(rng.standard_normal((3, 3, size, size)), device)
        dlogits = to_device(rng.standard_normal((3, plain.classifier.out_features)), device)
        plain.rng.bit_generator.state = efficient.rng.bit_generator.state     # the same dropout masks
        a, b = run_step(plain, x, dlogits, mode), run_step(efficient, x, dlogits, mode)
        assert norm_rel_error(a[0], b[0]) < 1e-10 and norm_rel_error(a[1], b[1]) < 1e-10
        for key in a[2]:
            assert norm_rel_error(a[2][key], b[2][key]) < 1e-10, f"{mode} gradient of {key}"
        for key in a[3]:   # running statistics updated once per step, not again by the recomputation
            assert norm_rel_error(a[3][key], b[3][key]) < 1e-10, f"{mode} {key}"


@pytest.mark.parametrize("name", ["BC-16-6", "DenseNet-10-4", "DenseNet-121"])
@pytest.mark.parametrize("variant", [dict(memory_efficient=True), dict(layout="NCHW")],
                         ids=["memory-efficient", "NCHW"])
def test_every_variant_matches_pytorch(name, variant, device):
    build, build_reference, size = CONFIGS[name]
    torch.manual_seed(0)
    reference = build_reference().double()
    model = build(**variant)
    copy_from_torch(model, reference)
    model.to(device)
    rng = np.random.default_rng(1)
    for mode in ("train", "eval"):
        reference.train(mode == "train")
        x = rng.standard_normal((3, 3, size, size))
        dlogits = rng.standard_normal((3, reference.classifier.out_features))
        logits, dx, grads, buffers = run_step(model, to_device(x, device), to_device(dlogits, device), mode)
        reference.zero_grad()
        x_tensor = torch.tensor(x, requires_grad=True)
        expected = reference(x_tensor)
        expected.backward(torch.tensor(dlogits))
        assert norm_rel_error(logits, expected.detach().numpy()) < 1e-9
        assert norm_rel_error(dx, x_tensor.grad.numpy()) < 1e-9
        for key, param in reference.named_parameters():
            assert norm_rel_error(grads[key], param.grad.numpy()) < 1e-9, f"{mode} gradient of {key}"
        for key, buffer in reference.named_buffers():
            assert norm_rel_error(buffers[key], buffer.numpy()) < 1e-9, f"{mode} {key}"


def test_directional_gradient_check_of_the_memory_efficient_network(device):
    model = densenet_cifar(16, 4, dropout=0.1, dtype=np.float64, seed=1, memory_efficient=True).to(device)
    x = to_device(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), device)
    error, numeric, analytic = check_module_directional(model, x)
    assert error < 1e-7, f"numerical {numeric!r} vs analytic {analytic!r}"


def test_memory_efficient_mode_needs_the_channel_major_layout():
    with pytest.raises(ValueError, match="needs the channel-major layout 'CNHW'"):
        densenet_cifar(16, 4, layout="NCHW", memory_efficient=True)
