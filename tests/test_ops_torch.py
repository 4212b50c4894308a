"""Every op of both tiers against PyTorch autograd: forward output and every gradient.

float64 must agree to a relative error below 1e-9 element by element
(``rel_error``); float32 below 1e-4 relative to the tensor's scale
(``norm_rel_error``), since element-wise float32 errors of values near zero
are rounding noise.
"""
import numpy as np
import pytest

from op_cases import CASES
from pytorch_parity import MEASURE, TOLERANCE, op_against_pytorch
from scratchnet import ops
from scratchnet.backend import default_rng, to_device, to_numpy

torch = pytest.importorskip("torch")

DTYPES = ["float64", "float32"]


def assert_close(ours, theirs, dtype, what):
    ours = to_numpy(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}, expected {dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs PyTorch's {theirs.shape}"
    error = MEASURE[dtype](ours, theirs)
    assert error < TOLERANCE[dtype], f"{what}: relative error {error:.2e} against PyTorch"


def random_like(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_gradients_match_pytorch(case, dtype, device, rng):
    for what, ours, theirs in op_against_pytorch(case, dtype, rng, device):
        assert_close(ours, theirs, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, 0.3])
@pytest.mark.parametrize("shape", [(4, 5, 7, 9), (2, 3), (1, 2, 3, 3)])
def test_batchnorm_running_statistics_match_pytorch(shape, momentum, dtype, device, rng):
    C = shape[1]
    bn = torch.nn.BatchNorm2d(C, momentum=momentum) if len(shape) == 4 else torch.nn.BatchNorm1d(C, momentum=momentum)
    bn = bn.to(getattr(torch, dtype))
    gamma = to_device(bn.weight.detach().numpy().copy(), device)
    beta = to_device(bn.bias.detach().numpy().copy(), device)
    running_mean = to_device(np.zeros(C, dtype), device)
    running_var = to_device(np.ones(C, dtype), device)
    for step in range(3):
        x = random_like(rng, shape, dtype) * (step + 1) + step
        out, _ = ops.batchnorm_forward(to_device(x, device), gamma, beta, running_mean, running_var,
                                       train=True, momentum=momentum)
        expected = bn(torch.tensor(x))
        assert_close(out, expected, dtype, f"step {step} output")
        assert_close(running_mean, bn.running_mean, dtype, f"step {step} running_mean")
        assert_close(running_var, bn.running_var, dtype, f"step {step} running_var")
    # Eval mode then normalises with those running statistics, as PyTorch's does.
    bn.eval()
    x = random_like(rng, shape, dtype)
    out, _ = ops.batchnorm_forward(to_device(x, device), gamma, beta, running_mean, running_var, train=False)
    assert_close(out, bn(torch.tensor(x)), dtype, "eval output")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_dropout_matches_pytorch_given_the_same_mask(p, dtype, device, rng):
    # PyTorch draws its mask from its own generator, so we hand it ours: the
    # reference is torch's inverted-dropout formula, input * mask / (1 - p).
    x = random_like(rng, (4, 3, 5, 5), dtype)
    out, cache = ops.dropout_forward(to_device(x, device), p, train=True, rng=default_rng(3, device))
    dout = random_like(rng, x.shape, dtype)
    dx = ops.dropout_backward(to_device(dout, device), cache)

    keep = to_numpy(out) != 0 if p < 1 else np.zeros(x.shape, bool)
    tensor = torch.tensor(x, requires_grad=True)
    mask = torch.tensor(keep, dtype=tensor.dtype)
    expected = tensor * mask / (1 - p) if p < 1 else tensor * mask
    expected.backward(torch.tensor(dout))
    assert_close(out, expected, dtype, "output")
    assert_close(dx, tensor.grad, dtype, "gradient")
