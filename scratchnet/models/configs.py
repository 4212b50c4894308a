"""The paper's DenseNets by name: the CIFAR family (depth L, growth rate k) and DenseNet-121/161/169/201/264.

``memory_efficient`` chooses the tier: False, the textbook ``DenseNet`` (``scratchnet.ops``
through ``scratchnet.nn``); True, the memory-efficient ``EfficientDenseNet`` (``scratchnet.fast``,
shared buffers). Both have the same parameters, state-dict names and, to rounding, the same outputs
and gradients.
"""
import numpy as np

from .densenet import DenseNet
from .depths import nearest_depths, units_per_stage
from .efficient_densenet import EfficientDenseNet
from .pretrained import load_pretrained, pretrained_name


def densenet_class(memory_efficient):
    """The network of the tier: EfficientDenseNet (fast tier) if memory_efficient, else the textbook DenseNet."""
    return EfficientDenseNet if memory_efficient else DenseNet


def valid_cifar_depths(bc, near, count=2):
    """The depths closest to ``near`` that densenet_cifar accepts (4 + 6n for BC, 4 + 3n for basic)."""
    return nearest_depths(4, 6 if bc else 3, near, count)


def densenet_cifar(depth=40, k=12, bc=True, theta=None, dropout=0.0, num_classes=10, dtype=np.float32, seed=0,
                   memory_efficient=False, layers=None, preactivation=True, pretrained=False):
    """The paper's CIFAR DenseNets: three dense blocks on 32x32 images.

    bc=True (DenseNet-BC): (depth - 4) / 6 bottleneck layers per block, a stem of 2k channels,
    compression theta (default 0.5). bc=False (DenseNet): (depth - 4) / 3 plain layers per block,
    a stem of 16 channels, theta default 1 (no compression).
    layers: a layer factory class to use instead of the network's own, e.g. (with memory_efficient=True)
    ``functools.partial(FastLayerFactory, shared_buffers=False)`` (``bench --ablation`` does this).
    preactivation: False builds every unit as Conv-BN-ReLU (``DenseNet``'s docstring), textbook tier only.
    pretrained: True loads the weights that ship with scratchnet (``models/pretrained.py``): DenseNet-BC
    (L=40, k=12) trained on C10+, so depth=40, k=12 and the other settings at their defaults; a model
    with other settings raises a PretrainedError saying which. Either tier, any dtype.
    """
    n = units_per_stage(depth, 4, 6 if bc else 3, "DenseNet-BC" if bc else "DenseNet")
    if theta is None:
        theta = 0.5 if bc else 1.0
    if not 0 < theta <= 1:
        raise ValueError(f"theta (compression) must lie in (0, 1], got {theta}")
    if pretrained:
        name = pretrained_name(dict(depth=depth, k=k, bc=bc, theta=theta, dropout=dropout, num_classes=num_classes,
                                    preactivation=preactivation))
    model = densenet_class(memory_efficient)(
        growth_rate=k, block_config=(n, n, n), num_init_features=2 * k if bc else 16, bn_size=4 if bc else None,
        compression=theta, drop_rate=dropout, num_classes=num_classes, stem="cifar", dtype=dtype, seed=seed,
        layers=layers, preactivation=preactivation)
    return load_pretrained(model, name) if pretrained else model


def _imagenet_densenet(block_config, num_classes, memory_efficient, options, growth_rate=32, num_init_features=64):
    return densenet_class(memory_efficient)(growth_rate, block_config, num_init_features, num_classes=num_classes,
                                            **options)


def densenet121(num_classes=1000, memory_efficient=False, **options):
    """DenseNet-121 for ImageNet-sized inputs: k = 32, blocks of (6, 12, 24, 16) layers.

    options: DenseNet's dtype, seed, drop_rate.
    """
    return _imagenet_densenet((6, 12, 24, 16), num_classes, memory_efficient, options)


def densenet161(num_classes=1000, memory_efficient=False, **options):
    """DenseNet-161: k = 48, blocks of (6, 12, 36, 24) layers, a stem of 96 channels (torchvision's);
    options as densenet121's."""
    return _imagenet_densenet((6, 12, 36, 24), num_classes, memory_efficient, options, growth_rate=48,
                              num_init_features=96)


def densenet169(num_classes=1000, memory_efficient=False, **options):
    """DenseNet-169: k = 32, blocks of (6, 12, 32, 32) layers; options as densenet121's."""
    return _imagenet_densenet((6, 12, 32, 32), num_classes, memory_efficient, options)


def densenet201(num_classes=1000, memory_efficient=False, **options):
    """DenseNet-201: k = 32, blocks of (6, 12, 48, 32) layers; options as densenet121's."""
    return _imagenet_densenet((6, 12, 48, 32), num_classes, memory_efficient, options)


def densenet264(num_classes=1000, memory_efficient=False, **options):
    """DenseNet-264: k = 32, blocks of (6, 12, 64, 48) layers; options as densenet121's."""
    return _imagenet_densenet((6, 12, 64, 48), num_classes, memory_efficient, options)
