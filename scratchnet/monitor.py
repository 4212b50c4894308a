"""Watching a network train: what each layer's activations and gradients look like, and where a run's
numbers first stopped being finite.

- ``TrainingMonitor(model, every=N)``: every N steps, for each layer (by default every module without
  sub-modules), the mean, standard deviation and fraction of zeros of its output, the norm of the
  gradient it received, and for each of its parameters the norm, the gradient's norm and the
  update-to-weight ratio ``|w_after - w_before| / |w_before|`` of the step. As a table, as JSON lines
  (one line per layer and recorded step) and as a plot of gradient norm against depth.
- ``find_non_finite(model, x, labels)``: runs one training step's forward and backward with every
  module watched and names the first one, in the order they ran, whose output or gradient held NaN or
  infinity (``features.denseblock2.denselayer5.conv2``). ``python -m scratchnet.train`` calls it on the
  batch of a step that went wrong and prints the answer in its error line.

Both use the modules' hooks (``Module.register_forward_hook``, ``register_backward_hook``), which exist
only while watching: an unwatched step runs exactly the code it would run without this module.

    monitor = TrainingMonitor(model, every=50)
    for step, (x, y) in enumerate(batches):
        with monitor.step(step):                # records on steps 0, 50, 100, ...
            logits = model(x)
            loss, dlogits = ops.softmax_cross_entropy(logits, y)
            model.zero_grad()
            model.backward(dlogits)
            optimizer.step()
    print(monitor.table())
    monitor.plot("layer_stats.png")
"""
import contextlib
import json
import math
import warnings
from dataclasses import dataclass

import numpy as np

from . import ops
from .backend import get_array_module, to_numpy
from .checkpoint import non_finite_entries

STATISTICS = ("mean", "std", "zeros", "grad_norm")          # of a layer's output, and of the gradient it received


def _arrays(value):
    """The arrays in ``value``: an array, or a tuple (a NamedTuple of gradient parts) or list of them."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item)


def _all_finite(value):
    return all(bool(get_array_module(a).isfinite(a).all()) for a in _arrays(value) if a.dtype.kind == "f")


def _largest(value):
    """The largest |number| among the arrays in ``value`` (a float), or None if there are none."""
    found = [float(abs(a).max()) for a in _arrays(value) if a.dtype.kind == "f" and a.size]
    return max(found) if found else None


def _norm(a):
    """The Euclidean norm of all of ``a``, in float64 so that a float32 array's norm does not overflow."""
    xp = get_array_module(a)
    return xp.sqrt(xp.sum(xp.square(a.astype(xp.float64))))


def leaf_modules(model):
    """[(name, module)] for the modules that run ops themselves: those without sub-modules, in registration
    order."""
    return [(name, module) for name, module in model.named_modules() if not module._modules]


