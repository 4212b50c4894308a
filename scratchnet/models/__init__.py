"""Models built from scratchnet.nn: DenseNet and DenseNet-BC for CIFAR and ImageNet."""
from .densenet import (DenseBlock, DenseLayer, DenseNet, LayerFactory, Transition, densenet121, densenet169,
                       densenet201, densenet264, densenet_cifar, valid_cifar_depths)

__all__ = ["DenseNet", "DenseBlock", "DenseLayer", "Transition", "LayerFactory", "densenet_cifar", "valid_cifar_depths",
           "densenet121", "densenet169", "densenet201", "densenet264"]
