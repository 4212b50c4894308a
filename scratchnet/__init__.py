"""scratchnet: a from-scratch NumPy/CuPy deep-learning library for teaching, up to DenseNet-BC."""
__version__ = "0.1.0"