class TrainingMonitor:
    """Per-layer statistics of every ``every``-th training step (steps 0, every, 2 * every, ...).

    model: the network; modules: the (name, module) pairs to watch (default ``leaf_modules(model)``);
    path: if given, each recorded step's rows are appended to this JSON-lines file as soon as the step ends.
    ``records`` holds one dict per watched module and recorded step: step, index (its place in the
    forward order, 0 first), module (its state-dict name), type, mean, std, zeros (fraction of exact zeros),
    grad_norm (of the gradient its output received), and for each parameter p: p_norm, p_grad_norm,
    p_update_ratio (e.g. weight_update_ratio). A statistic a step did not produce is None.
    """

    def __init__(self, model, every=10, modules=None, path=None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of steps >= 1, got {every!r}")
        self.model, self.every, self.path = model, every, path
        self.modules = list(modules) if modules is not None else leaf_modules(model)
        self.records = []
        self._seen = None

    def records_step(self, step):
        """Whether step ``step`` (counted from 0) is one that is recorded."""
        return step % self.every == 0

    @contextlib.contextmanager
    def step(self, step):
        """Run one training step inside this block; on a recorded step, its statistics are kept (also when
        the block raises, e.g. because the step went non-finite: what it saw is then the most telling).
        Yields whether this step is recorded."""
        if not self.records_step(step):
            yield False
            return
        before = {id(p): p.data.copy() for _, module in self.modules for p in module._parameters.values()}
        self._seen = {}
        handles = []
        for _, module in self.modules:
            handles.append(module.register_forward_hook(self._forward))
            handles.append(module.register_backward_hook(self._backward))
        completed = False
        try:
            yield True
            completed = True
        finally:
            for handle in handles:
                handle.remove()
            self._finish(step, before, completed)

    def _forward(self, module, args, output):
        if not hasattr(output, "dtype"):
            return
        seen = self._seen.setdefault(id(module), {"index": len(self._seen)})
        seen["mean"], seen["std"] = output.mean(dtype=np.float64), output.std(dtype=np.float64)
        seen["zeros"] = (output == 0).mean()

    def _backward(self, module, grad_output, grad_input):
        if hasattr(grad_output, "dtype"):
            self._seen.setdefault(id(module), {"index": None})["grad_norm"] = _norm(grad_output)

    def _finish(self, step, before, completed):
        # Every statistic is still an array on the model's device: gather them, then read them all at once.
        keys, values = [], []
        for name, module in self.modules:
            seen = self._seen.get(id(module), {})
            measured = {statistic: seen.get(statistic) for statistic in STATISTICS}
            for pname, param in module._parameters.items():
                measured[f"{pname}_norm"] = _norm(param.data)
                measured[f"{pname}_before"] = _norm(before[id(param)])
                measured[f"{pname}_update"] = _norm(param.data - before[id(param)])
                measured[f"{pname}_grad_norm"] = None if param.grad is None else _norm(param.grad)
            for key, value in measured.items():
                if value is not None:
                    keys.append((name, key))
                    values.append(value)
        read = {}
        if values:
            xp = get_array_module(values[0])
            numbers = to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64) for v in values]))
            read = {key: float(number) for key, number in zip(keys, numbers)}
        rows = []
        for name, module in self.modules:
            seen = self._seen.get(id(module), {})
            row = {"step": step, "index": seen.get("index"), "module": name, "type": type(module).__name__}
            row.update({statistic: read.get((name, statistic)) for statistic in STATISTICS})
            for pname in module._parameters:
                before_norm, update = read[(name, f"{pname}_before")], read[(name, f"{pname}_update")]
                row[f"{pname}_norm"] = read[(name, f"{pname}_norm")]
                row[f"{pname}_grad_norm"] = read.get((name, f"{pname}_grad_norm"))
                # undefined for a weight that was all zeros (a batch-norm shift at the start), and for a step
                # that stopped before its update
                row[f"{pname}_update_ratio"] = update / before_norm if before_norm > 0 and completed else None
            rows.append(row)
        self._seen = None
        self.records.extend(rows)
        if self.path is not None:
            with open(self.path, "a") as f:           # one write per step: a crash tears at most the last line
                f.write("".join(json.dumps(row) + "\n" for row in rows))

    def steps(self):
        """The recorded steps, in order."""
        return sorted({row["step"] for row in self.records})

    def table(self, step=None):
        """The statistics of one recorded step (default the latest) as a text table."""
        return format_table(self.records, step)

    def plot(self, path=None, title=""):
        """Gradient norm and update-to-weight ratio against depth (``plot_layer_stats``); returns the figure."""
        return plot_layer_stats(self.records, path, title)


def _forward_order(row):
    """Sort key: rows in the order their modules ran forward, those that never ran last."""
    return (row["index"] is None, row["index"] or 0)


def weight_rows(records, step):
    """The rows of ``step`` for modules with a weight matrix or kernel (convolutions, linear layers),
    in forward order."""
    rows = [row for row in records if row["step"] == step and row.get("weight_grad_norm") is not None
            and row["type"].endswith(("Conv2d", "Linear"))]
    return sorted(rows, key=_forward_order)


