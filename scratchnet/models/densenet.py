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
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..backend import get_array_module, parallel_slices
from ..nn import (AvgPool2d, BatchNorm2d, BatchNormReLU2d, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d,
                  Module, ReLU, Sequential, kaiming_normal)


@dataclass
class LayerFactory:
    """Makes the layers of one model with its dtype, random generator, layout and memory mode.

    layout "CNHW" (channel-major) is the fast internal layout: concatenating channels
    joins contiguous blocks and a 1x1 convolution is one plain matrix product. The
    model's input and output stay PyTorch's either way.
    """
    dtype: type = np.float32
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))   # seeded: reproducible
    layout: str = "CNHW"
    memory_efficient: bool = False

    @property
    def channel_axis(self):
        return 0 if self.layout == "CNHW" else 1

    def conv(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        return Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=self.dtype,
                      rng=self.rng, layout=self.layout)

    def norm(self, channels):
        return BatchNorm2d(channels, dtype=self.dtype, layout=self.layout)

    def norm_relu(self, channels, suffix=""):
        """BN then ReLU, named as torchvision names them: normX and reluX, or one fused normX."""
        if self.memory_efficient:
            return {f"norm{suffix}": BatchNormReLU2d(channels, dtype=self.dtype)}
        return {f"norm{suffix}": self.norm(channels), f"relu{suffix}": ReLU()}

    def dropout(self, p):
        return Dropout(p, self.rng)


class DenseLayer(Sequential):
    """Concatenate the earlier features, then BN-ReLU-Conv(1x1, bn_size*k)-BN-ReLU-Conv(3x3, k).

    Without a bottleneck (bn_size None) just BN-ReLU-Conv(3x3, k), named norm1/relu1/conv1.
    Dropout, when drop_rate > 0, follows each conv.
    forward(features: list of (C_i, N, H, W)) -> (k, N, H, W) in the default channel-major layout
    (with an NCHW LayerFactory: list of (N, C_i, H, W) -> (N, k, H, W));
    backward(dout) -> list of gradients, one per feature.
    The memory-efficient block calls ``forward_shared`` / ``backward_shared`` instead.
    """

    def __init__(self, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, make=None):
        make = make or LayerFactory()
        if bn_size:
            convs = [make.conv(num_input_features, bn_size * growth_rate, 1),
                     make.conv(bn_size * growth_rate, growth_rate, 3, padding=1)]
        else:
            convs = [make.conv(num_input_features, growth_rate, 3, padding=1)]
        layers = OrderedDict()
        for i, conv in enumerate(convs, start=1):
            layers.update(make.norm_relu(conv.in_channels, suffix=i))
            layers[f"conv{i}"] = conv
            if drop_rate > 0:
                layers[f"drop{i}"] = make.dropout(drop_rate)
        super().__init__(layers)
        self.channel_axis = make.channel_axis
        self._concat_cache = None

    def forward(self, features):
        x, self._concat_cache = ops.concat_forward(features, axis=self.channel_axis)
        return super().forward(x)

    def backward(self, dout):
        return ops.concat_backward(super().backward(dout), self._concat_cache)

    def forward_shared(self, x, scratch, stats=None):
        """x: the block's first C channels, a view of its feature buffer; scratch: shared, like x;
        stats: x's batch (mean, var) in training, computed once per feature map by the block.

        norm1's output (the largest array of the layer) goes into the scratch that
        every layer of the block shares, instead of a fresh array of its own.
        """
        modules = list(self)
        y = modules[0](x, out=scratch, stats=stats)
        for module in modules[1:]:
            y = module(y)
        return y

    def backward_shared(self, dout, recompute=True):
        """-> (part, b, c): the gradient of the layer's input x is part + b * x + c per channel
        (the block adds the b * x + c of all its layers at once).

        Refills the shared scratch with norm1's output before conv1's backward reads
        it (later layers overwrote it); the block's last layer can skip that.
        """
        modules = list(self)
        for module in reversed(modules[2:]):        # everything after norm1 and conv1
            dout = module.backward(dout)
        if recompute:
            modules[0].recompute()
        return modules[0].backward(modules[1].backward(dout), split=True)


