"""Datasets and preprocessing: CIFAR-10/100 download, verification and loading; normalisation and augmentation."""
from .cifar import SPECS, Cifar, DataError, load_cifar, read_folder, synthetic_cifar
from .transforms import black_fill, normalize, random_crop_flip

__all__ = ["load_cifar", "read_folder", "synthetic_cifar", "Cifar", "DataError", "SPECS", "normalize",
           "random_crop_flip", "black_fill"]
