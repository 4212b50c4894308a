"""The memory-efficient DenseNet (fast tier, shared buffers) against the textbook DenseNet (ops only).

Same weights in, the same logits, input gradient, parameter gradients and running statistics
out, to float64 rounding, in train and eval mode, and the same weights after several SGD steps;
against PyTorch both are held in tests/test_models.py. Also: the blocks on their own, and the
in-between variants that ``bench --ablation`` times. Every comparison starts from batch norms with
weights, biases and running statistics of their own (``randomised_batch_norms``): at the initial
ones, all batch norms reading the same maps are the same function, and a network applying the wrong
one would pass.
"""
from functools import partial

import numpy as np
import pytest

from pytorch_parity import NETWORKS, WITH_MEMORY_EFFICIENT_TWIN, randomised_batch_norms, run_step
from scratchnet import ops
from scratchnet.backend import to_device
from scratchnet.gradcheck import check_module_directional, norm_rel_error
from scratchnet.models import DenseBlock, FastLayerFactory, LayerFactory, SharedBufferDenseBlock, densenet_cifar
from scratchnet.models.efficient_densenet import swap_batch_and_channels
from scratchnet.optim import SGD


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


@pytest.mark.parametrize("name", WITH_MEMORY_EFFICIENT_TWIN)
def test_memory_efficient_gradients_are_those_of_the_textbook_model(name, device):
    build, _, size = NETWORKS[name]
    textbook, efficient = build(), build(memory_efficient=True)
    state = randomised_batch_norms(textbook.state_dict())
    textbook.load_state_dict(state)
    efficient.load_state_dict(state)
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
    other = densenet_cifar(16, 6, dropout=0.2, dtype=np.float64, memory_efficient=True,
                           layers=ABLATION_VARIANTS[variant])
    state = randomised_batch_norms(textbook.state_dict())
    textbook.load_state_dict(state)
    other.load_state_dict(state)
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
    state = randomised_batch_norms(textbook.state_dict())
    textbook.load_state_dict(state)
    shared.load_state_dict(state)
    x = rng.standard_normal((4, 8, 5, 5))
    dout = rng.standard_normal((4, 8 + 3 * 4, 5, 5))
    out, out_shared = textbook(x), shared(swap_batch_and_channels(x))
    assert norm_rel_error(out, swap_batch_and_channels(out_shared)) < 1e-12
    dx, dx_shared = textbook.backward(dout), shared.backward(swap_batch_and_channels(dout))
    assert norm_rel_error(dx, swap_batch_and_channels(dx_shared)) < 1e-12
    shared_params = dict(shared.named_parameters())
    for name, param in textbook.named_parameters():
        assert norm_rel_error(param.grad, shared_params[name].grad) < 1e-12, name


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_training_steps_of_the_two_networks_stay_the_same(dropout):
    # From torchvision's initialisation, as a run starts: after the first SGD step every batch norm has
    # weights of its own, and from then on the memory-efficient network's recomputation must refill
    # each layer's own output.
    textbook = densenet_cifar(16, 6, dropout=dropout, dtype=np.float64)
    efficient = densenet_cifar(16, 6, dropout=dropout, dtype=np.float64, memory_efficient=True)
    efficient.load_state_dict(textbook.state_dict())
    optimizers = [SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
                  for model in (textbook, efficient)]
    rng = np.random.default_rng(4)
    for step in range(4):
        x, y = rng.standard_normal((4, 3, 16, 16)), rng.integers(0, 10, 4)
        for model, optimizer in zip((textbook, efficient), optimizers):
            loss, dlogits = ops.softmax_cross_entropy(model(x), y)
            model.zero_grad()
            model.backward(dlogits)
            optimizer.step()
    theirs = dict(efficient.named_parameters())
    for name, param in textbook.named_parameters():
        assert norm_rel_error(param.data, theirs[name].data) < 1e-10, f"{name} after 4 steps"
    assert norm_rel_error(textbook.eval()(x), efficient.eval()(x)) < 1e-10


def test_a_network_refuses_layers_of_the_other_layout():
    with pytest.raises(ValueError, match="belong in an EfficientDenseNet"):
        densenet_cifar(16, 6, layers=FastLayerFactory)
    with pytest.raises(ValueError, match="runs layers whose channels are axis 0"):
        densenet_cifar(16, 6, memory_efficient=True, layers=LayerFactory)


def test_a_shared_buffer_block_refuses_backward_before_forward():
    block = SharedBufferDenseBlock(2, 4, 2)
    with pytest.raises(RuntimeError, match="without a forward pass before it"):
        block.backward(np.zeros((8, 1, 3, 3), np.float32))


def test_directional_gradient_check_of_the_memory_efficient_network(device):
    model = densenet_cifar(16, 4, dropout=0.1, dtype=np.float64, seed=1, memory_efficient=True).to(device)
    x = to_device(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), device)
    error, numeric, analytic = check_module_directional(model, x)
    assert error < 1e-7, f"numerical {numeric!r} vs analytic {analytic!r}"
