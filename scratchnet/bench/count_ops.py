"""Count the array operations and host synchronisations of one training step (``bench --count-ops``).

On a GPU every array operation is at least one kernel launch, a copy or a fill, and costs some
microseconds of the host's time however small its array is: a step of thousands of small operations is
bound by their number, not by its arithmetic. The count needs no GPU: the step runs on NumPy, on arrays of
a subclass (``CountedArray``) that tallies each operation as CuPy would launch it, with the function of
scratchnet it came from.

One operation:
- a ufunc call (``a * b``, ``xp.exp(a)``, ``xp.multiply(a, b, out=c)``), a reduction (``a.sum()``,
  ``a.max()``, ``a.mean()``), a ``matmul``;
- an array function that computes or copies (``concatenate``, ``einsum``, ``stack``, ``where``, ...);
- ``copy``, a converting ``astype``, ``fill``, an array made filled (``zeros``, ``ones``, ``full``,
  ``arange``), a gather (fancy indexing), an assignment that moves numbers (``a[s] = b``).
Not an operation: a view (slicing, ``reshape`` where it can be a view, ``transpose``, ...), ``empty``, and the assignment of a
view onto itself that ``a[s] += b`` ends with (the add wrote in place already).

A host synchronisation is a read of an array's value on the host, which on a GPU waits for every queued
kernel: ``float(a)``, ``int(a)``, ``bool(a)``, ``a.item()``, ``to_numpy(a)``. Copies of host arrays to the
device (the batch, crop offsets) are counted apart, as uploads.

The step counted is one iteration of the training loop itself (``trainer.train_steps``): from the end of
the first step's update to the end of the second's, so it holds everything a step does once — the batch's
preparation, forward, loss, backward, the finiteness check, the update, the running loss and accuracy. The
element-wise work runs on one thread, so that each operation is counted once (``parallel_slices`` would
call it once per thread).
"""
import contextlib
import sys
import time
from types import SimpleNamespace
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy

from .. import backend

_active = []                 # the Tally being counted into (at most one)


@dataclass
class Tally:
    """Operations, host synchronisations and uploads, each by (source function, name)."""
    ops: Counter = field(default_factory=Counter)
    syncs: Counter = field(default_factory=Counter)
    uploads: Counter = field(default_factory=Counter)

    @property
    def total(self):
        return sum(self.ops.values())

    def by_family(self, counter=None):
        """{family: count}: the source function's module, as ``FAMILIES`` names it."""
        families = Counter()
        for (source, _), count in (counter or self.ops).items():
            families[family_of(source)] += count
        return families

    def by_source(self, counter=None):
        sources = Counter()
        for (source, _), count in (counter or self.ops).items():
            sources[source] += count
        return sources


# Where the operations come from, by module (the longest prefix that matches names the family).
FAMILIES = {
    "scratchnet.fast.batchnorm_relu": "batch norm + ReLU",
    "scratchnet.ops.norm": "batch norm",
    "scratchnet.nn.fast_layers.BatchNormReLU2d": "batch norm + ReLU",
    "scratchnet.optim": "SGD",
    "scratchnet.fast.conv": "convolution",
    "scratchnet.ops.conv": "convolution",
    "scratchnet.fast.layout": "layout",
    "scratchnet.fast.pool": "pooling",
    "scratchnet.ops.pool": "pooling",
    "scratchnet.fast.dropout": "dropout",
    "scratchnet.ops.dropout": "dropout",
    "scratchnet.ops.linear": "linear",
    "scratchnet.ops.loss": "loss",
    "scratchnet.ops.concat": "concatenation",
    "scratchnet.ops.activation": "ReLU",
    "scratchnet.models": "dense-block bookkeeping",
    "scratchnet.data": "batch preparation",
    "scratchnet.trainer.prepare_batch": "batch preparation",
    "scratchnet.trainer": "training loop",
    "scratchnet.nn": "layers",
}
# Helpers whose operations belong to whoever called them.
_PASS_THROUGH = (__name__, "scratchnet.fast.threads", "scratchnet.backend", "scratchnet.ops._checks")


