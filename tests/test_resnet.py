"""The CIFAR ResNets and plain nets: the papers' parameter counts, torchvision's names, depth errors,
where the shortcut is (and is not), torchvision's initialisation, training. Against a PyTorch ResNet
in float64 (every configuration, train and eval mode) they are held in tests/test_models.py
(``test_whole_network_matches_pytorch_in_train_then_eval_mode``, ``pytorch_parity.RESNETS``)."""
import re

import numpy as np
import pytest

from pytorch_parity import RESNETS
from scratchnet import ops
from scratchnet.gradcheck import check_module_directional
from scratchnet.models import resnet_cifar


@pytest.mark.parametrize("depth, options, expected", [
    (20, dict(preactivation=False), 272_474),
    (56, dict(preactivation=False), 855_770),
    (110, dict(preactivation=False), 1_730_714),
    (110, dict(), 1_730_522),
    (164, dict(bottleneck=True), 1_703_258),
    (1001, dict(bottleneck=True), 10_327_706),     # built in a third of a second: counted on the model itself
], ids=["ResNet-20", "ResNet-56", "ResNet-110", "PreAct-ResNet-110", "PreAct-ResNet-164", "PreAct-ResNet-1001"])
def test_parameter_counts_are_the_published_ones(depth, options, expected):
    assert resnet_cifar(depth, **options).num_parameters() == expected


def test_the_plain_net_has_the_resnets_layers_without_the_projections():
    # ResNet-20 less its projections: 1x1 convs 16->32 and 32->64 (2,560), their BNs (192). The pre-activation
    # plain net lands on the same count: its bn1s of stages 2 and 3 read 16 and 32 channels, not 32 and 64 (-96),
    # and its final BN adds 128 where the original stem's adds 32.
    assert resnet_cifar(20, preactivation=False, shortcut=False).num_parameters() == 272_474 - 2_560 - 192 == 269_722
    assert resnet_cifar(20, shortcut=False).num_parameters() == 269_722
    assert not any("downsample" in key for key in resnet_cifar(29, bottleneck=True, shortcut=False).state_dict())


def test_names_are_torchvisions_with_bn_before_conv_in_the_preactivation_form():
    original = resnet_cifar(8, preactivation=False)
    assert list(original._modules) == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]
    assert list(original.layer2[0]._modules) == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "downsample"]
    assert list(original.layer2[0].downsample._modules) == ["0", "1"]
    assert original.layer2[0].downsample[0].weight.shape == (32, 16, 1, 1)
    assert original.layer2[0].downsample[0].stride == 2 and original.layer2[0].conv1.stride == 2
    preact = resnet_cifar(11, bottleneck=True)
    assert list(preact._modules) == ["conv1", "layer1", "layer2", "layer3", "bn", "relu", "avgpool", "fc"]
    block = preact.layer2[0]
    assert list(block._modules) == ["bn1", "relu1", "conv1", "bn2", "relu2", "conv2", "bn3", "relu3", "conv3",
                                    "downsample"]
    assert list(block.downsample._modules) == ["0"]
    # Bottleneck: 1x1 (stride 1), 3x3 (stride 2), 1x1 widening 4x; bnK normalises convK's input.
    assert [block.conv1.weight.shape, block.conv2.weight.shape, block.conv3.weight.shape] == [
        (32, 64, 1, 1), (32, 32, 3, 3), (128, 32, 1, 1)]
    assert [block.conv1.stride, block.conv2.stride, block.conv3.stride] == [1, 2, 1]
    assert block.bn1.num_features == 64 and preact.bn.num_features == 256 and preact.fc.in_features == 256
    assert "layer1.0.downsample.0.weight" in preact.state_dict()           # 16 -> 64 channels: a projection
    assert "layer1.1.downsample.0.weight" not in resnet_cifar(20, bottleneck=True).state_dict()


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_the_state_dict_has_the_pytorch_twins_keys_and_shapes(name, torch):
    build, build_reference, _ = RESNETS[name]
    ours = {key: tuple(value.shape) for key, value in build().state_dict().items()}
    theirs = {key: tuple(value.shape) for key, value in build_reference().state_dict().items()}
    assert ours == theirs


