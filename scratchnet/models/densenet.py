"""DenseNet and DenseNet-BC (Huang et al., CVPR 2017, "Densely Connected Convolutional Networks").

In a dense block every layer sees the concatenation of the block's input and
of *all* earlier layers' outputs, and adds k ("growth rate") new feature maps:

    x_l = H_l([x_0, x_1, ..., x_{l-1}])        channels of the input to layer l: k_0 + k * (l - 1)

H_l is BN-ReLU-Conv(3x3, k), or with a bottleneck ("B") BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k).
Between blocks a transition BN-ReLU-Conv(1x1)-AvgPool(2x2) halves the image
and, with compression ("C"), keeps only a fraction theta of the channels.

That is the pre-activation order (BN and ReLU before each conv, as He et al.'s "Identity Mappings"
and the paper). ``preactivation=False`` builds every unit as Conv-BN-ReLU instead, the order of
Keras code in many lecture notes, so that the two can be compared on the same data.

Module and state-dict names are torchvision's (``features.denseblock1.denselayer1.norm1.weight``, ...),
so weights move between scratchnet and ``torchvision.models.densenet121`` unchanged.

This file is the textbook DenseNet, built from ``scratchnet.nn``'s layers, which run
``scratchnet.ops``. A ``LayerFactory`` makes every layer, so that the same network can be built
from the fast tier instead (``efficient_densenet.py``: the memory-efficient DenseNet, same modules
and names). The CIFAR and ImageNet configurations are in ``configs.py``.
"""
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..nn import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU,
                  Sequential, kaiming_normal)


@dataclass
class LayerFactory:
    """Makes the layers of one model, with its dtype and random generator: the textbook layers, (N, C, H, W).

    A subclass (``efficient_densenet.FastLayerFactory``) makes the fast tier's layers under the
    same names; the network code below does not change.
    """
    dtype: type = np.float32
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))   # seeded: reproducible
    preactivation: bool = True                  # BN-ReLU before each conv (the paper's order), else Conv-BN-ReLU
    channel_axis = 1                            # the axis along which dense blocks concatenate feature maps

    def conv(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        return Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=self.dtype,
                      rng=self.rng)

    def norm_relu(self, channels, suffix=""):
        """BN then ReLU, named as torchvision names them: normX and reluX."""
        return {f"norm{suffix}": BatchNorm2d(channels, dtype=self.dtype), f"relu{suffix}": ReLU()}

    def conv_unit(self, conv, suffix=""):
        """A conv with its BN and ReLU, in the factory's order: normX, reluX, convX (pre-activation: the BN
        normalises the conv's input) or convX, normX, reluX (post-activation: it normalises the conv's output)."""
        if self.preactivation:
            return OrderedDict([*self.norm_relu(conv.in_channels, suffix).items(), (f"conv{suffix}", conv)])
        return OrderedDict([(f"conv{suffix}", conv), *self.norm_relu(conv.out_channels, suffix).items()])

    def dropout(self, p):
        return Dropout(p, self.rng)

    def avgpool(self):
        return AvgPool2d(2, 2)

    def dense_block(self, num_layers, num_input_features, growth_rate, bn_size, drop_rate):
        return DenseBlock(num_layers, num_input_features, growth_rate, bn_size, drop_rate, make=self)


def dense_layer_modules(num_input_features, growth_rate, bn_size, drop_rate, make):
    """BN-ReLU-Conv(1x1, bn_size*k)-BN-ReLU-Conv(3x3, k), or (bn_size None) BN-ReLU-Conv(3x3, k),
    each unit followed by dropout when drop_rate > 0: torchvision's names (norm1, relu1, conv1, ...).
    With a post-activation factory each unit is Conv-BN-ReLU (``LayerFactory.conv_unit``)."""
    if bn_size:
        convs = [make.conv(num_input_features, bn_size * growth_rate, 1),
                 make.conv(bn_size * growth_rate, growth_rate, 3, padding=1)]
    else:
        convs = [make.conv(num_input_features, growth_rate, 3, padding=1)]
    modules = OrderedDict()
    for i, conv in enumerate(convs, start=1):
        modules.update(make.conv_unit(conv, suffix=i))
        if drop_rate > 0:
            modules[f"drop{i}"] = make.dropout(drop_rate)
    return modules


