"""ResNets for CIFAR (He et al., CVPR 2016, "Deep Residual Learning"; ECCV 2016, "Identity Mappings in
Deep Residual Networks"), and the plain nets they are compared with.

A residual block *adds* its input to what its layers compute, where a dense block concatenates:

    x_{l+1} = x_l + F(x_l)          (original form: ReLU(x_l + F(x_l)))

so the gradient reaches x_l unchanged along the identity path (``ops.add_backward``), however deep the net.
F is conv-BN-ReLU-conv-BN in the original form, BN-ReLU-conv-BN-ReLU-conv in the pre-activation form
(bottleneck blocks: three convs, 1x1 - 3x3 - 1x1). Where a block changes the shape, a 1x1 projection
replaces the identity; ``shortcut=False`` drops the path altogether: the plain net.

Module and state-dict names are torchvision's ResNet's (``layer2.0.conv1.weight``, ``layer2.0.downsample.0.weight``,
``fc.weight``), with ``bn`` for the pre-activation form's final norm. Built from ``scratchnet.nn``'s layers.
"""
from collections import OrderedDict

import numpy as np

from .. import ops
from ..nn import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, Module, ReLU, Sequential, kaiming_normal
from .depths import nearest_depths, units_per_stage

STAGE_WIDTHS = (16, 32, 64)     # the 3x3 convs' channels in the three stages (32x32, 16x16, 8x8 on CIFAR)
BOTTLENECK_EXPANSION = 4        # a bottleneck block's last 1x1 conv widens 4x


def kaiming_normal_fan_out(rng, shape, dtype):
    """torch.nn.init.kaiming_normal_(mode="fan_out"), torchvision's ResNet initialisation: N(0, 2 / fan_out),
    fan_out = shape[0] * kh * kw. (``kaiming_normal`` uses fan_in = shape[1] * kh * kw: we give it the
    transposed shape.)"""
    transposed = (shape[1], shape[0]) + tuple(shape[2:])
    return np.ascontiguousarray(kaiming_normal(rng, transposed, dtype).swapaxes(0, 1))


