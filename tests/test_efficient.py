"""The memory-efficient DenseNet (fast tier, shared buffers) against the textbook DenseNet (ops only).

Same weights in, the same logits, input gradient, parameter gradients and running statistics
out, to float64 rounding, in train and eval mode; against PyTorch both are held in
tests/test_models.py. Also: the blocks on their own, and the in-between variants that
``bench --ablation`` times.
"""
from functools import partial

import numpy as np
import pytest

from pytorch_parity import NETWORKS, run_step
from scratchnet.backend import to_device
from scratchnet.gradcheck import check_module_directional, norm_rel_error
from scratchnet.models import DenseBlock, FastLayerFactory, LayerFactory, SharedBufferDenseBlock, densenet_cifar
from scratchnet.models.efficient_densenet import swap_batch_and_channels


def assert_same_step(textbook, fast, x, dlogits, train, tolerance=1e-10):
    # The same numbers up to float64 rounding: the fused op folds batch norm into one
    # multiply-add per channel, which rounds differently from the textbook formula.
    a, b = run_step(textbook, x, dlogits, train), run_step(fast, x, dlogits, train)
    mode = "train" if train else "eval"
    assert norm_rel_error(a[0], b[0]) < tolerance, f"{mode} logits"
    assert norm_rel_error(a[1], b[1]) < tolerance, f"{mode} input gradient"
    assert a[2].keys() == b[2].keys() and a[3].keys() == b[3].keys()
    for key in a[2]:
        assert norm_rel_error(a[2][key], b[2][key]) < tolerance, f"{mode} gradient of {key}"
    for key in a[3]:   # running statistics updated once per step, not again by the recomputation
        assert norm_rel_error(a[3][key], b[3][key]) < tolerance, f"{mode} {key}"


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_memory_efficient_gradients_are_those_of_the_textbook_model(name, device):
    build, _, size = NETWORKS[name]
    textbook, efficient = build(), build(memory_efficient=True)
    efficient.load_state_dict(textbook.state_dict())
    textbook.to(device)
    efficient.to(device)
    rng = np.random.default_rng(0)
    for train in (True, False):
        x = to_device(rng.standard_normal((3, 3, size, size)), device)
        dlogits = to_device(rng.standard_normal((3, textbook.classifier.out_features)), device)
        textbook.rng.bit_generator.state = efficient.rng.bit_generator.state     # the same dropout masks
        assert_same_step(textbook, efficient, x, dlogits, train)


ABLATION_VARIANTS = {   # the layer factories between the textbook and the memory-efficient model
    "fast layers, textbook blocks, im2col": partial(FastLayerFactory, conv_method="im2col", shared_buffers=False),
    "fast layers, textbook blocks": partial(FastLayerFactory, shared_buffers=False),
    "fast layers, shared buffers, kn2row for every convolution": partial(FastLayerFactory, conv_method="kn2row"),
}


@pytest.mark.parametrize("variant", sorted(ABLATION_VARIANTS))
def test_every_layer_factory_gives_the_textbook_step(variant):
    textbook = densenet_cifar(16, 6, dropout=0.2, dtype=np.float64)
    other = densenet_cifar(16, 6, dropout=0.2, dtype=np.float64, layers=ABLATION_VARIANTS[variant])
    other.load_state_dict(textbook.state_dict())
    rng = np.random.default_rng(3)
    x, dlogits = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((2, 10))
    for train in (True, False):
        textbook.rng.bit_generator.state = other.rng.bit_generator.state
        assert_same_step(textbook, other, x, dlogits, train)


def test_a_shared_buffer_block_equals_the_textbook_block(rng):
    # Alone, without the rest of the network: input (N, C, H, W) and its channel-major twin.
    textbook = DenseBlock(3, 8, 4, make=LayerFactory(np.float64, np.random.default_rng(0)))
    shared = SharedBufferDenseBlock(3, 8, 4, make=FastLayerFactory(np.float64, np.random.default_rng(0)))
    assert list(dict(textbook.named_parameters())) == list(dict(shared.named_parameters()))
    shared.load_state_dict(textbook.state_dict())
    x = rng.standard_normal((4, 8, 5, 5))
    dout = rng.standard_normal((4, 8 + 3 * 4, 5, 5))
    out, out_shared = textbook(x), shared(swap_batch_and_channels(x))
    assert norm_rel_error(out, swap_batch_and_channels(out_shared)) < 1e-12
    dx, dx_shared = textbook.backward(dout), shared.backward(swap_batch_and_channels(dout))
    assert norm_rel_error(dx, swap_batch_and_channels(dx_shared)) < 1e-12
    shared_params = dict(shared.named_parameters())
    for name, param in textbook.named_parameters():
        assert norm_rel_error(param.grad, shared_params[name].grad) < 1e-12, name


def test_a_shared_buffer_block_refuses_backward_before_forward():
    block = SharedBufferDenseBlock(2, 4, 2)
    with pytest.raises(RuntimeError, match="without a forward pass before it"):
        block.backward(np.zeros((8, 1, 3, 3), np.float32))


def test_directional_gradient_check_of_the_memory_efficient_network(device):
    model = densenet_cifar(16, 4, dropout=0.1, dtype=np.float64, seed=1, memory_efficient=True).to(device)
    x = to_device(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), device)
    error, numeric, analytic = check_module_directional(model, x)
    assert error < 1e-7, f"numerical {numeric!r} vs analytic {analytic!r}"