class DenseLayer(Sequential):
    """Concatenate the earlier features, then BN-ReLU-Conv(1x1, bn_size*k)-BN-ReLU-Conv(3x3, k).

    Without a bottleneck (bn_size None) just BN-ReLU-Conv(3x3, k); dropout, when drop_rate > 0,
    follows each conv (``dense_layer_modules``).
    forward(features: list of (N, C_i, H, W)) -> (N, k, H, W) (with the fast tier's channel-major layers,
    ``FastLayerFactory(shared_buffers=False)``: list of (C_i, N, H, W) -> (k, N, H, W));
    backward(dout) -> list of gradients, one per feature.
    """

    def __init__(self, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, make=None):
        make = make or LayerFactory()
        super().__init__(dense_layer_modules(num_input_features, growth_rate, bn_size, drop_rate, make))
        self.channel_axis = make.channel_axis
        self._concat_cache = None

    def forward(self, features):
        x, self._concat_cache = ops.concat_forward(features, axis=self.channel_axis)
        return super().forward(x)

    def backward(self, dout):
        return ops.concat_backward(super().backward(dout), self._concat_cache)


class DenseBlock(Module):
    """num_layers DenseLayers; the output concatenates the input and every layer's k new maps.

    x: (N, C, H, W) -> (N, C + num_layers * k, H, W).
    Every layer concatenates all features it reads into a new array, so the block keeps
    arrays of 1 + 2 + ... + num_layers feature maps for backward: memory quadratic in depth
    (``efficient_densenet.SharedBufferDenseBlock``, a DenseBlock too, keeps it linear).
    """
    layer_class = DenseLayer                    # what each layer is; SharedBufferDenseBlock has its own

    def __init__(self, num_layers, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, make=None):
        super().__init__()
        make = make or LayerFactory()
        for i in range(num_layers):
            layer = self.layer_class(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate, make)
            self.add_module(f"denselayer{i + 1}", layer)
        self.num_input_features, self.growth_rate = num_input_features, growth_rate
        self.channel_axis = make.channel_axis
        self._concat_cache = None

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(features))
        out, self._concat_cache = ops.concat_forward(features, axis=self.channel_axis)
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
    """BN-ReLU-Conv(1x1)-AvgPool(2x2) between dense blocks: (N, C, H, W) -> (N, C_out, H/2, W/2).

    (Conv(1x1)-BN-ReLU-AvgPool(2x2) with a post-activation factory.)
    """

    def __init__(self, num_input_features, num_output_features, drop_rate=0.0, make=None):
        make = make or LayerFactory()
        layers = make.conv_unit(make.conv(num_input_features, num_output_features, 1))
        if drop_rate > 0:
            layers["drop"] = make.dropout(drop_rate)
        layers["pool"] = make.avgpool()
        super().__init__(layers)


# torchvision's published DenseNet checkpoints predate PyTorch 0.4, which forbade dots in module names:
# their layers' keys read ``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight``. torchvision
# renames them with this pattern, joining its two groups; so do we.
LEGACY_TORCHVISION_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def modern_torchvision_names(state):
    """A new state dict with torchvision's old layer keys renamed (``norm.1.weight`` -> ``norm1.weight``),
    and whether there were any. A key given in both spellings is a ValueError naming it."""
    renamed, old_names = OrderedDict(), {}
    for key, value in state.items():
        match = LEGACY_TORCHVISION_KEY.match(key)
        name = match.group(1) + match.group(2) if match else key
        if match:
            old_names[name] = key
        if name in renamed:
            raise ValueError(f"load_state_dict: {name} is given twice, also under torchvision's old name "
                             f"{old_names[name]}")
        renamed[name] = value
    return renamed, bool(old_names)


