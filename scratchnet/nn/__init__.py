"""Modules in the PyTorch manner, built from the ops: ``model(x)``, ``model.backward(dout)``."""
from .layers import (AvgPool2d, BatchNorm2d, BatchNormReLU2d, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d, ReLU,
                     kaiming_normal)
from .module import Module, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential", "Conv2d", "BatchNorm2d", "BatchNormReLU2d", "ReLU", "Dropout", "AvgPool2d",
           "MaxPool2d", "GlobalAvgPool2d", "Linear", "kaiming_normal"]
