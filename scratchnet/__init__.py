"""scratchnet: a from-scratch NumPy/CuPy deep-learning library for teaching, up to DenseNet-BC.

Two tiers of ops: ``scratchnet.ops``, the textbook (what the lectures teach, one idea per
function), and ``scratchnet.fast``, the same computations made fast, each proven equal to its
textbook twin. ``scratchnet.nn`` builds layers from them, ``scratchnet.models`` networks.
"""
__version__ = "0.1.0"
