"""Loading untrusted pickles (the CIFAR batch files) as plain data only.

Loading a pickle can run code, and NumPy's own unpickling code trusts its input (a malformed
dtype state crashes it; forged dtype flags make it read bytes as pointers), so ``load_plain``
builds dicts, lists, numbers, bytes and arrays of plain numbers no larger than a CIFAR file
holds, from any pickle protocol, and none of NumPy's code sees a value not checked here first.
Anything else raises ``pickle.UnpicklingError``.
"""
import io
import math
import pickle
import pickletools
import re

import numpy as np

MAX_IMAGES = 50_000                          # the most in one official file (CIFAR-100's train)
MAX_ARRAY_BYTES = MAX_IMAGES * 3 * 32 * 32  # their pixels: 153.6 MB, the largest array a CIFAR file holds
MAX_FILE_BYTES = 2 * MAX_ARRAY_BYTES + (16 << 20)   # protocols 0-2 spell bytes as text: up to twice as long


def text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class _PickledDtype:
    """What a pickle's ``numpy.dtype(name, align, copy)`` builds here: its name and byte order, nothing more."""

    def __init__(self, name, align=False, copy=True):
        self.name, self.byteorder = text(name), "="

    def __setstate__(self, state):                  # (version, byte order, ...): the rest is for structured types
        self.byteorder = text(state[1])


def _plain_dtype(pickled):
    """The real dtype of a _PickledDtype, if it is plain numbers (bool, int, uint, float)."""
    if not isinstance(pickled, _PickledDtype):
        raise pickle.UnpicklingError(f"an array's dtype is a {type(pickled).__name__}")
    if not (re.fullmatch(r"[biuf]\d{1,2}", str(pickled.name)) and pickled.byteorder in ("<", ">", "=", "|")):
        raise pickle.UnpicklingError(f"refusing an array of dtype {pickled.name!r}: a CIFAR file holds plain numbers")
    return np.dtype(pickled.name).newbyteorder(pickled.byteorder)


def _checked_shape(shape, dtype):
    """shape as a tuple of ints, refused before NumPy allocates it if larger than any CIFAR file holds."""
    shape = tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise pickle.UnpicklingError(
            f"an array claims shape {shape} of {dtype}, {nbytes:,} bytes: more than a CIFAR file holds "
            f"(at most {MAX_IMAGES:,} images of 3x32x32 bytes, {MAX_ARRAY_BYTES:,} bytes)")
    return shape


class _CheckedArray(np.ndarray):
    """The ndarray the unpickler builds: dtype, shape and data are checked before NumPy sees them."""

    def __setstate__(self, state):
        *_, shape, dtype, is_fortran, data = state    # ([version,] shape, dtype, Fortran order, raw bytes)
        dtype = _plain_dtype(dtype)
        shape = _checked_shape(shape, dtype)
        if not isinstance(data, bytes):
            raise pickle.UnpicklingError(f"an array's data is a {type(data).__name__}, not bytes")
        super().__setstate__((1, shape, dtype, bool(is_fortran), data))


_numpy_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]      # numpy's own, wherever it lives
_numpy_frombuffer = np.zeros(0).__reduce_ex__(5)[0]


def _reconstruct(subtype, shape, typecode):
    # NumPy writes shape (0,) and type code "b" here and the real ones in the state; a crafted file may claim 10**9 rows
    if typecode not in (b"b", "b"):
        raise pickle.UnpicklingError(f"refusing an array of type code {typecode!r}")
    return _numpy_reconstruct(subtype, _checked_shape(shape, np.dtype(np.int8)), typecode)


def _frombuffer(buffer, dtype, *shape_and_order):
    # protocol 5's array: a view of bytes already read from the file (so no larger than it), in a checked dtype
    if not isinstance(buffer, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"an array's data is a {type(buffer).__name__}, not bytes")
    return _numpy_frombuffer(buffer, _plain_dtype(dtype), *shape_and_order)


def _latin1_bytes(text, encoding):
    # how protocols 0-2 spell bytes under Python 3: _codecs.encode(text, "latin1"), and only that call
    if type(text) is not str or encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds what a CIFAR file holds (dicts, lists, numbers, bytes, arrays of numbers) and nothing else.

    Each callable a pickle may name, and why it is needed; anything else is refused.
    """
    ALLOWED = {
        ("numpy", "ndarray"): _CheckedArray,            # the array class (every protocol)
        ("numpy", "dtype"): _PickledDtype,              # its element type
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,     # an array, NumPy 1.x (the official files)
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,    # the same, NumPy 2.x
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,          # an array at protocol 5, NumPy 1.x
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,         # the same, NumPy 2.x
        ("_codecs", "encode"): _latin1_bytes,           # bytes at protocols 0-2, written by Python 3
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")
        return self.ALLOWED[module, name]


def _check_opcodes(blob):
    """Refuse what would make CPython's unpickler allocate far more than the file holds, before it runs.

    It sizes its memo by the largest index a file names (16 GB for 10**9, from a 20-byte file) and
    reads a frame or a string at the length the file claims; pickletools reads from memory,
    only as far as the file goes, and raises for a string that runs past its end.
    """
    for count, (opcode, arg, position) in enumerate(pickletools.genops(blob)):
        if (opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count
                or opcode.name == "FRAME" and arg > len(blob) - position):
            raise pickle.UnpicklingError(f"its {opcode.name} at byte {position} claims {arg:,}, beyond the file")



def load_plain(blob):
    """The object a pickle's bytes hold, built from plain data only; arrays come back as np.ndarray."""
    if len(blob) > MAX_FILE_BYTES:
        raise pickle.UnpicklingError(f"it is {len(blob):,} bytes, more than any CIFAR file ({MAX_FILE_BYTES:,} at most)")
    _check_opcodes(blob)
    entries = _ArraysOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    return _plain(entries)


def _plain(value):
    if isinstance(value, _CheckedArray):
        return value.view(np.ndarray)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