def test_a_depth_that_does_not_fit_names_the_nearest_valid_ones():
    with pytest.raises(ValueError, match=re.escape("depth 21 does not fit a ResNet of basic blocks: (depth - 2) "
                                                   "must be a positive multiple of 6; the nearest valid depths are "
                                                   "20 or 26")):
        resnet_cifar(21)
    with pytest.raises(ValueError, match=re.escape("depth 165 does not fit a bottleneck ResNet: (depth - 2) must "
                                                   "be a positive multiple of 9; the nearest valid depths are 164 "
                                                   "or 173")):
        resnet_cifar(165, bottleneck=True)
    with pytest.raises(ValueError, match="the nearest valid depths are 8 or 14"):
        resnet_cifar(2)


def zero(*batch_norms):
    for bn in batch_norms:
        bn.weight.data[...] = 0
        bn.bias.data[...] = 0


@pytest.mark.parametrize("preactivation", [False, True], ids=["original", "preactivation"])
def test_with_its_residual_branch_silenced_a_block_passes_its_input_on_and_a_plain_block_gives_zero(preactivation):
    # Silence F: the original form's last BN (output ReLU(F(x) + x) = ReLU(x)), or the pre-activation form's
    # last BN-ReLU before its last conv (F(x) = conv(0) = 0, output x). Without a shortcut: 0.
    x = np.random.default_rng(0).standard_normal((2, 16, 8, 8))
    for shortcut, expected in ((True, np.maximum(x, 0) if not preactivation else x), (False, np.zeros_like(x))):
        block = resnet_cifar(8, preactivation, shortcut=shortcut, dtype=np.float64).layer1[0]
        zero(block.bn2)
        assert np.array_equal(block(x), expected), f"shortcut={shortcut}"
        dx = block.backward(np.ones_like(x))      # and backward: the gradient goes through the identity only
        assert np.array_equal(dx, (x > 0) * 1.0 if not preactivation else np.ones_like(x)) if shortcut else \
            not dx.any()


def test_the_preactivation_projection_reads_the_preactivated_input():
    # bn1 sends everything below zero, so BN-ReLU(x) = 0: both paths read it, and the block gives 0
    # (a projection of x itself would not).
    block = resnet_cifar(8, dtype=np.float64).layer2[0]
    block.bn1.weight.data[...], block.bn1.bias.data[...] = 0, -1
    x = np.random.default_rng(0).standard_normal((2, 16, 8, 8))
    assert np.array_equal(block(x), np.zeros((2, 32, 4, 4)))


def test_initialisation_is_torchvisions():
    model = resnet_cifar(20, seed=3)
    conv = model.layer3[1].conv2.weight.data           # fan_out = 64 * 9
    assert abs(conv.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.05
    projection = model.layer3[0].downsample[0].weight.data   # fan_out = 64, fan_in 32: tells the two apart
    assert abs(projection.std() / np.sqrt(2 / 64) - 1) < 0.1
    bn = model.layer2[1].bn1
    assert (bn.weight.data == 1).all() and (bn.bias.data == 0).all()
    bound = 1 / np.sqrt(64)                                 # the linear layer keeps PyTorch's default
    assert np.abs(model.fc.weight.data).max() <= bound and np.abs(model.fc.bias.data).max() <= bound
    assert model.fc.bias.data.any()


@pytest.mark.parametrize("preactivation", [False, True], ids=["original", "preactivation"])
def test_directional_gradient_check_of_the_whole_network(preactivation):
    model = resnet_cifar(11, preactivation, bottleneck=True, dtype=np.float64, seed=1)
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8))
    error, numeric, analytic = check_module_directional(model, x)
    assert error < 1e-7, f"numerical {numeric!r} vs analytic {analytic!r}"


def test_add_backward_rejects_a_gradient_of_the_wrong_shape():
    _, cache = ops.add_forward(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=re.escape("add_backward: dout must have the forward output's shape (2, 3)")):
        ops.add_backward(np.zeros((3, 2)), cache)
