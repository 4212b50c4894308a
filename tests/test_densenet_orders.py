"""Pre-activation (BN-ReLU-Conv, the paper's) against post-activation (Conv-BN-ReLU, the lecture notes'
Keras code) DenseNets: what each layer is made of. Their outputs and gradients against PyTorch twins are
in tests/pytorch_parity.py's NETWORKS (test_models.py runs them)."""
import numpy as np
import pytest

from scratchnet.models import densenet_cifar


def child_names(module):
    return [name for name, _ in module.named_children()]


@pytest.mark.parametrize("bc", [True, False])
def test_post_activation_puts_each_batch_norm_after_its_conv(bc):
    pre = densenet_cifar(16 if bc else 10, 4, bc=bc, preactivation=True)
    post = densenet_cifar(16 if bc else 10, 4, bc=bc, preactivation=False)
    units = ["1", "2"] if bc else ["1"]
    layer_pre, layer_post = pre.features.denseblock1.denselayer1, post.features.denseblock1.denselayer1
    assert child_names(layer_pre) == [f"{part}{u}" for u in units for part in ("norm", "relu", "conv")]
    assert child_names(layer_post) == [f"{part}{u}" for u in units for part in ("conv", "norm", "relu")]
    # Pre-activation normalises a layer's input (its channels), post-activation its conv's output.
    assert layer_pre.norm1.num_features == layer_pre.conv1.in_channels
    assert layer_post.norm1.num_features == layer_post.conv1.out_channels
    assert child_names(pre.features.transition1) == ["norm", "relu", "conv", "pool"]
    assert child_names(post.features.transition1) == ["conv", "norm", "relu", "pool"]
    # The stem's conv gets a BN-ReLU of its own; the final BN-ReLU goes, as every feature map already had one.
    assert child_names(pre.features)[0] == "conv0" and child_names(pre.features)[-2:] == ["norm5", "relu5"]
    assert child_names(post.features)[:3] == ["conv0", "norm0", "relu0"]
    assert child_names(post.features)[-1] == "denseblock3"


def test_a_post_activation_layer_outputs_normalised_non_negative_maps(rng):
    post = densenet_cifar(16, 4, preactivation=False, dtype=np.float64)
    pre = densenet_cifar(16, 4, preactivation=True, dtype=np.float64)
    x = rng.standard_normal((8, 3, 16, 16))
    for model, non_negative in ((post, True), (pre, False)):
        stem = model.features.conv0(x)
        if non_negative:
            stem = model.features.relu0(model.features.norm0(stem))
        out = model.features.denseblock1.denselayer1([stem])
        assert (out.min() >= 0) == non_negative          # post: ReLU last; pre: the conv's output, signed


def test_the_memory_efficient_network_is_pre_activation_only():
    with pytest.raises(ValueError, match="only the pre-activation order .* memory_efficient=False"):
        densenet_cifar(16, 4, preactivation=False, memory_efficient=True)
