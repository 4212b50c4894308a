"""The fast tier's one change of layout: PyTorch's (N, C, H, W) <-> channel-major (C, N, H, W)."""
from ..backend import get_array_module


def swapped_view(a):
    """(N, C, H, W) <-> (C, N, H, W): a view of the same memory, no copy."""
    return a.transpose(1, 0, 2, 3)


def swap_batch_and_channels(a):
    """(N, C, H, W) <-> (C, N, H, W), as a contiguous array (a copy)."""
    return get_array_module(a).ascontiguousarray(swapped_view(a))
