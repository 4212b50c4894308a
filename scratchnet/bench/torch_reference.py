"""A PyTorch DenseNet: the independent reference of the tests and the opponent of the benchmark.

Needs PyTorch, which scratchnet itself never imports: only the tests and
``python -m scratchnet.bench`` use this module. It follows torchvision's
``models/densenet.py`` (module names, forward, the ImageNet stem, initialisation)
and adds the paper's CIFAR stem and the no-bottleneck layer, so that its state
dict has exactly torchvision's keys. (torchvision itself is not a dependency: its
PyPI builds are tied to other torch releases.)
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


def unit(conv, suffix, preactivation):
    """A conv with its BN and ReLU, torchvision's names: normX, reluX, convX, or convX, normX, reluX."""
    norm = ("norm" + suffix, nn.BatchNorm2d(conv.in_channels if preactivation else conv.out_channels))
    relu = ("relu" + suffix, nn.ReLU())
    return [norm, relu, ("conv" + suffix, conv)] if preactivation else [("conv" + suffix, conv), norm, relu]


class TorchDenseLayer(nn.Sequential):
    def __init__(self, num_input_features, growth_rate, bn_size, preactivation=True):
        if bn_size:
            convs = [nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False),
                     nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)]
        else:
            convs = [nn.Conv2d(num_input_features, growth_rate, 3, padding=1, bias=False)]
        super().__init__(OrderedDict(part for i, conv in enumerate(convs, start=1)
                                     for part in unit(conv, str(i), preactivation)))

    def forward(self, features):
        return super().forward(torch.cat(features, 1))


class TorchDenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, num_input_features, growth_rate, bn_size, preactivation=True):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", TorchDenseLayer(num_input_features + i * growth_rate, growth_rate,
                                                                  bn_size, preactivation))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class TorchTransition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features, preactivation=True):
        conv = nn.Conv2d(num_input_features, num_output_features, 1, bias=False)
        super().__init__(OrderedDict(unit(conv, "", preactivation) + [("pool", nn.AvgPool2d(2, 2))]))


class TorchDenseNet(nn.Module):
    """preactivation=False: Conv-BN-ReLU units, BN-ReLU after the CIFAR stem's conv, no final BN-ReLU."""

    def __init__(self, growth_rate, block_config, num_init_features, bn_size, compression, num_classes, stem,
                 preactivation=True):
        super().__init__()
        if stem == "cifar":
            layers = [("conv0", nn.Conv2d(3, num_init_features, 3, padding=1, bias=False))]
            if not preactivation:
                layers += [("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU())]
        else:
            layers = [("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False)),
                      ("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU()),
                      ("pool0", nn.MaxPool2d(3, 2, 1))]
        self.features = nn.Sequential(OrderedDict(layers))
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{i}", TorchDenseBlock(num_layers, channels, growth_rate, bn_size,
                                                                       preactivation))
            channels += num_layers * growth_rate
            if i < len(block_config):
                out_channels = int(math.floor(compression * channels))
                self.features.add_module(f"transition{i}", TorchTransition(channels, out_channels, preactivation))
                channels = out_channels
        if preactivation:
            self.features.add_module("norm5", nn.BatchNorm2d(channels))
            self.features.add_module("relu5", nn.ReLU())
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():   # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        out = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


def torch_densenet_cifar(depth, k, bc, num_classes=10, preactivation=True):
    n = (depth - 4) // (6 if bc else 3)
    return TorchDenseNet(k, (n, n, n), 2 * k if bc else 16, 4 if bc else None, 0.5 if bc else 1.0, num_classes,
                         "cifar", preactivation)


def torch_densenet121(num_classes=1000):
    return TorchDenseNet(32, (6, 12, 24, 16), 64, 4, 0.5, num_classes, "imagenet")