class ResidualBlock(Module):
    """One block: its layers F, and (``shortcut``) the identity or projection path added to them.

    in_channels -> width * expansion channels, stride on the 3x3 conv. Modules, in the order they run:
    original form (preactivation=False): conv1 bn1 relu1 conv2 bn2 [relu2 conv3 bn3], add, then the last reluK;
    pre-activation form: bn1 relu1 conv1 bn2 relu2 conv2 [bn3 relu3 conv3], add, nothing after.
    downsample: the projection where the shape changes, conv (original form: conv, BN); in the pre-activation
    form it reads BN-ReLU(x), relu1's output, as the authors' code does.
    x: (N, in_channels, H, W) -> (N, width * expansion, H / stride, W / stride).
    """

    def __init__(self, in_channels, width, stride, bottleneck, preactivation, shortcut, dtype, rng):
        super().__init__()
        out_channels = width * (BOTTLENECK_EXPANSION if bottleneck else 1)
        if bottleneck:
            convs = [(in_channels, width, 1, 1), (width, width, 3, stride), (width, out_channels, 1, 1)]
        else:
            convs = [(in_channels, width, 3, stride), (width, out_channels, 3, 1)]
        for i, (c_in, c_out, kernel, conv_stride) in enumerate(convs, start=1):
            conv = Conv2d(c_in, c_out, kernel, conv_stride, kernel // 2, bias=False, dtype=dtype, rng=rng)
            if preactivation:
                self.add_module(f"bn{i}", BatchNorm2d(c_in, dtype=dtype))
                self.add_module(f"relu{i}", ReLU())
                self.add_module(f"conv{i}", conv)
            else:
                self.add_module(f"conv{i}", conv)
                self.add_module(f"bn{i}", BatchNorm2d(c_out, dtype=dtype))
                self.add_module(f"relu{i}", ReLU())   # the last one runs after the addition
        self.preactivation, self.shortcut = preactivation, shortcut
        self.projection = shortcut and (stride != 1 or in_channels != out_channels)
        if self.projection:
            projection = OrderedDict([("0", Conv2d(in_channels, out_channels, 1, stride, bias=False, dtype=dtype,
                                                   rng=rng))])
            if not preactivation:
                projection["1"] = BatchNorm2d(out_channels, dtype=dtype)
            self.downsample = Sequential(projection)
        layers = [module for name, module in self.named_children() if name != "downsample"]
        # The modules that run before the paths part, on both; those of F after them; those after the addition.
        shared = 2 if preactivation and self.projection else 0
        self._before, self._residual = layers[:shared], layers[shared:len(layers) - (0 if preactivation else 1)]
        self._after = [] if preactivation else layers[-1:]
        self._add_cache = None

    def forward(self, x):
        for module in self._before:
            x = module(x)
        out = x
        for module in self._residual:
            out = module(out)
        if self.shortcut:
            out, self._add_cache = ops.add_forward(out, self.downsample(x) if self.projection else x)
        for module in self._after:
            out = module(out)
        return out

    def backward(self, dout):
        for module in reversed(self._after):
            dout = module.backward(dout)
        if self.shortcut:
            dout, dshortcut = ops.add_backward(dout, self._add_cache)
        for module in reversed(self._residual):
            dout = module.backward(dout)
        if self.shortcut:     # x fed both paths: its gradient is the sum of theirs
            dout = dout + (self.downsample.backward(dshortcut) if self.projection else dshortcut)
        for module in reversed(self._before):
            dout = module.backward(dout)
        return dout


def valid_resnet_depths(bottleneck, near, count=2):
    """The depths closest to ``near`` that resnet_cifar accepts (2 + 9n with bottlenecks, 2 + 6n without)."""
    return nearest_depths(2, 9 if bottleneck else 6, near, count)


class ResNet(Module):
    """The CIFAR ResNet: a 3x3 conv to 16 channels, three stages of blocks (the first of stages 2 and 3
    halving the image), global average pooling and a linear classifier.

    blocks_per_stage: n; bottleneck: 1x1-3x3-1x1 blocks, 4x wider outputs (64/128/256), else two 3x3 convs;
    preactivation: BN-ReLU-conv blocks and a final BN-ReLU (``bn``), else conv-BN-ReLU with ``bn1`` after
    the stem; shortcut: False for the plain net. seed: the weights' random generator (``self.rng``).
    x: (N, 3, H, W) -> logits (N, num_classes).
    """

    def __init__(self, blocks_per_stage, bottleneck=False, preactivation=True, shortcut=True, num_classes=10,
                 dtype=np.float32, seed=0):
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.conv1 = Conv2d(3, STAGE_WIDTHS[0], 3, padding=1, bias=False, dtype=dtype, rng=self.rng)
        stem = [self.conv1]
        if not preactivation:
            self.bn1, self.relu = BatchNorm2d(STAGE_WIDTHS[0], dtype=dtype), ReLU()
            stem += [self.bn1, self.relu]
        channels = STAGE_WIDTHS[0]
        for s, width in enumerate(STAGE_WIDTHS, start=1):
            blocks = []
            for i in range(blocks_per_stage):
                stride = 2 if s > 1 and i == 0 else 1
                blocks.append(ResidualBlock(channels, width, stride, bottleneck, preactivation, shortcut, dtype,
                                            self.rng))
                channels = width * (BOTTLENECK_EXPANSION if bottleneck else 1)
            self.add_module(f"layer{s}", Sequential(*blocks))
        head = []
        if preactivation:
            self.bn, self.relu = BatchNorm2d(channels, dtype=dtype), ReLU()
            head += [self.bn, self.relu]
        self.avgpool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes, dtype=dtype, rng=self.rng)
        self.num_features = channels
        self._layers = stem + [self.layer1, self.layer2, self.layer3] + head + [self.avgpool, self.fc]
        # torchvision's ResNet initialisation: He-normal (fan_out) convs, BN weight 1 and bias 0 (as built),
        # the linear layer PyTorch's default (as built).
        for _, module in self.named_modules():
            if isinstance(module, Conv2d):
                module.weight.data[...] = kaiming_normal_fan_out(self.rng, module.weight.shape, dtype)

    def forward(self, x):
        """x: (N, 3, H, W) -> logits: (N, num_classes)."""
        for module in self._layers:
            x = module(x)
        return x

    def backward(self, dlogits):
        """dlogits: (N, num_classes) -> dx: (N, 3, H, W); every parameter's .grad accumulates."""
        for module in reversed(self._layers):
            dlogits = module.backward(dlogits)
        return dlogits


def resnet_cifar(depth, preactivation=True, bottleneck=False, shortcut=True, num_classes=10, dtype=np.float32,
                 seed=0):
    """The papers' CIFAR ResNets by depth: (depth - 2) / 6 basic blocks per stage (ResNet-20, -56, -110),
    or (depth - 2) / 9 bottleneck blocks (pre-activation ResNet-164, -1001).

    preactivation: True, "Identity Mappings" (BN-ReLU-conv); False, the original conv-BN-ReLU ResNet.
    shortcut: False, the plain net of the same depth (no identity or projection path).
    """
    n = units_per_stage(depth, 2, 9 if bottleneck else 6, "a bottleneck ResNet" if bottleneck else
                        "a ResNet of basic blocks")
    return ResNet(n, bottleneck, preactivation, shortcut, num_classes, dtype, seed)
