"""A PyTorch CIFAR ResNet: the independent reference of ``scratchnet.models.resnet_cifar`` in the tests.

Needs PyTorch, which scratchnet itself never imports. Written in torchvision's ResNet manner (module names,
``kaiming_normal_(mode="fan_out")`` convs, BN weight 1 and bias 0, the linear layer left at PyTorch's
default) with the CIFAR stem and stages of He et al., the pre-activation blocks of "Identity Mappings"
(a projection reads the block's pre-activated input, as in the authors' code) and the plain net
(``shortcut=False``), so that its state dict has exactly the keys of scratchnet's ResNet.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class TorchResidualBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, bottleneck, preactivation, shortcut):
        super().__init__()
        out_planes = planes * (4 if bottleneck else 1)
        if bottleneck:
            shapes = [(in_planes, planes, 1, 1), (planes, planes, 3, stride), (planes, out_planes, 1, 1)]
        else:
            shapes = [(in_planes, planes, 3, stride), (planes, out_planes, 3, 1)]
        for i, (c_in, c_out, kernel, s) in enumerate(shapes, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, kernel, s, kernel // 2, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c_in if preactivation else c_out))
        self.depth = len(shapes)
        self.preactivation, self.shortcut = preactivation, shortcut
        self.downsample = None
        if shortcut and (stride != 1 or in_planes != out_planes):
            layers = [nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)]
            if not preactivation:
                layers.append(nn.BatchNorm2d(out_planes))
            self.downsample = nn.Sequential(*layers)

    def forward(self, x):
        convs = [getattr(self, f"conv{i}") for i in range(1, self.depth + 1)]
        norms = [getattr(self, f"bn{i}") for i in range(1, self.depth + 1)]
        if self.preactivation:
            pre = F.relu(norms[0](x))
            identity = x if self.downsample is None else self.downsample(pre)
            out = convs[0](pre)
            for conv, norm in zip(convs[1:], norms[1:]):
                out = conv(F.relu(norm(out)))
            return out + identity if self.shortcut else out
        out = x
        for i, (conv, norm) in enumerate(zip(convs, norms)):
            out = norm(conv(out))
            if i < self.depth - 1:
                out = F.relu(out)
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out)


class TorchResNet(nn.Module):
    def __init__(self, depth, preactivation=True, bottleneck=False, shortcut=True, num_classes=10):
        super().__init__()
        n = (depth - 2) // (9 if bottleneck else 6)
        self.preactivation = preactivation
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        if not preactivation:
            self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range(n):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(TorchResidualBlock(in_planes, planes, stride, bottleneck, preactivation, shortcut))
                in_planes = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        if preactivation:
            self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():   # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        out = self.conv1(x)
        if not self.preactivation:
            out = F.relu(self.bn1(out))
        out = self.layer3(self.layer2(self.layer1(out)))
        if self.preactivation:
            out = F.relu(self.bn(out))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))