class DenseBlock(Module):
    """num_layers DenseLayers; the output concatenates the input and every layer's k new maps.

    x: (C, N, H, W) -> (C + num_layers * k, N, H, W) in the default channel-major layout
    (``make=LayerFactory(layout="NCHW")``: (N, C, H, W) -> (N, C + num_layers * k, H, W)).

    Memory-efficient mode (Pleiss et al., 2017, "Memory-Efficient Implementation of
    DenseNets"; channel-major layout): one feature buffer holds the block's output
    from the start; each layer reads the first C channels (a view: concatenation
    costs nothing) and writes its k new ones after them. All layers share one
    scratch array for their BN-ReLU output and recompute it in backward, and the
    gradients flow through one buffer, so concatenation's backward is a slice-add.
    Memory then grows linearly with the number of layers instead of quadratically.
    """

    def __init__(self, num_layers, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, make=None):
        super().__init__()
        make = make or LayerFactory()
        for i in range(num_layers):
            layer = DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate, make)
            self.add_module(f"denselayer{i + 1}", layer)
        self.channel_axis = make.channel_axis
        self.memory_efficient = make.memory_efficient
        if self.memory_efficient and make.layout != "CNHW":
            raise ValueError("the memory-efficient DenseNet needs the channel-major layout 'CNHW'")
        self.num_input_features, self.growth_rate = num_input_features, growth_rate
        self._concat_cache = self._features = None

    def forward(self, x):
        if self.memory_efficient:
            return self._forward_shared(x)
        features = [x]
        for layer in self.children():
            features.append(layer(features))
        out, self._concat_cache = ops.concat_forward(features, axis=self.channel_axis)
        return out

    def backward(self, dout):
        if self.memory_efficient:
            return self._backward_shared(dout)
        # grads[i] collects the gradient of feature i: its slice of dout, plus what
        # every later layer that read it sends back. Layer l's own output gradient
        # is complete once the layers after it are done, so we walk them backwards.
        grads = [g.copy() for g in ops.concat_backward(dout, self._concat_cache)]
        layers = list(self.children())
        for l in reversed(range(len(layers))):
            for i, grad in enumerate(layers[l].backward(grads[l + 1])):
                grads[i] += grad
        return grads[0]

    def _forward_shared(self, x):
        xp = get_array_module(x)
        C0, k = self.num_input_features, self.growth_rate
        layers = list(self.children())
        total = C0 + len(layers) * k
        features = xp.empty((total,) + x.shape[1:], dtype=x.dtype)
        scratch = xp.empty((total - k,) + x.shape[1:], dtype=x.dtype)
        # In training every layer normalises a feature map with the same batch statistics,
        # so they are computed once, when the map is made, and shared.
        mean, var = xp.empty(total, dtype=x.dtype), xp.empty(total, dtype=x.dtype)
        features[:C0] = x
        for l, layer in enumerate(layers):
            c = C0 + l * k                          # layer l reads channels [0, c) and writes [c, c + k)
            new = slice(c - k, c) if l else slice(0, C0)
            if self.training:
                mean[new], var[new] = ops.batch_statistics(features[new])
            stats = (mean[:c], var[:c]) if self.training else None
            features[c:c + k] = layer.forward_shared(features[:c], scratch[:c], stats)
        self._features = features
        return features

    def _backward_shared(self, dout):
        xp = get_array_module(dout)
        C0, k = self.num_input_features, self.growth_rate
        features = self._features
        grad = dout.copy()                          # the shared gradient buffer
        # Batch norm's backward adds b * x + c to each input channel (per-channel numbers b, c).
        # Every layer reading a feature map adds its own; we sum their b's and c's and add
        # them to the map's gradient once, just before the layer that made the map needs it.
        b, c = xp.zeros(len(features), dtype=dout.dtype), xp.zeros(len(features), dtype=dout.dtype)

        def settle(maps):                           # add the collected b * x + c to these maps' gradients
            def add(rows):
                grad[maps][rows] += features[maps][rows] * b[maps][rows, None, None, None]
                grad[maps][rows] += c[maps][rows, None, None, None]
            parallel_slices(add, maps.stop - maps.start, xp, features[maps].size)

        layers = list(self.children())
        for l in reversed(range(len(layers))):
            start = C0 + l * k                      # layer l read channels [0, start) and made [start, start + k)
            if l < len(layers) - 1:
                settle(slice(start, start + k))
            part, layer_b, layer_c = layers[l].backward_shared(grad[start:start + k],
                                                               recompute=l < len(layers) - 1)

            def accumulate(rows):                   # concatenation's backward: a slice-add, shared by the cores
                grad[rows] += part[rows]

            parallel_slices(accumulate, start, xp, part.size)
            b[:start] += layer_b
            c[:start] += layer_c
        settle(slice(0, C0))
        self._features = None
        return grad[:C0]


class Transition(Sequential):
    """BN-ReLU-Conv(1x1)-AvgPool(2x2) between dense blocks: (N, C, H, W) -> (N, C_out, H/2, W/2)."""

    def __init__(self, num_input_features, num_output_features, drop_rate=0.0, make=None):
        make = make or LayerFactory()
        layers = OrderedDict(make.norm_relu(num_input_features))
        layers["conv"] = make.conv(num_input_features, num_output_features, 1)
        if drop_rate > 0:
            layers["drop"] = make.dropout(drop_rate)
        layers["pool"] = AvgPool2d(2, 2)
        super().__init__(layers)


