"""The memory-efficient DenseNet (Pleiss et al., 2017, "Memory-Efficient Implementation of DenseNets"),
from the fast tier: the textbook DenseNet's modules and state-dict names, different components.

``EfficientDenseNet`` is the textbook ``DenseNet`` with arrays turned channel-major at its edges;
its ``FastLayerFactory`` makes the layers of ``scratchnet.nn.fast_layers`` (channel-major arrays,
kn2row convolutions, batch norm fused with ReLU) and, instead of the textbook ``DenseBlock``,
a ``SharedBufferDenseBlock``:

- one feature buffer holds the block's output from the start; each layer reads the first C
  channels (a view: concatenation costs nothing) and writes its k new ones after them;
- all layers write their first BN-ReLU output into one shared scratch array and recompute it
  in backward, instead of each keeping its own;
- every layer normalises a feature map with the same batch statistics, so they are computed
  once, when the map is made;
- the gradients flow through one buffer, so concatenation's backward is a slice-add, and batch
  norm's per-channel ``x_coef * x + offset`` terms are summed over the layers and added once.

Memory then grows linearly with the number of layers instead of quadratically, and the
gradients are the textbook block's (tests/test_efficient.py).
"""
import contextlib
from dataclasses import dataclass

from .. import fast
from ..backend import get_array_module
from ..fast.layout import swap_batch_and_channels
from ..nn import (BatchNormReLU2d, ChannelMajorConv2d, ChannelMajorDropout, Module, ParallelAvgPool2d,
                  RunningStatistics)
from .densenet import DenseBlock, DenseNet, LayerFactory, dense_layer_modules


@dataclass
class FastLayerFactory(LayerFactory):
    """Makes the fast tier's layers, channel-major (C, N, H, W), under the textbook's names.

    conv_method: how convolutions become GEMMs ("auto", "im2col", "kn2row": ``fast.conv2d_forward``);
    shared_buffers: dense blocks share their buffers (``SharedBufferDenseBlock``), else the textbook
    ``DenseBlock`` runs on the fast layers.
    """
    conv_method: str = "auto"
    shared_buffers: bool = True
    channel_axis = 0

    def __post_init__(self):
        if not self.preactivation:
            raise ValueError("the memory-efficient DenseNet shares one normalised buffer among a block's layers, "
                             "which only the pre-activation order (BN-ReLU-Conv) allows: build a post-activation "
                             "DenseNet with memory_efficient=False")

    def conv(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        return ChannelMajorConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False,
                                  dtype=self.dtype, rng=self.rng, method=self.conv_method)

    def norm_relu(self, channels, suffix=""):
        """BN and ReLU fused into one module, named as torchvision names the BN: normX."""
        return {f"norm{suffix}": BatchNormReLU2d(channels, dtype=self.dtype)}

    def dropout(self, p):
        return ChannelMajorDropout(p, self.rng)

    def avgpool(self):
        return ParallelAvgPool2d(2, 2)

    def dense_block(self, num_layers, num_input_features, growth_rate, bn_size, drop_rate):
        block = SharedBufferDenseBlock if self.shared_buffers else DenseBlock
        return block(num_layers, num_input_features, growth_rate, bn_size, drop_rate, make=self)



class SharedBufferDenseLayer(Module):
    """A DenseLayer (the same modules and names, BN-ReLU fused) for the shared-buffer block.

    forward(x, scratch, stats): x, the block's first C channels (C, N, H, W), a view of its
    feature buffer; scratch: the block's shared array, shaped like x, which receives norm1's
    output (the layer's largest array); stats: x's batch (mean, var) in training -> (k, N, H, W).
    backward(dout) -> ``fast.BatchNormReLUGradParts`` of norm1: the gradient of x in parts.
    """

    def __init__(self, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, make=None):
        super().__init__()
        make = make or FastLayerFactory()
        for name, module in dense_layer_modules(num_input_features, growth_rate, bn_size, drop_rate, make).items():
            self.add_module(name, module)

    def _after_conv1(self):
        """drop1, norm2, conv2, drop2: what follows conv1, in order (as many as the layer has)."""
        return [module for name, module in self.named_children() if name not in ("norm1", "conv1")]

    def forward(self, x, scratch, stats=None):
        y = self.conv1(self.norm1(x, out=scratch, stats=stats))
        for module in self._after_conv1():
            y = module(y)
        return y

    def backward(self, dout, recompute=True):
        """recompute: refill the shared scratch with norm1's output before conv1's backward reads it (conv1
        keeps a view of the scratch, not a copy, and later layers overwrote it); the block's last layer was
        the last to write it and can skip that."""
        for module in reversed(self._after_conv1()):
            dout = module.backward(dout)
        if recompute:
            self.norm1.recompute()
        return self.norm1.backward_parts(self.conv1.backward(dout))