class DenseNet(Module):
    """A stem, dense blocks joined by transitions, then BN-ReLU-global average pool-linear.

    growth_rate: k; block_config: layers per block, e.g. (6, 12, 24, 16) for DenseNet-121;
    num_init_features: channels after the stem; bn_size: bottleneck width factor (None: no bottleneck);
    compression: theta, the fraction of channels a transition keeps; drop_rate: dropout after each conv
    but the stem; stem: "cifar" (3x3 conv) or "imagenet" (7x7/2 conv, BN-ReLU, 3x3/2 max pool);
    seed: the weights' and the dropout masks' random generator (``self.rng``);
    preactivation: True, BN-ReLU-Conv units and a final BN-ReLU (the paper's); False, Conv-BN-ReLU units,
    the CIFAR stem's conv followed by BN-ReLU too, and no final BN-ReLU (every feature map is already one);
    layers: the class that makes the layers, called as ``layers(dtype, rng, preactivation=...)``:
    ``LayerFactory`` (the default), or a variant of it whose layers take the same (N, C, H, W) arrays.
    x: (N, 3, H, W) -> logits (N, num_classes).
    """
    layer_factory = LayerFactory        # the default of ``layers``; efficient_densenet.EfficientDenseNet has its own

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 compression=0.5, drop_rate=0.0, num_classes=1000, stem="imagenet", dtype=np.float32, seed=0,
                 layers=None, preactivation=True):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        # One generator for the initial weights and, afterwards, every dropout mask.
        self.rng = np.random.default_rng(seed)
        make = (layers or self.layer_factory)(dtype, self.rng, preactivation=preactivation)
        if make.channel_axis != self.layer_factory.channel_axis:
            raise ValueError(f"{type(self).__name__} runs layers whose channels are axis "
                             f"{self.layer_factory.channel_axis}, but {type(make).__name__}'s are axis "
                             f"{make.channel_axis}: the fast tier's channel-major layers belong in an "
                             "EfficientDenseNet (densenet_cifar(..., memory_efficient=True))")
        modules = OrderedDict()
        if stem == "cifar":
            modules["conv0"] = make.conv(3, num_init_features, 3, padding=1)
            if not preactivation:
                modules.update(make.norm_relu(num_init_features, suffix=0))
        else:
            modules["conv0"] = make.conv(3, num_init_features, 7, stride=2, padding=3)
            modules.update(make.norm_relu(num_init_features, suffix=0))
            modules["pool0"] = MaxPool2d(3, stride=2, padding=1)
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            modules[f"denseblock{i}"] = make.dense_block(num_layers, channels, growth_rate, bn_size, drop_rate)
            channels += num_layers * growth_rate
            if i < len(block_config):
                out_channels = int(math.floor(compression * channels))
                modules[f"transition{i}"] = Transition(channels, out_channels, drop_rate, make)
                channels = out_channels
        if preactivation:
            modules.update(make.norm_relu(channels, suffix=5))
        self.features = Sequential(modules)
        self.pool = GlobalAvgPool2d()
        self.classifier = Linear(channels, num_classes, dtype=dtype, rng=self.rng)
        self.num_features = channels
        self._initialise(self.rng, dtype)

    def _initialise(self, rng, dtype):
        # torchvision's DenseNet initialisation: He-normal convs, BN weight 1 and bias 0, linear bias 0.
        for _, module in self.named_modules():
            if isinstance(module, Conv2d):
                module.weight.data[...] = kaiming_normal(rng, module.weight.shape, dtype)
            elif isinstance(module, Linear):
                module.bias.data[...] = 0

    def load_state_dict(self, state, strict=True):
        """Module.load_state_dict, accepting torchvision's published checkpoints as torchvision loads them:
        old layer keys renamed (``modern_torchvision_names``) and, since those checkpoints also predate
        ``num_batches_tracked``, each batch norm keeping its own count (PyTorch's BatchNorm does the same).
        """
        state, legacy = modern_torchvision_names(state)
        if legacy:
            for key, buffer in self.named_buffers():
                if key.endswith(".num_batches_tracked"):
                    state.setdefault(key, buffer)
        return super().load_state_dict(state, strict)

    def forward(self, x):
        """x: (N, 3, H, W) -> logits: (N, num_classes)."""
        return self.classifier(self.pool(self.features(x)))

    def backward(self, dlogits):
        """dlogits: (N, num_classes) -> dx: (N, 3, H, W); every parameter's .grad accumulates."""
        return self.features.backward(self.pool.backward(self.classifier.backward(dlogits)))
