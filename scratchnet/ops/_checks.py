"""Input checks shared by the ops: each raises a ValueError that names the op and the shapes."""
from ..backend import get_array_module

FLOAT_DTYPES = ("float32", "float64")


def array_module(op, *arrays):
    """``get_array_module`` whose mixing error names the op."""
    try:
        return get_array_module(*arrays)
    except ValueError as e:
        raise ValueError(f"{op}: {e}") from None


def check_ndim(op, name, a, ndim, layout):
    """Require ``a.ndim == ndim``; ``layout`` such as "(N, C, H, W)" goes into the message."""
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {tuple(a.shape)}")


def check_float(op, **arrays):
    """Require float32 or float64 arrays, all of one dtype (None entries are skipped)."""
    named = {name: a for name, a in arrays.items() if a is not None}
    for name, a in named.items():
        if a.dtype.name not in FLOAT_DTYPES:
            raise ValueError(f"{op}: {name} has dtype {a.dtype}; use float32 or float64 (e.g. {name}.astype('float32'))")
    dtypes = {a.dtype.name for a in named.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} is {a.dtype}" for name, a in named.items())
        raise ValueError(f"{op}: inputs must share one dtype, but {listing}; cast them with .astype()")


def check_int(op, name, value, minimum):
    """Require a Python/NumPy integer ``value >= minimum`` (for stride, pad, kernel)."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < minimum:
        raise ValueError(f"{op}: {name} must be an integer >= {minimum}, got {value!r}")


def check_channels(op, x_name, x_channels, other_name, other_shape, expected):
    """Require the channel count of x to match what a parameter expects."""
    if x_channels != expected:
        raise ValueError(
            f"{op}: {x_name} has {x_channels} channels but {other_name} of shape {tuple(other_shape)} "
            f"expects {expected}"
        )


def output_size(op, size, kernel, stride, pad, axis_name):
    """Output length along one spatial axis: ``(size + 2*pad - kernel) // stride + 1``."""
    if kernel > size + 2 * pad:
        raise ValueError(
            f"{op}: kernel {kernel} is larger than the padded input {axis_name} "
            f"{size} + 2*{pad} = {size + 2 * pad}; use a smaller kernel or more padding"
        )
    return (size + 2 * pad - kernel) // stride + 1


def check_dout(op, dout, shape):
    """Require the upstream gradient to have the shape of the forward output."""
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{op}: dout must have the forward output's shape {tuple(shape)}, got {tuple(dout.shape)}")


LAYOUTS = ("NCHW", "CNHW")


def check_layout(op, layout):
    """Require one of the two layouts: PyTorch's (N, C, H, W) or channel-major (C, N, H, W)."""
    if layout not in LAYOUTS:
        raise ValueError(f"{op}: layout must be 'NCHW' or 'CNHW', got {layout!r}")