def family_of(source):
    matches = [prefix for prefix in FAMILIES if source == prefix or source.startswith(prefix + ".")]
    return FAMILIES[max(matches, key=len)] if matches else "other"


def _source():
    """The scratchnet function that issued the operation: "module.function" (closures: their function)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("scratchnet") and not module.startswith(_PASS_THROUGH):
            return f"{module}.{frame.f_code.co_qualname.split('.<locals>')[0]}"
        frame = frame.f_back
    return "outside scratchnet"


def _record(kind, name):
    if _active:
        getattr(_active[-1], kind)[(_source(), name)] += 1


@contextlib.contextmanager
def _uncounted():
    """Operations inside are part of one already counted (e.g. the divide inside a mean)."""
    saved = list(_active)
    _active.clear()
    try:
        yield
    finally:
        _active.extend(saved)


def _plain(a):
    return a.view(numpy.ndarray) if isinstance(a, CountedArray) else a


def _plain_tree(value):
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_tree(v) for v in value)
    if isinstance(value, dict):
        return {key: _plain_tree(v) for key, v in value.items()}
    return _plain(value)


def _wrap(value):
    """Results as CountedArrays; NumPy scalars as 0-d arrays, which is what CuPy returns (on the device)."""
    if isinstance(value, numpy.ndarray):
        return value.view(CountedArray)
    if isinstance(value, numpy.generic):
        return numpy.asarray(value).view(CountedArray)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _shares(result, source):
    results = result if isinstance(result, (list, tuple)) else [result]
    return all(isinstance(r, numpy.ndarray) and numpy.may_share_memory(r, source) for r in results)


# Array functions that never compute (metadata), and those that return views when they can.
_METADATA = {"shape", "ndim", "size", "result_type", "may_share_memory", "shares_memory", "can_cast",
             "iscomplexobj", "isrealobj", "min_scalar_type", "empty_like", "broadcast_shapes"}
_MAYBE_VIEWS = {"reshape", "ravel", "transpose", "swapaxes", "moveaxis", "squeeze", "expand_dims", "broadcast_to",
                "atleast_1d", "atleast_2d", "atleast_3d", "diagonal", "flip", "fliplr", "flipud", "real", "imag",
                "split", "array_split", "sliding_window_view", "as_strided"}


class CountedArray(numpy.ndarray):
    """A NumPy array that counts every operation on it (module docstring); results are CountedArrays too."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        with _uncounted():
            result = getattr(ufunc, method)(*_plain_tree(inputs), **kwargs)
        _record("ops", ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        plain_args = _plain_tree(args)
        with _uncounted():
            result = func(*plain_args, **_plain_tree(kwargs))
        name = func.__name__
        if name not in _METADATA and not (name in _MAYBE_VIEWS and _shares(result, plain_args[0])):
            _record("ops", name)
        return _wrap(result)

    def __getitem__(self, key):
        plain = self.view(numpy.ndarray)
        result = plain[_plain_tree(key)]
        if isinstance(result, numpy.ndarray) and result.size and not numpy.may_share_memory(result, plain):
            _record("ops", "gather")
        return _wrap(result)

    def __setitem__(self, key, value):
        plain, value = self.view(numpy.ndarray), _plain(value)
        key = _plain_tree(key)
        if isinstance(value, numpy.ndarray):
            target = plain[key]
            if (isinstance(target, numpy.ndarray) and target.shape == value.shape and target.strides == value.strides
                    and target.__array_interface__["data"][0] == value.__array_interface__["data"][0]):
                return                                   # a view assigned onto itself: nothing moves
        plain[key] = value
        if numpy.size(plain[key]):                       # CuPy launches nothing for an empty target
            _record("ops", "setitem")

    def _counted_method(name, counted=True):
        def method(self, *args, **kwargs):
            with _uncounted():
                result = getattr(numpy.ndarray, name)(self.view(numpy.ndarray), *_plain_tree(args),
                                                      **_plain_tree(kwargs))
            if counted:
                _record("ops", name)
            return _wrap(result)
        method.__name__ = name
        return method

    copy = _counted_method("copy")
    fill = _counted_method("fill")
    mean = _counted_method("mean")               # CuPy: one reduction kernel (NumPy: a sum and a divide)
    dot = _counted_method("dot")
    argmax = _counted_method("argmax")
    argmin = _counted_method("argmin")
    argsort = _counted_method("argsort")
    sort = _counted_method("sort")
    take = _counted_method("take")
    nonzero = _counted_method("nonzero")
    repeat = _counted_method("repeat")

    def _copies_unless_viewable(name):
        def method(self, *args, **kwargs):
            plain = self.view(numpy.ndarray)
            result = getattr(numpy.ndarray, name)(plain, *_plain_tree(args), **_plain_tree(kwargs))
            if not numpy.may_share_memory(result, plain):
                _record("ops", name)
            return _wrap(result)
        method.__name__ = name
        return method

    astype = _copies_unless_viewable("astype")       # to its own dtype, with copy=False: the array itself
    reshape = _copies_unless_viewable("reshape")     # a copy where the strides cannot express the new shape
    ravel = _copies_unless_viewable("ravel")

    def _host_read(name):
        def read(self, *args):
            _record("syncs", name)
            return getattr(self.view(numpy.ndarray), name)(*args)
        read.__name__ = name
        return read

    __float__ = _host_read("__float__")
    __int__ = _host_read("__int__")
    __bool__ = _host_read("__bool__")
    __index__ = _host_read("__index__")
    __format__ = _host_read("__format__")
    item = _host_read("item")
    tolist = _host_read("tolist")
    del _counted_method, _copies_unless_viewable, _host_read


class CountingNumpy:
    """What ``get_array_module`` returns for CountedArrays: NumPy, with its array-making functions counted.

    Code that holds the array module ``xp`` makes device arrays with ``xp.empty``, ``xp.zeros``, ...; host code
    calls ``numpy`` itself, which stays as it is, so host work is not counted as device work.
    """
    __name__ = "numpy"

    def __getattr__(self, name):
        return getattr(numpy, name)

    @staticmethod
    def _made(function, counted):
        def make(*args, **kwargs):
            result = getattr(numpy, function)(*args, **kwargs)
            if counted:
                _record("ops", function)
            return _wrap(result)
        return make

    def __init__(self):
        for name in ("empty", "empty_like"):
            setattr(self, name, self._made(name, counted=False))
        for name in ("zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange", "eye", "linspace"):
            setattr(self, name, self._made(name, counted=True))

    @staticmethod
    def _converted(function, a, *args, **kwargs):
        """``numpy.<function>(a, ...)``: a copy of a device array counts as an operation (none where the result
        is ``a`` itself), and a host array becomes a device array by an upload."""
        if isinstance(a, CountedArray):
            result = getattr(numpy, function)(a.view(numpy.ndarray), *args, **kwargs)
            if not numpy.may_share_memory(result, a):
                _record("ops", function)
        else:
            result = getattr(numpy, function)(a, *args, **kwargs)
            _record("uploads", function)
        return _wrap(result)

    def asarray(self, a, *args, **kwargs):
        return self._converted("asarray", a, *args, **kwargs)

    def ascontiguousarray(self, a, *args, **kwargs):
        return self._converted("ascontiguousarray", a, *args, **kwargs)

    def array(self, a, *args, **kwargs):
        _record("ops" if isinstance(a, CountedArray) else "uploads", "array")
        return _wrap(numpy.array(_plain(a), *args, **kwargs))


COUNTING_NUMPY = CountingNumpy()


def _counting_backend(original_get_array_module):
    def get_array_module(*arrays):
        module = original_get_array_module(*arrays)
        if module is numpy and any(isinstance(a, CountedArray) for a in arrays):
            return COUNTING_NUMPY
        return module

    def array_module_for(device=None):
        return COUNTING_NUMPY

    def to_device(a, device=None):
        if isinstance(a, CountedArray) or a is None:
            return a
        _record("uploads", "to_device")
        return _wrap(numpy.asarray(a))

    def to_numpy(a):
        if isinstance(a, CountedArray):
            _record("syncs", "to_numpy")
            return a.view(numpy.ndarray)
        return a

    return {"get_array_module": get_array_module, "array_module_for": array_module_for, "to_device": to_device,
            "to_numpy": to_numpy}


@contextlib.contextmanager
def counting_backend():
    """Inside: scratchnet's backend functions hand out and recognise CountedArrays, in every module that imported
    them by name. On the CPU only."""
    originals = {name: getattr(backend, name) for name in ("get_array_module", "array_module_for", "to_device",
                                                           "to_numpy")}
    replacements = _counting_backend(originals["get_array_module"])
    patched = []
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("scratchnet"):
            for name, original in originals.items():
                if getattr(module, name, None) is original:
                    setattr(module, name, replacements[name])
                    patched.append((module, name, original))
    try:
        with backend.using_cpu_threads(1):
            yield
    finally:
        for module, name, original in patched:
            setattr(module, name, original)


def count_model_arrays(model):
    """Turn the model's parameters and buffers into CountedArrays (views: the same memory)."""
    for param in model.parameters():
        param.data = param.data.view(CountedArray)
    for _, module in model.named_modules():
        for name, buffer in list(module._buffers.items()):
            setattr(module, name, buffer.view(CountedArray))


class _StepWindow:
    """Passed to train_steps as its monitor: counts from the end of step ``first`` to the end of the next."""

    def __init__(self, tally, first=0):
        self.tally, self.first = tally, first

    @contextlib.contextmanager
    def step(self, step):
        yield
        if step == self.first:
            _active.append(self.tally)
        elif step == self.first + 1:
            _active.remove(self.tally)


def count_training_step(config):
    """The Tally of one step of ``trainer.train_steps`` for ``config`` (a RunConfig; its data is replaced by a
    synthetic set of two batches, and its device by the CPU)."""
    from .. import trainer
    from ..data import synthetic_cifar

    config = replace(config, device="cpu", dataset="synthetic", epochs=1, watch=0)
    data = synthetic_cifar(num_train=2 * config.batch_size, num_test=1, seed=config.seed)
    tally = Tally()
    with counting_backend():
        model = trainer.build_model(config)
        count_model_arrays(model)
        optimizer = trainer.build_optimizer(model, config)
        data_rng = numpy.random.default_rng(config.seed)
        progress = trainer.Progress()
        progress.start_epoch(data_rng.permutation(len(data.train_labels)), config.lr_at(0, 2))
        trainer.train_steps(model, optimizer, data, config, progress, data_rng, SimpleNamespace(requested=None),
                            time.perf_counter(), monitor=_StepWindow(tally), progress_bar=False)
    if progress.step != 2:
        raise RuntimeError(f"the counted run took {progress.step} steps instead of 2")
    return tally


def format_tally(tally, title, top=25):
    """The counts as text: totals, by family, and the top source functions."""
    lines = [f"{title}: {tally.total:,} array operations, {sum(tally.syncs.values())} host synchronisations, "
             f"{sum(tally.uploads.values())} uploads to the device", "", "by family:"]
    width = max(len(name) for name in list(FAMILIES.values()) + ["other"])
    for family, count in tally.by_family().most_common():
        lines.append(f"  {family:<{width}} {count:6,}  {count / max(1, tally.total):6.1%}")
    lines += ["", f"by source function (top {top}):"]
    for source, count in tally.by_source().most_common(top):
        lines.append(f"  {count:6,}  {source}")
    for kind in ("syncs", "uploads"):
        counter = getattr(tally, kind)
        if counter:
            lines += ["", f"{'host synchronisations' if kind == 'syncs' else 'uploads'}:"]
            lines += [f"  {count:6,}  {name} in {source}" for (source, name), count in counter.most_common()]
    return "\n".join(lines)


def run_count_ops(args):
    """``bench --count-ops``: the count of each ``--mode``, for --depth, --k and --batch."""
    from ..trainer import RunConfig

    for mode in args.modes:
        config = RunConfig(depth=args.depth, k=args.k, batch_size=args.batch, memory_efficient=mode == "efficient")
        print(format_tally(count_training_step(config), f"{config.name}, {mode}, batch {config.batch_size}: "
                                                        "one step of the training loop"))
        print()


__all__ = ["CountedArray", "Tally", "count_training_step", "format_tally", "run_count_ops"]