class SharedBufferDenseBlock(DenseBlock):
    """The DenseBlock of the memory-efficient DenseNet: same parameters, same output, linear memory.

    x: (C, N, H, W) -> (C + num_layers * k, N, H, W).
    """
    layer_class = SharedBufferDenseLayer

    def __init__(self, num_layers, num_input_features, growth_rate, bn_size=4, drop_rate=0.0, make=None):
        super().__init__(num_layers, num_input_features, growth_rate, bn_size, drop_rate, make or FastLayerFactory())
        self._features = None

    def forward(self, x):
        xp = get_array_module(x)
        C0, k = self.num_input_features, self.growth_rate
        layers = list(self.children())
        total = C0 + len(layers) * k
        features = xp.empty((total,) + x.shape[1:], dtype=x.dtype)
        scratch = xp.empty((total - k,) + x.shape[1:], dtype=x.dtype)
        mean, var = xp.empty(total, dtype=x.dtype), xp.empty(total, dtype=x.dtype)
        features[:C0] = x
        for l, layer in enumerate(layers):
            c = C0 + l * k                          # layer l reads channels [0, c) and writes [c, c + k)
            if self.training:                       # the statistics of the maps made last, once for all layers
                new = slice(c - k, c) if l else slice(0, C0)
                fast.batch_statistics(features[new], out=(mean[new], var[new]))
            stats = (mean[:c], var[:c]) if self.training else None
            features[c:c + k] = layer(features[:c], scratch[:c], stats)
        self._features = features
        return features

    def backward(self, dout):
        xp = get_array_module(dout)
        C0, k = self.num_input_features, self.growth_rate
        features, self._features = self._features, None
        if features is None:
            raise RuntimeError("SharedBufferDenseBlock.backward called without a forward pass before it")
        grad = dout.copy()                          # the shared gradient buffer
        # Batch norm's backward adds x_coef * x + offset to each input channel. Every layer reading a
        # feature map adds its own; their sums are added to the map's gradient once, just before the
        # layer that made the map needs it.
        x_coef, offset = xp.zeros(len(features), dtype=dout.dtype), xp.zeros(len(features), dtype=dout.dtype)
        layers = list(self.children())
        for l in reversed(range(len(layers))):
            start = C0 + l * k                      # layer l read channels [0, start) and made [start, start + k)
            made = slice(start, start + k)
            if l < len(layers) - 1:
                fast.add_per_row_affine(grad[made], features[made], x_coef[made], offset[made])
            parts = layers[l].backward(grad[made], recompute=l < len(layers) - 1)
            fast.add_rows(grad[:start], parts.partial_dx)   # concatenation's backward: a slice-add
            x_coef[:start] += parts.x_coef
            offset[:start] += parts.offset
        fast.add_per_row_affine(grad[:C0], features[:C0], x_coef[:C0], offset[:C0])
        return grad[:C0]


class EfficientDenseNet(DenseNet):
    """The DenseNet of ``densenet.py`` built from the fast tier: channel-major (C, N, H, W) inside,
    PyTorch's (N, C, H, W) at its edges, the same modules, state-dict names and results.

    ``layers`` (default ``FastLayerFactory``) may be any factory of channel-major layers, e.g.
    ``functools.partial(FastLayerFactory, shared_buffers=False)``. x: (N, 3, H, W) -> logits (N, num_classes).
    """
    layer_factory = FastLayerFactory

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Every batch norm's running statistics in flat arrays, updated at once after each training forward.
        self.running_statistics = RunningStatistics(
            module for _, module in self.named_modules() if isinstance(module, BatchNormReLU2d))

    def forward(self, x):
        with self.running_statistics.deferred() if self.training else contextlib.nullcontext():
            features = swap_batch_and_channels(self.features(swap_batch_and_channels(x)))   # (N, C, h, w)
        return self.classifier(self.pool(features))

    def backward(self, dlogits):
        # A transpose only moves numbers, so its backward moves the gradient back: the same transpose.
        dfeatures = self.pool.backward(self.classifier.backward(dlogits))
        return swap_batch_and_channels(self.features.backward(swap_batch_and_channels(dfeatures)))
