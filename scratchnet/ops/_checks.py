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


def check_out(op, name, out, shape):
    """Require an array given to write a result into (``out=``) to be C-contiguous and of the result's shape;
    None (no array given) passes."""
    if out is not None and (tuple(out.shape) != tuple(shape) or not out.flags.c_contiguous):
        layout = "" if out.flags.c_contiguous else ", not contiguous"
        raise ValueError(f"{op}: {name} must be a contiguous array of shape {tuple(shape)}, "
                         f"got shape {tuple(out.shape)}{layout}")


def check_conv_arguments(op, x, w, b, stride, pad):
    """Check a convolution's inputs: x (N, C, H, W), w (F, C, kh, kw) matching x, b (F,) or None.

    -> the array module, out_h, out_w. Raises a ValueError naming the op and the shapes.
    """
    xp = array_module(op, x, w, b)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_ndim(op, "w", w, 4, "(F, C, kh, kw)")
    check_float(op, x=x, w=w, b=b)
    check_int(op, "stride", stride, 1)
    check_int(op, "pad", pad, 0)
    check_channels(op, "x", x.shape[1], "w", w.shape, w.shape[1])
    F, _, kh, kw = w.shape
    if b is not None and tuple(b.shape) != (F,):
        raise ValueError(f"{op}: b must have shape ({F},) to match w of shape {tuple(w.shape)}, got {tuple(b.shape)}")
    return (xp, output_size(op, x.shape[2], kh, stride, pad, "height"),
            output_size(op, x.shape[3], kw, stride, pad, "width"))


def check_batchnorm_arguments(op, x, channels, train, gamma, beta, running_mean, running_var):
    """Check batch norm's inputs for x with ``channels`` channels: every per-channel array (C,),
    one dtype, both running buffers or neither, more than one value per channel to train on,
    running statistics to evaluate with. -> the array module.
    """
    xp = array_module(op, x, gamma, beta, running_mean, running_var)
    check_float(op, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    per_channel = dict(gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    for name, v in per_channel.items():
        if v is not None and tuple(v.shape) != (channels,):
            raise ValueError(f"{op}: {name} must have shape ({channels},) for x of shape {tuple(x.shape)}, "
                             f"got {tuple(v.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    if train and x.size // channels < 2:
        raise ValueError(f"{op}: training needs more than one value per channel, got x of shape {tuple(x.shape)}")
    if not train and running_mean is None:
        raise ValueError(f"{op}: eval mode (train=False) needs running_mean and running_var")
    return xp
