"""scratchnet: a from-scratch NumPy/CuPy deep-learning library for teaching, up to DenseNet-BC."""
import os

# OpenBLAS (NumPy's matrix-product library) keeps its idle threads spinning for about
# 0.1 s after every product, holding the CPU cores that scratchnet's element-wise threads
# (backend.parallel_slices) need next; a short spin lets them sleep instead. This only
# takes effect when scratchnet is imported before NumPy, as in `python -m scratchnet.train`.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
