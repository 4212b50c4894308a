"""Models built from scratchnet.nn: DenseNet and DenseNet-BC for CIFAR and ImageNet, and the CIFAR ResNets.

``densenet.py`` is the textbook DenseNet; ``efficient_densenet.py`` the memory-efficient one from
the fast tier (same modules and names); ``configs.py`` the named configurations; ``resnet.py`` the
CIFAR ResNets (original and pre-activation, basic and bottleneck blocks) and plain nets;
``pretrained.py`` the trained weights that ship in ``weights/`` (``densenet_cifar(40, 12, pretrained=True)``).
"""
from .configs import (densenet121, densenet161, densenet169, densenet201, densenet264, densenet_cifar, densenet_class,
                      valid_cifar_depths)
from .densenet import DenseBlock, DenseLayer, DenseNet, LayerFactory, Transition, dense_layer_modules
from .efficient_densenet import EfficientDenseNet, FastLayerFactory, SharedBufferDenseBlock, SharedBufferDenseLayer
from .pretrained import PRETRAINED, PretrainedError, pretrained_path
from .resnet import ResidualBlock, ResNet, resnet_cifar, valid_resnet_depths

__all__ = ["DenseNet", "DenseBlock", "DenseLayer", "Transition", "LayerFactory", "dense_layer_modules",
           "EfficientDenseNet", "FastLayerFactory", "SharedBufferDenseBlock", "SharedBufferDenseLayer",
           "densenet_class", "densenet_cifar", "valid_cifar_depths", "densenet121", "densenet161", "densenet169", "densenet201",
           "densenet264", "PRETRAINED", "PretrainedError", "pretrained_path", "ResNet", "ResidualBlock", "resnet_cifar", "valid_resnet_depths"]