def _number(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def format_table(records, step=None):
    """One recorded step's rows (default the latest) as a text table, in forward order."""
    if not records:
        return "(nothing recorded yet)"
    step = max(row["step"] for row in records) if step is None else step
    rows = sorted((row for row in records if row["step"] == step),
                  key=_forward_order)
    if not rows:
        raise ValueError(f"step {step} was not recorded (recorded: {sorted({row['step'] for row in records})})")
    header = ("#", "module", "type", "mean", "std", "zeros", "|grad out|", "|weight|", "|grad weight|",
              "update/weight")
    lines = []
    for row in rows:
        zeros = row.get("zeros")
        lines.append(("-" if row["index"] is None else str(row["index"]), row["module"], row["type"],
                      _number(row.get("mean")), _number(row.get("std")),
                      "-" if zeros is None else f"{zeros:.0%}", _number(row.get("grad_norm")),
                      _number(row.get("weight_norm")), _number(row.get("weight_grad_norm")),
                      _number(row.get("weight_update_ratio"))))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    text = [f"step {step}"]
    for cells in (header, *lines):
        text.append("  ".join(cell.ljust(width) if i < 3 else cell.rjust(width)
                              for i, (cell, width) in enumerate(zip(cells, widths))))
    return "\n".join(text)


def read_layer_stats(path):
    """The rows of a JSON-lines file the monitor wrote (a torn last line, from a crash, is dropped)."""
    rows = []
    lines = open(path).read().splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path}, line {number}, is not a JSON record: {line[:60]!r}") from None
            warnings.warn(f"{path}: its last line is incomplete (a run stopped while writing it); dropped")
    return rows


def plot_layer_stats(records, path=None, title=""):
    """Two panels against depth (the convolutions and linear layers, input to output): each weight's
    gradient norm, and the update-to-weight ratio of the step; one line per recorded step, darker later.
    Saves to ``path`` if given; returns the matplotlib figure."""
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = sorted({row["step"] for row in records})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.get_cmap("viridis")
    for i, step in enumerate(steps):
        rows = weight_rows(records, step)
        colour = colours(0.9 * (1 - i / max(1, len(steps) - 1)))
        for ax, key in zip(axes, ("weight_grad_norm", "weight_update_ratio")):
            values = [row[key] if row[key] is not None and row[key] > 0 else np.nan for row in rows]
            ax.plot(range(len(rows)), values, marker=".", color=colour,
                    label=f"step {step}" if len(steps) <= 8 or i in (0, len(steps) - 1) else None)
    for ax, label in zip(axes, ("gradient norm of the weight", "update / weight norm of the step")):
        ax.set_yscale("log")
        ax.set_xlabel("depth: convolutions and linear layers, input → output")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    if steps:
        axes[0].legend(fontsize="small")
    fig.suptitle(title or "per-layer statistics")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


# -- where did it stop being finite? ------------------------------------------------------------------------------
@dataclass
class NonFiniteReport:
    """Where one step's numbers first stopped being finite.

    phase: "input", "weights", "forward", "loss", "backward", or None (everything finite);
    module: the state-dict name of the module (None for the input, the loss, or a model-wide finding);
    description: a sentence for a person.
    """
    phase: object
    module: object
    description: str

    def __str__(self):
        return self.description


def plural(count, noun):
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _state_name(name):
    return name or "the model"


