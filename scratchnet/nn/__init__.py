"""Modules in the PyTorch manner, built from the ops: ``model(x)``, ``model.backward(dout)``.

``layers`` wraps the textbook ops (``scratchnet.ops``, NCHW); ``fast_layers`` the fast tier's
(``scratchnet.fast``, channel-major), with the same parameters and state-dict names.
"""
from .fast_layers import BatchNormReLU2d, ChannelMajorConv2d, ChannelMajorDropout, ParallelAvgPool2d, RunningStatistics
from .layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d, ReLU,
                     kaiming_normal)
from .module import Module, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential", "Conv2d", "BatchNorm2d", "ReLU", "Dropout", "AvgPool2d", "MaxPool2d",
           "GlobalAvgPool2d", "Linear", "kaiming_normal", "ChannelMajorConv2d", "BatchNormReLU2d",
           "ParallelAvgPool2d", "ChannelMajorDropout", "RunningStatistics"]
