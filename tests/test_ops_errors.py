"""Bad input gets a ValueError that names the op and the shapes, not a NumPy broadcasting error."""
import re

import numpy as np
import pytest

from conftest import requires_gpu
from scratchnet import ops
from scratchnet.backend import to_device


def x4(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


BAD_CALLS = {
    "conv2d wrong rank": (lambda: ops.conv2d_forward(x4(3, 7, 9), x4(4, 3, 3, 3)),
                          "conv2d: x must be 4-D (N, C, H, W), got shape (3, 7, 9)"),
    "conv2d weight rank": (lambda: ops.conv2d_forward(x4(2, 3, 7, 9), x4(4, 3, 3)),
                           "conv2d: w must be 4-D (F, C, kh, kw), got shape (4, 3, 3)"),
    "conv2d channel mismatch": (lambda: ops.conv2d_forward(x4(2, 3, 8, 8), x4(4, 5, 3, 3)),
                                "conv2d: x has 3 channels but w of shape (4, 5, 3, 3) expects 5"),
    "conv2d kernel too large": (lambda: ops.conv2d_forward(x4(1, 1, 3, 8), x4(1, 1, 5, 5)),
                                "conv2d: kernel 5 is larger than the padded input height 3 + 2*0 = 3"),
    "conv2d bias shape": (lambda: ops.conv2d_forward(x4(1, 2, 4, 4), x4(3, 2, 3, 3), x4(2)),
                          "conv2d: b must have shape (3,)"),
    "conv2d stride zero": (lambda: ops.conv2d_forward(x4(1, 2, 4, 4), x4(3, 2, 3, 3), stride=0),
                           "conv2d: stride must be an integer >= 1, got 0"),
    "conv2d dtype mix": (lambda: ops.conv2d_forward(x4(1, 2, 4, 4), x4(3, 2, 3, 3, dtype=np.float64)),
                         "conv2d: inputs must share one dtype, but x is float32, w is float64"),
    "conv2d integer input": (lambda: ops.conv2d_forward(np.zeros((1, 2, 4, 4), int), x4(3, 2, 3, 3)),
                             "conv2d: x has dtype int64; use float32 or float64"),
    "batchnorm gamma shape": (lambda: ops.batchnorm_forward(x4(2, 3, 4, 4), x4(4), x4(3), None, None, True),
                              "batchnorm: gamma must have shape (3,) for x of shape (2, 3, 4, 4), got (4,)"),
    "batchnorm one value per channel": (lambda: ops.batchnorm_forward(x4(1, 3), x4(3), x4(3), None, None, True),
                                        "batchnorm: training needs more than one value per channel"),
    "batchnorm eval without statistics": (lambda: ops.batchnorm_forward(x4(2, 3), x4(3), x4(3), None, None, False),
                                          "batchnorm: eval mode (train=False) needs running_mean and running_var"),
    "concat shape mismatch": (lambda: ops.concat_forward([x4(2, 3, 4, 4), x4(2, 1, 5, 4)]),
                              "concat: xs[1] has shape (2, 1, 5, 4) but xs[0] has (2, 3, 4, 4)"),
    "concat empty": (lambda: ops.concat_forward([]), "concat: xs must be a non-empty list of arrays"),
    "add shape mismatch": (lambda: ops.add_forward(x4(2, 16, 8, 8), x4(2, 32, 4, 4)),
                           "add: a has shape (2, 16, 8, 8) but b has (2, 32, 4, 4); they must be equal"),
    "add dtype mix": (lambda: ops.add_forward(x4(2, 3), x4(2, 3, dtype=np.float64)),
                      "add: inputs must share one dtype, but a is float32, b is float64"),
    "avgpool wrong rank": (lambda: ops.avgpool_forward(x4(3, 8, 8)),
                           "avgpool: x must be 4-D (N, C, H, W), got shape (3, 8, 8)"),
    "avgpool kernel too large": (lambda: ops.avgpool_forward(x4(1, 1, 1, 8)),
                                 "avgpool: kernel 2 is larger than the padded input height 1 + 2*0 = 1"),
    "maxpool pad too large": (lambda: ops.maxpool_forward(x4(1, 1, 8, 8), kernel=3, stride=1, pad=2),
                              "maxpool: pad 2 must be at most half the kernel 3"),
    "global_avgpool wrong rank": (lambda: ops.global_avgpool_forward(x4(2, 3)),
                                  "global_avgpool: x must be 4-D (N, C, H, W), got shape (2, 3)"),
    "linear feature mismatch": (lambda: ops.linear_forward(x4(4, 5), x4(3, 6)),
                                "linear: x has 5 channels but w of shape (3, 6) expects 6"),
    "labels out of range": (lambda: ops.softmax_cross_entropy(x4(3, 10), np.array([1, 10, 2])),
                            "softmax_cross_entropy: label 10 is out of range for 10 classes"),
    "negative label": (lambda: ops.softmax_cross_entropy(x4(2, 10), np.array([-1, 2])),
                       "softmax_cross_entropy: label -1 is out of range for 10 classes"),
    "float labels": (lambda: ops.softmax_cross_entropy(x4(2, 10), np.array([1.0, 2.0])),
                     "softmax_cross_entropy: labels must be integers"),
    "labels shape": (lambda: ops.softmax_cross_entropy(x4(3, 10), np.array([1, 2])),
                     "softmax_cross_entropy: labels must have shape (3,)"),
    "dropout p out of range": (lambda: ops.dropout_forward(x4(2, 3), 1.5, True, np.random.default_rng(0)),
                               "dropout: p must lie in [0, 1], got 1.5"),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_input_raises_a_clear_error(name):
    call, message = BAD_CALLS[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    _, cache = ops.conv2d_forward(x4(2, 3, 8, 8), x4(4, 3, 3, 3), pad=1)
    with pytest.raises(ValueError, match=re.escape("conv2d_backward: dout must have the forward output's shape "
                                                   "(2, 4, 8, 8), got (2, 4, 6, 6)")):
        ops.conv2d_backward(x4(2, 4, 6, 6), cache)


@requires_gpu
def test_mixing_numpy_and_cupy_arrays_is_refused():
    x = to_device(x4(2, 3, 8, 8), "gpu")
    with pytest.raises(ValueError, match="conv2d: got a mix of NumPy .CPU. and CuPy .GPU. arrays"):
        ops.conv2d_forward(x, x4(4, 3, 3, 3))