class _FirstNonFinite:
    """Hooks on every module that remember the first one whose output (forward) or gradients (backward)
    held NaN or infinity. Modules report after their sub-modules, so the first to report is the one
    that made the non-finite numbers."""

    def __init__(self, model):
        self.names = {id(module): name for name, module in model.named_modules()}
        self.modules = [module for _, module in model.named_modules()]
        self.report = None

    def __enter__(self):
        self.handles = [hook(self._forward if kind == "forward" else self._backward)
                        for module in self.modules
                        for kind, hook in (("forward", module.register_forward_hook),
                                           ("backward", module.register_backward_hook))]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def _describe(self, module):
        return f"{_state_name(self.names[id(module)])} ({type(module).__name__})"

    def _forward(self, module, args, output):
        if self.report is not None or _all_finite(output):
            return
        scale = []
        largest_input, largest_weight = _largest(args), _largest([p.data for p in module._parameters.values()])
        if largest_input is not None:
            scale.append(f"its largest input |x| was {largest_input:.3g}")
        if largest_weight is not None:
            scale.append(f"its largest parameter {largest_weight:.3g}")
        self.report = NonFiniteReport("forward", self.names[id(module)],
                                      f"first non-finite: {self._describe(module)}, its output in the forward "
                                      "pass" + (f"; {', '.join(scale)}" if scale else ""))

    def _backward(self, module, grad_output, grad_input):
        if self.report is not None:
            return
        broken = [f"the gradient of its {name}" for name, p in module._parameters.items()
                  if p.grad is not None and not _all_finite(p.grad)]
        if not _all_finite(grad_input):
            broken.insert(0, "the gradient it passes back (its input's)")
        if broken:
            received = _largest(grad_output)
            self.report = NonFiniteReport(
                "backward", self.names[id(module)],
                f"first non-finite: {self._describe(module)}, in the backward pass: {' and '.join(broken)}"
                + (f"; the largest gradient it received was {received:.3g}" if received is not None else ""))


def find_non_finite(model, x, labels):
    """Run one training step's forward, loss and backward on (x, labels) with every module watched, and
    report where non-finite numbers first appeared (a ``NonFiniteReport``). The weights are not updated;
    batch norm's running statistics and ``.grad`` are, and running statistics that were already non-finite
    are set to zero first (this is meant for a step of a run that has already failed).

    x: (N, 3, H, W), labels: (N,) integers, on the model's device.
    """
    if not _all_finite(x):
        return NonFiniteReport("input", None, "first non-finite: the input batch itself")
    broken = non_finite_entries({name: param.data for name, param in model.named_parameters()})
    if broken:
        more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
        return NonFiniteReport("weights", broken[0].rsplit(".", 1)[0],
                               f"first non-finite: the weights, already before the step ({broken[0]}{more})")
    # Batch norm's statistics can overflow while its output stays finite (an infinite variance scales the
    # batch to zero), to show only in the backward pass (zero times infinity). The running statistics tell:
    # those already non-finite are zeroed first (a training step does not read them), so that a non-finite
    # one after the forward pass is this batch's.
    for _, module in model.named_modules():
        for buffer in module._buffers.values():
            if buffer.dtype.kind == "f" and not _all_finite(buffer):
                buffer[...] = 0
    with _FirstNonFinite(model) as tracer:
        logits = model(x)
    overflowed = [(name, module) for name, module in model.named_modules()
                  if any(b.dtype.kind == "f" and not _all_finite(b) for b in module._buffers.values())]
    note = ""
    if overflowed:
        name, module = overflowed[0]
        more = f", and those of {plural(len(overflowed) - 1, 'module')} after it" if len(overflowed) > 1 else ""
        note = (f" (in the forward pass, the batch statistics of {_state_name(name)} ({type(module).__name__}) "
                f"had overflowed{more})")
    if tracer.report is not None:
        return _noted(tracer.report, note)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    if not _all_finite((loss, dlogits)):
        return _noted(NonFiniteReport("loss", None, "first non-finite: the loss or its gradient, from finite "
                                                    f"logits (largest {_largest(logits):.3g})"), note)
    model.zero_grad()
    with _FirstNonFinite(model) as tracer:
        model.backward(dlogits)
    if tracer.report is not None:
        return _noted(tracer.report, note)
    if overflowed:
        name, module = overflowed[0]
        return NonFiniteReport("forward", name, f"first non-finite: {_state_name(name)} ({type(module).__name__}), "
                                                "its batch statistics in the forward pass")
    return NonFiniteReport(None, None, "every number of the step was finite")


def _noted(report, note):
    report.description += note
    return report
