"""DenseNet and DenseNet-BC (Huang et al., CVPR 2017, "Densely Connected Convolutional Networks").

In a dense block every layer sees the concatenation of the block's input and
of *all* earlier layers' outputs, and adds k ("growth rate") new feature maps:

    x_l = H_l([x_0, x_1, ..., x_{l-1}])        channels of the input to layer l: k_0 + k * (l - 1)

H_l is BN-ReLU-Conv(3x3, k), or with a bottleneck ("B") BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k).
Between blocks a transition BN-ReLU-Conv(1x1)-AvgPool(2x2) halves the image
and, with compression ("C"), keeps only a fraction theta of the channels.

Module and state-dict names are torchvision's (``features.denseblock1.denselayer1.norm1.weight``, ...),
so weights move between scratchnet and ``torchvision.models.densenet121`` unchanged.
"""
import math
from collections import OrderedDict

import numpy as np

from .. import ops
from ..nn import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU,
                  Sequential, kaiming_normal)


class DenseLayer(Sequential):
    """Concatenate the earlier features, then BN-ReLU-Conv(1x1, bn_size*k)-BN-ReLU-Conv(3x3, k).

    Without a bottleneck (bn_size None) just BN-ReLU-Conv(3x3, k), named norm1/relu1/conv1.
    Dropout, when drop_rate > 0, follows each conv.
    forward(features: list of (N, C_i, H, W)) -> (N, k, H, W);
    backward(dout) -> list of gradients, one per feature.
    """

    def __init__(self, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, dtype=np.float32, rng=None):
        convs = []
        if bn_size:
            convs.append(Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False, dtype=dtype, rng=rng))
            convs.append(Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False, dtype=dtype, rng=rng))
        else:
            convs.append(Conv2d(num_input_features, growth_rate, 3, padding=1, bias=False, dtype=dtype, rng=rng))
        layers = OrderedDict()
        for i, conv in enumerate(convs, start=1):
            layers[f"norm{i}"] = BatchNorm2d(conv.in_channels, dtype=dtype)
            layers[f"relu{i}"] = ReLU()
            layers[f"conv{i}"] = conv
            if drop_rate > 0:
                layers[f"drop{i}"] = Dropout(drop_rate, rng)
        super().__init__(layers)
        self._concat_cache = None

    def forward(self, features):
        x, self._concat_cache = ops.concat_forward(features, axis=1)
        return super().forward(x)

    def backward(self, dout):
        return ops.concat_backward(super().backward(dout), self._concat_cache)


class DenseBlock(Module):
    """num_layers DenseLayers; the output concatenates the input and every layer's k new maps.

    x: (N, C, H, W) -> (N, C + num_layers * k, H, W).
    """

    def __init__(self, num_layers, num_input_features, growth_rate, bn_size=4, drop_rate=0.0,
                 dtype=np.float32, rng=None):
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate, dtype, rng)
            self.add_module(f"denselayer{i + 1}", layer)
        self._concat_cache = None

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(features))
        out, self._concat_cache = ops.concat_forward(features, axis=1)
        return out

    def backward(self, dout):
        # grads[i] collects the gradient of feature i: its slice of dout, plus what
        # every later layer that read it sends back. Layer l's own output gradient
        # is complete once the layers after it are done, so we walk them backwards.
        grads = [g.copy() for g in ops.concat_backward(dout, self._concat_cache)]
        layers = list(self.children())
        for l in reversed(range(len(layers))):
            for i, grad in enumerate(layers[l].backward(grads[l + 1])):
                grads[i] += grad
        return grads[0]


class Transition(Sequential):
    """BN-ReLU-Conv(1x1)-AvgPool(2x2) between dense blocks: (N, C, H, W) -> (N, C_out, H/2, W/2)."""

    def __init__(self, num_input_features, num_output_features, drop_rate=0.0, dtype=np.float32, rng=None):
        layers = OrderedDict()
        layers["norm"] = BatchNorm2d(num_input_features, dtype=dtype)
        layers["relu"] = ReLU()
        layers["conv"] = Conv2d(num_input_features, num_output_features, 1, bias=False, dtype=dtype, rng=rng)
        if drop_rate > 0:
            layers["drop"] = Dropout(drop_rate, rng)
        layers["pool"] = AvgPool2d(2, 2)
        super().__init__(layers)


