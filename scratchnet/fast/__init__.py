"""The fast tier: the textbook ops of ``scratchnet.ops``, made fast, each proven equal to its twin.

Read ``scratchnet.ops`` first; come here when a lecture says "now make it fast". What is here,
and the textbook op it stands in for (tests/test_fast.py checks every pair in float64):

- ``conv2d_forward`` / ``conv2d_backward`` (``conv.py``): ``ops.conv2d_*`` on channel-major
  (C, N, H, W) arrays, by im2col or kn2row, whichever copies less;
- ``batchnorm_relu_forward`` / ``_backward`` / ``_backward_parts`` / ``_recompute`` and
  ``batch_statistics`` (``batchnorm_relu.py``): ``ops.batchnorm_*`` then ``ops.relu_*``, fused,
  on channel-major arrays, with an output buffer that can be shared and recomputed;
- ``avgpool_forward`` / ``avgpool_backward`` (``pool.py``): ``ops.avgpool_*`` on every core;
- ``dropout_forward`` / ``dropout_backward`` (``dropout.py``): ``ops.dropout_*`` on channel-major
  arrays, with the masks the textbook network draws;
- ``parallel_slices``, ``add_rows``, ``add_per_row_affine`` (``threads.py``): element-wise work
  split by rows over the CPU cores, bit for bit what one core computes;
- ``layout.py``: the change between (N, C, H, W) and (C, N, H, W), as a view or as a copy.

The layers built from these are in ``scratchnet.nn.fast_layers``, the memory-efficient DenseNet
in ``scratchnet.models.efficient_densenet``. GPU-specific bodies live here too, each beside the
NumPy body it replaces (``batchnorm_relu._row_dots``).
"""
from .batchnorm_relu import (BatchNormReLUCache, BatchNormReLUGradParts, batch_statistics, batchnorm_relu_backward,
                             batchnorm_relu_backward_parts, batchnorm_relu_forward, batchnorm_relu_recompute)
from .conv import FastConvCache, choose_method, conv2d_backward, conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .pool import avgpool_backward, avgpool_forward
from .threads import MIN_ELEMENTS_PER_THREAD, add_per_row_affine, add_rows, parallel_slices, shutdown_pool

__all__ = [
    "conv2d_forward", "conv2d_backward", "choose_method",
    "batchnorm_relu_forward", "batchnorm_relu_backward", "batchnorm_relu_backward_parts", "batchnorm_relu_recompute",
    "batch_statistics",
    "avgpool_forward", "avgpool_backward",
    "dropout_forward", "dropout_backward",
    "parallel_slices", "add_rows", "add_per_row_affine", "shutdown_pool",
]