class DenseNet(Module):
    """A stem, dense blocks joined by transitions, then BN-ReLU-global average pool-linear.

    growth_rate: k; block_config: layers per block, e.g. (6, 12, 24, 16) for DenseNet-121;
    num_init_features: channels after the stem; bn_size: bottleneck width factor (None: no bottleneck);
    compression: theta, the fraction of channels a transition keeps; drop_rate: dropout after each conv
    but the stem; stem: "cifar" (3x3 conv) or "imagenet" (7x7/2 conv, BN-ReLU, 3x3/2 max pool);
    layout: the internal memory layout, "CNHW" (fast) or "NCHW" (PyTorch's);
    memory_efficient: shared buffers and recomputation in the dense blocks (see DenseBlock), CNHW only.
    x: (N, 3, H, W) -> logits (N, num_classes), whatever the internal layout.
    """

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 compression=0.5, drop_rate=0.0, num_classes=1000, stem="imagenet", dtype=np.float32, seed=0,
                 layout="CNHW", memory_efficient=False):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if layout not in ("CNHW", "NCHW"):
            raise ValueError(f"layout must be 'CNHW' or 'NCHW', got {layout!r}")
        # One generator for the initial weights and, afterwards, every dropout mask.
        self.rng = np.random.default_rng(seed)
        self.layout = layout
        if memory_efficient and layout != "CNHW":
            raise ValueError("the memory-efficient DenseNet needs the channel-major layout 'CNHW'")
        self.memory_efficient = memory_efficient
        make = LayerFactory(dtype, self.rng, layout, memory_efficient)
        layers = OrderedDict()
        if stem == "cifar":
            layers["conv0"] = make.conv(3, num_init_features, 3, padding=1)
        else:
            layers["conv0"] = make.conv(3, num_init_features, 7, stride=2, padding=3)
            layers.update(make.norm_relu(num_init_features, suffix=0))
            layers["pool0"] = MaxPool2d(3, stride=2, padding=1)
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            layers[f"denseblock{i}"] = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, make)
            channels += num_layers * growth_rate
            if i < len(block_config):
                out_channels = int(math.floor(compression * channels))
                layers[f"transition{i}"] = Transition(channels, out_channels, drop_rate, make)
                channels = out_channels
        layers.update(make.norm_relu(channels, suffix=5))
        self.features = Sequential(layers)
        self.pool = GlobalAvgPool2d(layout)
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

    def _swap_to_internal(self, a):
        # (N, C, H, W) <-> (C, N, H, W) at the model's edges when it computes channel-major.
        if self.layout == "NCHW":
            return a
        return get_array_module(a).ascontiguousarray(a.transpose(1, 0, 2, 3))

    def forward(self, x):
        """x: (N, 3, H, W) -> logits: (N, num_classes)."""
        return self.classifier(self.pool(self.features(self._swap_to_internal(x))))

    def backward(self, dlogits):
        """dlogits: (N, num_classes) -> dx: (N, 3, H, W); every parameter's .grad accumulates."""
        return self._swap_to_internal(self.features.backward(self.pool.backward(self.classifier.backward(dlogits))))


def valid_cifar_depths(bc, near, count=2):
    """The depths closest to ``near`` that densenet_cifar accepts (4 + 6n for BC, 4 + 3n for basic)."""
    step = 6 if bc else 3
    n = max(1, round((near - 4) / step))
    candidates = sorted({4 + step * max(1, n + offset) for offset in (-1, 0, 1)}, key=lambda d: (abs(d - near), d))
    return sorted(candidates[:count])


def densenet_cifar(depth=40, k=12, bc=True, theta=None, dropout=0.0, num_classes=10, dtype=np.float32, seed=0,
                   layout="CNHW", memory_efficient=False):
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
                    stem="cifar", dtype=dtype, seed=seed, layout=layout, memory_efficient=memory_efficient)


def densenet121(num_classes=1000, **options):
    """DenseNet-121 for ImageNet-sized inputs: k = 32, blocks of (6, 12, 24, 16) layers.

    options: DenseNet's dtype, seed, layout, memory_efficient, drop_rate.
    """
    return DenseNet(32, (6, 12, 24, 16), num_classes=num_classes, **options)


def densenet169(num_classes=1000, **options):
    """DenseNet-169: k = 32, blocks of (6, 12, 32, 32) layers; options as densenet121's."""
    return DenseNet(32, (6, 12, 32, 32), num_classes=num_classes, **options)


def densenet201(num_classes=1000, **options):
    """DenseNet-201: k = 32, blocks of (6, 12, 48, 32) layers; options as densenet121's."""
    return DenseNet(32, (6, 12, 48, 32), num_classes=num_classes, **options)


def densenet264(num_classes=1000, **options):
    """DenseNet-264: k = 32, blocks of (6, 12, 64, 48) layers; options as densenet121's."""
    return DenseNet(32, (6, 12, 64, 48), num_classes=num_classes, **options)