class DenseNet(Module):
    """A stem, dense blocks joined by transitions, then BN-ReLU-global average pool-linear.

    growth_rate: k; block_config: layers per block, e.g. (6, 12, 24, 16) for DenseNet-121;
    num_init_features: channels after the stem; bn_size: bottleneck width factor (None: no bottleneck);
    compression: theta, the fraction of channels a transition keeps; drop_rate: dropout after each conv
    but the stem; stem: "cifar" (3x3 conv) or "imagenet" (7x7/2 conv, BN-ReLU, 3x3/2 max pool).
    x: (N, 3, H, W) -> logits (N, num_classes).
    """

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 compression=0.5, drop_rate=0.0, num_classes=1000, stem="imagenet", dtype=np.float32, seed=0):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        # One generator for the initial weights and, afterwards, every dropout mask.
        self.rng = rng = np.random.default_rng(seed)
        layers = OrderedDict()
        if stem == "cifar":
            layers["conv0"] = Conv2d(3, num_init_features, 3, padding=1, bias=False, dtype=dtype, rng=rng)
        else:
            layers["conv0"] = Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False, dtype=dtype, rng=rng)
            layers["norm0"] = BatchNorm2d(num_init_features, dtype=dtype)
            layers["relu0"] = ReLU()
            layers["pool0"] = MaxPool2d(3, stride=2, padding=1)
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            layers[f"denseblock{i}"] = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, dtype, rng)
            channels += num_layers * growth_rate
            if i < len(block_config):
                out_channels = int(math.floor(compression * channels))
                layers[f"transition{i}"] = Transition(channels, out_channels, drop_rate, dtype, rng)
                channels = out_channels
        layers["norm5"] = BatchNorm2d(channels, dtype=dtype)
        layers["relu5"] = ReLU()
        self.features = Sequential(layers)
        self.pool = GlobalAvgPool2d()
        self.classifier = Linear(channels, num_classes, dtype=dtype, rng=rng)
        self.num_features = channels
        self._initialise(rng, dtype)

    def _initialise(self, rng, dtype):
        # torchvision's DenseNet initialisation: He-normal convs, BN weight 1 and bias 0, linear bias 0.
        for _, module in self.named_modules():
            if isinstance(module, Conv2d):
                module.weight.data[...] = kaiming_normal(rng, module.weight.shape, dtype)
            elif isinstance(module, Linear):
                module.bias.data[...] = 0

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))

    def backward(self, dlogits):
        """dlogits: (N, num_classes) -> dx: (N, 3, H, W); every parameter's .grad accumulates."""
        return self.features.backward(self.pool.backward(self.classifier.backward(dlogits)))


def valid_cifar_depths(bc, near, count=2):
    """The depths closest to ``near`` that densenet_cifar accepts (4 + 6n for BC, 4 + 3n for basic)."""
    step = 6 if bc else 3
    n = max(1, round((near - 4) / step))
    candidates = sorted({4 + step * max(1, n + offset) for offset in (-1, 0, 1)}, key=lambda d: (abs(d - near), d))
    return sorted(candidates[:count])


def densenet_cifar(depth=40, k=12, bc=True, theta=None, dropout=0.0, num_classes=10, dtype=np.float32, seed=0):
    """The paper's CIFAR DenseNets: three dense blocks on 32x32 images.

    bc=True (DenseNet-BC): (depth - 4) / 6 bottleneck layers per block, a stem of 2k channels,
    compression theta (default 0.5). bc=False (DenseNet): (depth - 4) / 3 plain layers per block,
    a stem of 16 channels, theta default 1 (no compression).
    """
    step = 6 if bc else 3
    if depth < 4 + step or (depth - 4) % step:
        kind = "DenseNet-BC" if bc else "DenseNet"
        nearest = " or ".join(str(d) for d in valid_cifar_depths(bc, depth))
        raise ValueError(f"depth {depth} does not fit {kind}: (depth - 4) must be a positive multiple of {step}; "
                         f"the nearest valid depths are {nearest}")
    n = (depth - 4) // step
    if theta is None:
        theta = 0.5 if bc else 1.0
    if not 0 < theta <= 1:
        raise ValueError(f"theta (compression) must lie in (0, 1], got {theta}")
    return DenseNet(growth_rate=k, block_config=(n, n, n), num_init_features=2 * k if bc else 16,
                    bn_size=4 if bc else None, compression=theta, drop_rate=dropout, num_classes=num_classes,
                    stem="cifar", dtype=dtype, seed=seed)


def densenet121(num_classes=1000, dtype=np.float32, seed=0):
    """DenseNet-121 for ImageNet-sized inputs: k = 32, blocks of (6, 12, 24, 16) layers."""
    return DenseNet(32, (6, 12, 24, 16), num_classes=num_classes, dtype=dtype, seed=seed)


def densenet169(num_classes=1000, dtype=np.float32, seed=0):
    """DenseNet-169 for ImageNet-sized inputs: k = 32, blocks of (6, 12, 32, 32) layers."""
    return DenseNet(32, (6, 12, 32, 32), num_classes=num_classes, dtype=dtype, seed=seed)


def densenet201(num_classes=1000, dtype=np.float32, seed=0):
    """DenseNet-201 for ImageNet-sized inputs: k = 32, blocks of (6, 12, 48, 32) layers."""
    return DenseNet(32, (6, 12, 48, 32), num_classes=num_classes, dtype=dtype, seed=seed)


def densenet264(num_classes=1000, dtype=np.float32, seed=0):
    """DenseNet-264 for ImageNet-sized inputs: k = 32, blocks of (6, 12, 64, 48) layers."""
    return DenseNet(32, (6, 12, 64, 48), num_classes=num_classes, dtype=dtype, seed=seed)
