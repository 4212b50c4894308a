"""The training loop behind ``python -m scratchnet.train``: a run's settings, its progress, epochs of steps.

- ``RunConfig``: every setting of a run, with the paper's recipe as the defaults (saved as JSON);
- ``Progress``: where the run is (epoch, step, this epoch's order and running sums), which a
  checkpoint saves, so that a resumed run continues exactly;
- ``train(config, checkpoint)``: epochs of ``train_steps``, each followed by ``evaluate``, a
  metrics line, the curves and a checkpoint (and ``best.npz`` when the test accuracy is the best yet);
  with ``--swa-start``, stochastic weight averaging over the last epochs (``finish_swa``: ``swa.npz``).

Nothing broken is kept: a NaN or infinite training or test loss, or weights, batch-norm buffers
or momentum that stopped being finite, stop the run (``Diverged``) before anything is saved, so
every checkpoint on disk is one the run can continue from, with a lower ``--lr`` if need be.

The command line (parsing, checking, resuming) is ``train.py``.
"""
import contextlib
import importlib
import json
import math
import numbers
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import ops
from .backend import get_array_module, keep_freed_memory, to_device, to_numpy
from .checkpoint import (CheckpointError, atomic_write, atomic_write_text, non_finite_entries, restore_generator,
                         save_checkpoint)
from .data import black_fill, load_cifar, normalize, random_crop_flip, synthetic_cifar
from .models import densenet_cifar, resnet_cifar
from .monitor import TrainingMonitor, find_non_finite, plot_layer_stats, plural, read_layer_stats
from .optim import SCHEDULES, SGD, cosine_lr, first_cycles_in, restart_cycles, step_milestones
from .swa import WeightAverage, update_bn

# The settings that shape the learning-rate schedule; a resume that changes one says how the rate moves.
SCHEDULE_SETTINGS = ("lr", "epochs", "restarts", "swa_start", "swa_lr")

TRAIN_EXTRA_HINT = "pip install 'scratchnet[train]' (from a checkout: pip install -e \".[train]\")"


class MissingExtraError(RuntimeError):
    """A package that training needs (tqdm, matplotlib) is not installed."""


def _require(package, needed_for):
    """Import ``package``, or raise a MissingExtraError saying what training needs it for and what to install."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingExtraError(f"training {needed_for} with {package}, which is not installed ({e}): "
                                f"{TRAIN_EXTRA_HINT}") from None


def _tqdm():
    return _require("tqdm", "shows progress bars").tqdm


def _pyplot():
    _require("matplotlib", "plots its curves").use("Agg")
    import matplotlib.pyplot as plt
    return plt


def require_training_extras(plots=True):
    """Raise MissingExtraError now, before a run starts, if tqdm (or, for plots, matplotlib) is missing."""
    _tqdm()
    if plots:
        _pyplot()


class ConfigError(ValueError):
    """A setting that cannot give a meaningful run; the message names its flag."""


def flag(name):
    """The command-line flag of a RunConfig field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


@dataclass
class RunConfig:
    """Every setting of a training run. The defaults are the paper's recipe for DenseNet-BC (L=40, k=12) on C10+."""
    arch: str = "densenet"          # densenet, or resnet (resnet_cifar: depth 6n + 2, bottleneck 9n + 2)
    depth: int = 40                 # L: 4 + 6n for BC, 4 + 3n without
    k: int = 12                     # growth rate
    bc: bool = True                 # bottleneck and compression (DenseNet-BC)
    theta: float | None = None      # compression; None: 0.5 for BC, 1 without
    dropout: float = 0.0
    memory_efficient: bool = True   # the shared-buffer DenseNet of the fast tier, else the textbook one
    preactivation: bool = True      # BN-ReLU-Conv (the papers'), else Conv-BN-ReLU (textbook tier only)
    bottleneck: bool = False        # resnet: 1x1-3x3-1x1 blocks
    shortcut: bool = True           # resnet: False is the plain net
    dataset: str = "cifar10"        # cifar10, cifar100 or synthetic
    data_dir: str = "data"
    augment: bool = True            # C10+: random crops and flips
    pad_fill: str = "mean"          # what the crops pad with: "mean" colour (the paper's code) or "black" (torchvision)
    limit_train: int | None = None  # train on the first N images only
    limit_test: int | None = None
    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.1
    schedule: str = "step"          # a key of optim.SCHEDULES
    restarts: int = 0               # cosine: SGDR's warm restarts, each cycle twice as long as the one before
    swa_start: int | None = None    # SWA: the schedule ends after this epoch; then a constant rate, weights averaged
    swa_lr: float | None = None     # SWA's constant rate; None: half of lr (the SWA paper's 0.05 after 0.1)
    momentum: float = 0.9           # Nesterov momentum
    weight_decay: float = 1e-4
    device: str = "cpu"
    watch: int = 0                  # every N steps, each layer's statistics to layer_stats.jsonl (0: off)
    seed: int = 0                   # the weights, the batch order, augmentation and dropout
    out: str | None = None          # the run's folder; None: default_out()
    # Settings changed when the run was resumed, in order: {"setting", "was", "now", "from_epoch", "from_step"}
    # each, the epoch and step (counted from 1) where the new value took over.
    changes: list = field(default_factory=list)

    def __post_init__(self):
        self.check()

    def check(self):
        """Raise ConfigError, naming the flag, for any setting that cannot give a meaningful run."""
        def whole(name, low):
            value = getattr(self, name)
            whole_number = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if value is not None and not (whole_number and value >= low):
                raise ConfigError(f"{flag(name)} must be a whole number >= {low}, got {value!r}")

        def number(name, low, high, low_included=True, high_included=False):
            value = getattr(self, name)
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not (
                    (low <= value if low_included else low < value) and
                    (value <= high if high_included else value < high)):
                interval = f"{'[' if low_included else '('}{low}, {high}{']' if high_included else ')'}"
                raise ConfigError(f"{flag(name)} must lie in {interval}, got {value!r}")

        for name in ("depth", "k", "epochs", "batch_size", "limit_train", "limit_test"):
            whole(name, 1)
        whole("seed", 0)
        whole("watch", 0)
        whole("restarts", 0)
        whole("swa_start", 1)
        number("swa_lr", 0, math.inf, low_included=False)
        number("theta", 0, 1, low_included=False, high_included=True)
        number("dropout", 0, 1)            # 1 would drop every feature: the network outputs a constant
        number("lr", 0, math.inf, low_included=False)
        number("momentum", 0, 1)
        number("weight_decay", 0, math.inf)
        if not (isinstance(self.changes, list) and all(isinstance(c, dict) for c in self.changes)):
            raise ConfigError(f"changes must be a list of records of settings changed on resume, got {self.changes!r}")
        if self.memory_efficient and (self.arch == "resnet" or not self.preactivation):
            raise ConfigError("the memory-efficient network is a pre-activation DenseNet: --arch resnet and "
                              "--post-activation train the textbook tier (--no-memory-efficient)")
        for name, allowed in (("arch", ("densenet", "resnet")), ("dataset", ("cifar10", "cifar100", "synthetic")),
                              ("schedule", tuple(SCHEDULES)),
                              ("device", ("cpu", "gpu")), ("pad_fill", ("mean", "black"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

        if self.swa_lr is not None and self.swa_start is None:
            raise ConfigError(f"--swa-lr {self.swa_lr} is the rate of stochastic weight averaging: give --swa-start "
                              "too (the epoch after which it begins)")
        if self.swa_start is not None and self.swa_start >= self.epochs:
            raise ConfigError(f"--swa-start {self.swa_start} must be less than --epochs {self.epochs}: the weights of "
                              f"the epochs after it are averaged (e.g. --swa-start {self.epochs} --epochs "
                              f"{self.epochs + max(1, self.epochs // 4)} averages {max(1, self.epochs // 4)} more)")
        if self.restarts and self.schedule != "cosine":
            raise ConfigError(f"--restarts {self.restarts} restarts a cosine schedule: add --schedule cosine")
        cycles = first_cycles_in(self.restarts)      # the length of the whole schedule in first cycles
        length, which = ((self.swa_start, "--swa-start") if self.swa_start is not None else (self.epochs, "--epochs"))
        if self.restarts and length % cycles:
            fits = [length // cycles * cycles, (length // cycles + 1) * cycles]
            raise ConfigError(f"--restarts {self.restarts} makes {self.restarts + 1} cycles, each twice as long as "
                              f"the one before, so {which} must be a multiple of {cycles} for the restarts to fall "
                              f"between epochs; got {length} (try {' or '.join(str(e) for e in fits if e)})")

    @property
    def name(self):
        if self.arch == "resnet":
            order = "pre-activation " if self.preactivation else ""
            return (f"{order}{'ResNet' if self.shortcut else 'plain net'}-{self.depth}"
                    + (" (bottleneck)" if self.bottleneck else ""))
        order = "" if self.preactivation else ", post-activation"
        return ("DenseNet-BC" if self.bc else "DenseNet") + f" (L={self.depth}, k={self.k}{order})"

    def default_out(self):
        """runs/<architecture>-<dataset>, e.g. runs/densenet-bc-L40-k12-cifar10, runs/preact-resnet-56-cifar10."""
        if self.arch == "resnet":
            kind = (("preact-" if self.preactivation else "") + ("resnet" if self.shortcut else "plain")
                    + f"-{self.depth}" + ("-bottleneck" if self.bottleneck else ""))
        else:
            kind = ("densenet-bc" if self.bc else "densenet") + f"-L{self.depth}-k{self.k}"
            kind += "" if self.preactivation else "-post"
        return str(Path("runs") / f"{kind}-{self.dataset}")

    @property
    def schedule_epochs(self):
        """The epochs the schedule spans: all of them, or with SWA those up to --swa-start."""
        return self.epochs if self.swa_start is None else self.swa_start

    @property
    def swa_rate(self):
        """SWA's constant learning rate: --swa-lr, or half of --lr."""
        return self.lr / 2 if self.swa_lr is None else self.swa_lr

    def lr_at(self, step, steps_per_epoch):
        """The learning rate of step ``step`` (from 0) of the run, under its schedule, lr and epochs.

        With SWA the schedule runs its course over the first swa_start epochs, as if the run ended
        there, and every step after them takes swa_rate.
        """
        total = self.schedule_epochs * steps_per_epoch
        if step >= total and self.swa_start is not None:
            return self.swa_rate
        if self.schedule == "cosine":
            return cosine_lr(step, self.lr, total, self.restarts)
        return SCHEDULES[self.schedule](step, self.lr, total)

    def to_dict(self):
        """The settings and the model's name, as saved in config.json and in checkpoints."""
        return {**asdict(self), "name": self.name}

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, saved):
        """A config from its saved form (``to_dict``'s keys; settings it lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in saved.items() if key in known})


@dataclass
class Progress:
    """Where a run is: ``epoch`` epochs done, ``step`` steps of the next one done, over ``order``.

    loss_sum and correct sum the training loss (times the batch size) and the correct
    predictions of this epoch's steps so far; seconds is their training time; lr_first the
    learning rate of its first step. best_acc is the best test accuracy after any epoch so far
    (-1 before the first), kept in best.npz. train_size and test_size are the numbers of images
    the run uses (0: not recorded), so that a resume on other data is refused.
    """
    epoch: int = 0
    step: int = 0
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loss_sum: float = 0.0
    correct: int = 0
    seconds: float = 0.0
    lr_first: float = -1.0
    best_acc: float = -1.0
    train_size: int = 0
    test_size: int = 0

    def start_epoch(self, order, lr_first=-1.0):
        self.step, self.order, self.loss_sum, self.correct, self.seconds = 0, order, 0.0, 0, 0.0
        self.lr_first = lr_first

    def finish_epoch(self):
        self.epoch += 1
        self.start_epoch(np.zeros(0, np.int64))

    def to_arrays(self):
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays, source="the checkpoint"):
        """From a checkpoint's progress section (0-d arrays and one index array; the fields after
        ``seconds`` may be absent, in checkpoints of earlier versions)."""
        try:
            return cls(epoch=int(arrays["epoch"]), step=int(arrays["step"]),
                       order=np.asarray(arrays["order"], np.int64), loss_sum=float(arrays["loss_sum"]),
                       correct=int(arrays["correct"]), seconds=float(arrays["seconds"]),
                       lr_first=float(arrays.get("lr_first", -1.0)), best_acc=float(arrays.get("best_acc", -1.0)),
                       train_size=int(arrays.get("train_size", 0)), test_size=int(arrays.get("test_size", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source} lacks a readable position in training ({type(e).__name__}: {e}): "
                                  "it cannot be resumed, though --eval-only can still read its weights") from None


def build_model(config):
    num_classes = 100 if config.dataset == "cifar100" else 10
    if config.arch == "resnet":
        model = resnet_cifar(config.depth, preactivation=config.preactivation, bottleneck=config.bottleneck,
                             shortcut=config.shortcut, num_classes=num_classes, seed=config.seed)
    else:
        model = densenet_cifar(config.depth, config.k, bc=config.bc, theta=config.theta, dropout=config.dropout,
                               num_classes=num_classes, seed=config.seed, memory_efficient=config.memory_efficient,
                               preactivation=config.preactivation)
    return model.to(config.device)


def build_optimizer(model, config):
    """The paper's SGD: Nesterov momentum (when momentum > 0) and weight decay, at the config's first lr."""
    return SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
               weight_decay=config.weight_decay)


def load_weights(model, checkpoint, path):
    """Load a checkpoint's model section, or raise a CheckpointError naming the file when it does not fit."""
    try:
        model.load_state_dict(checkpoint["model"])
    except ValueError as e:
        raise CheckpointError(f"{path} does not hold the weights of the model its config describes ({e})") from None


def load_data(config):
    if config.dataset == "synthetic":
        data = synthetic_cifar(seed=config.seed)
    else:
        data = load_cifar(config.dataset, config.data_dir)
    for split, limit in (("train", config.limit_train), ("test", config.limit_test)):
        if limit is not None:
            setattr(data, f"{split}_images", getattr(data, f"{split}_images")[:limit])
            setattr(data, f"{split}_labels", getattr(data, f"{split}_labels")[:limit])
    return data


def prepare_batch(images, labels, data, device, augment_rng=None, pad_fill="mean"):
    """uint8 images on the host -> normalised (and, given a generator, augmented) floats on device.

    The crops pad after normalising: pad_fill "mean" pads with 0, the mean colour (the paper's
    fb.resnet.torch code); "black" with black, as torchvision, which pads the uint8 image.
    """
    x = normalize(to_device(images, device), data.mean, data.std)
    if augment_rng is not None:
        x = random_crop_flip(x, augment_rng, fill=black_fill(data.mean, data.std) if pad_fill == "black" else 0.0)
    return x, to_device(labels, device)


@dataclass
class Evaluation:
    """A model's results on a test set: mean loss, top-1 and top-5 accuracy, and top-1 per class.

    class_correct[c] of class_count[c] images of class c were classified right.
    """
    loss: float
    accuracy: float
    top5: float
    class_correct: np.ndarray
    class_count: np.ndarray


def evaluate(model, data, config, stop=None):
    """The model's Evaluation on data's test set, in eval mode. None if ``stop`` was set on the way."""
    model.eval()
    batch_size = 2 * config.batch_size      # no backward pass to keep memory for
    n, num_classes = len(data.test_labels), data.num_classes
    loss_sum, in_top5 = 0.0, 0
    predicted = np.zeros(n, np.int64)
    batches = range(0, n, batch_size)
    for start in _tqdm()(batches, desc="  test", leave=False, unit="batch", dynamic_ncols=True):
        labels = data.test_labels[start:start + batch_size]
        x, y = prepare_batch(data.test_images[start:start + batch_size], labels, data, config.device)
        logits = model(x)
        loss, _ = ops.softmax_cross_entropy(logits, y)
        loss_sum += float(loss) * len(y)
        ranked = to_numpy(get_array_module(logits).argsort(-logits, axis=1)[:, :5])   # best class first
        predicted[start:start + len(labels)] = ranked[:, 0]
        in_top5 += int((ranked == labels[:, None]).any(axis=1).sum())
        if stop is not None and stop.requested:
            model.train()
            return None
    model.train()
    right = predicted == data.test_labels
    return Evaluation(loss_sum / n, float(right.mean()), in_top5 / n,
                      np.bincount(data.test_labels[right], minlength=num_classes),
                      np.bincount(data.test_labels, minlength=num_classes))


def signal_name(signum):
    """How messages call a signal: Ctrl-C for SIGINT, else its name (SIGTERM)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, ``docker stop``, batch schedulers) sets ``requested``:
    training finishes its step, saves a checkpoint and exits. A second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None           # the signal's number, once one came
        self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}

    def _handle(self, signum, frame):
        name = signal_name(signum)
        if self.requested:
            raise Aborted(f"{name} again: stopped at once; nothing was saved since the last checkpoint", signum)
        self.requested = signum
        _tqdm().write(f"\n{name}: finishing this step, then saving a checkpoint (send it again to abort at once)")

    def restore(self):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


class Diverged(RuntimeError):
    """The loss, or a weight, buffer or momentum, became NaN or infinite: the run stops without saving it."""


class Interrupted(Exception):
    """A signal stopped the run after a checkpoint was saved; ``signum`` is the signal's number."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


class Aborted(Interrupted):
    """A second signal stopped the run at once, saving nothing."""


def plot_curves(metrics, path, title="", swa=None):
    """Loss and accuracy per epoch, train and test, into one PNG (written atomically); ``swa``, finish_swa's
    summary of a weight average, adds its test loss and accuracy as stars at the last epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("test", "--")):
        left.plot(epochs, [m[f"{split}_loss"] for m in metrics], style, marker="o", label=split)
        right.plot(epochs, [100 * m[f"{split}_acc"] for m in metrics], style, marker="o", label=split)
    if swa is not None:
        first, last = swa["epochs"]
        label = f"SWA, epochs {first}-{last}"
        left.plot([last], [swa["test_loss"]], "*", color="tab:red", markersize=14, label=label)
        right.plot([last], [100 * swa["test_acc"]], "*", color="tab:red", markersize=14,
                   label=f"{label}: {swa['test_acc']:.2%}")
    left.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    right.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def read_metrics(path, before_epoch):
    """The metrics lines of epochs < before_epoch (later ones belong to work the checkpoint does not hold).

    A last line cut short (a run killed while an older version appended it) is dropped with a
    warning; any other line that is not a metrics record is an error naming the file and line.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    metrics = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not a metrics record")
        except ValueError as e:
            if number == len(lines):
                print(f"warning: the last line of {path} is incomplete (the run was killed while writing it?): "
                      "dropped; the epochs the checkpoint holds are kept", file=sys.stderr)
                break
            raise CheckpointError(f"{path}, line {number}, is not a metrics record ({e}); correct it, or move the "
                                  "file aside to continue without the earlier epochs' metrics") from None
        metrics.append(record)
    return [m for m in metrics if m["epoch"] < before_epoch]


def schedule_summary(config, steps_per_epoch):
    """One line saying how the learning rate moves over the run's steps (counted from 1, as in every message)."""
    summary = _schedule_summary(config, steps_per_epoch)
    if config.swa_start is None:
        return summary
    averaged = config.epochs - config.swa_start
    return (f"{summary}; then {config.swa_rate:g} for {plural(averaged, 'epoch')} (epochs {config.swa_start + 1}-"
            f"{config.epochs}), the weights averaged at each one's end (SWA), and the average tested at the end")


def _schedule_summary(config, steps_per_epoch):
    """The schedule's part of schedule_summary: over all epochs, or with SWA up to --swa-start."""
    epochs = config.schedule_epochs
    total = epochs * steps_per_epoch
    length = f"{plural(epochs, 'epoch')} of {plural(steps_per_epoch, 'step')}"
    if config.schedule == "cosine" and config.restarts:
        cycles = restart_cycles(epochs, config.restarts)      # in epochs: check() makes them whole
        starts = [f"epoch {sum(cycles[:i]) + 1}" for i in range(1, len(cycles))]
        return (f"learning rate {config.lr:g}, cosine-annealed to 0 in cycles of {', '.join(map(str, cycles[:-1]))} "
                f"and {cycles[-1]} epochs, back at {config.lr:g} from {' and '.join(starts)} (SGDR's warm restarts; "
                f"{total:,} steps, {length})")
    if config.schedule == "cosine":
        return f"learning rate {config.lr:g}, cosine-annealed to 0 over {total:,} steps ({length})"
    milestones = step_milestones(total)
    where = [f"step {m + 1:,} ({where_in_run(m, steps_per_epoch)})" for m in milestones]
    summary = (f"learning rate {config.lr:g}, divided by 10 from {where[0]} and again from {where[1]} of {total:,} "
               f"({length})")
    if milestones[0] == 0 or milestones[0] == milestones[1]:
        summary += (f"; with only {plural(total, 'step')} the 50% and 75% points do not fall on steps of their own, "
                    "so some rates are never used")
    return summary


def where_in_run(step, steps_per_epoch):
    """Step ``step`` of the run (from 0) as "epoch E, step S" (from 1)."""
    epoch, within = divmod(step, steps_per_epoch)
    return f"epoch {epoch + 1}, step {within + 1}"


def train_steps(model, optimizer, data, config, progress, data_rng, stop, started, monitor=None, progress_bar=True):
    """The rest of this epoch's training steps, from progress.step on, with a progress bar.

    The learning rate follows the schedule step by step. Stops early when a signal came
    (after a complete step); progress records where it stopped and the running loss and
    accuracy sums. A step whose loss or gradients are not finite stops the run (Diverged) before
    the weights are updated, naming the module where the non-finite numbers began.
    monitor: a TrainingMonitor that watches its steps (``--watch``), or None.
    progress_bar: False shows none (``bench --count-ops`` runs two steps).
    """
    n_train, batch_size = len(data.train_labels), config.batch_size
    steps = -(-n_train // batch_size)
    bar = _tqdm()(total=steps, initial=progress.step, desc=f"epoch {progress.epoch + 1}/{config.epochs}",
                  unit="batch", dynamic_ncols=True, leave=False, disable=not progress_bar)
    try:
        while progress.step < steps and not stop.requested:
            index = progress.order[progress.step * batch_size:(progress.step + 1) * batch_size]
            x, y = prepare_batch(data.train_images[index], data.train_labels[index], data, config.device,
                                 data_rng if config.augment else None, config.pad_fill)
            step_in_run = progress.epoch * steps + progress.step
            optimizer.lr = config.lr_at(step_in_run, steps)
            try:
                with monitor.step(step_in_run) if monitor is not None else contextlib.nullcontext():
                    logits = model(x)
                    loss, dlogits = ops.softmax_cross_entropy(logits, y, check_labels=False)   # checked on loading
                    model.zero_grad()
                    model.backward(dlogits)
                    # The step's one read from the device: finite?, its loss and its correct predictions.
                    finite, loss, correct = read_numbers(optimizer.all_finite(loss), loss,
                                                         (logits.argmax(axis=1) == y).sum())
                    if not finite:
                        raise _NonFiniteStep
                    optimizer.step()
            except _NonFiniteStep:
                what = (f"the training loss became {loss}" if not math.isfinite(loss) else
                        f"the gradients stopped being finite (training loss {loss:.4g})")
                where = find_non_finite(model, x, y)      # the same step again, every module watched
                if where.phase is None:
                    where = (f"replayed on the same batch, {where} (so it depended on random draws, such as "
                             "dropout's)")
                raise Diverged(f"{what} at epoch {progress.epoch + 1}, step {progress.step + 1} of {steps} "
                               f"(lr {optimizer.lr:g}): {where}") from None
            progress.loss_sum += loss * len(index)
            progress.correct += int(correct)
            progress.step += 1
            seen = min(n_train, progress.step * batch_size)
            bar.update(1)
            bar.set_postfix(loss=f"{progress.loss_sum / seen:.3f}", acc=f"{progress.correct / seen:.1%}",
                            lr=f"{optimizer.lr:.3g}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
    finally:
        bar.close()          # before any message, which would otherwise be glued to the bar's line


class _NonFiniteStep(Exception):
    """Inside train_steps: this step's loss or gradients are not finite."""


def read_numbers(*values):
    """0-d device arrays -> Python floats (True/False and whole numbers exactly), in one copy to the host."""
    xp = get_array_module(*values)
    return [float(v) for v in to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64) for v in values]))]


def step_is_finite(loss, params):
    """Whether the loss and every parameter's gradient are finite (one read from the device)."""
    xp = get_array_module(loss)
    checks = [xp.isfinite(loss)] + [xp.isfinite(p.grad).all() for p in params if p.grad is not None]
    return bool(xp.stack(checks).all())


def watch(model, config, out, first_step):
    """The TrainingMonitor of ``--watch N`` (None without it), appending to out/layer_stats.jsonl; a resumed
    run first drops the rows of steps after its checkpoint (step ``first_step`` on), which it runs again."""
    if not config.watch:
        return None
    path = out / "layer_stats.jsonl"
    if path.exists():
        kept = [row for row in read_layer_stats(path) if row["step"] < first_step]
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in kept))
    return TrainingMonitor(model, every=config.watch, path=path)


def require_finite(model, optimizer, when):
    """Raise Diverged if a weight, buffer or momentum buffer holds NaN or infinity (checked before every save)."""
    broken = non_finite_entries(model.state_dict()) + [
        f"optimizer {name}" for name in non_finite_entries(optimizer.state_dict())]
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        raise Diverged(f"{when}, {len(broken)} arrays hold NaN or infinite values ({', '.join(broken[:3])}{more})")


def load_average(average, checkpoint, config, progress, path):
    """Put a checkpoint's SWA average into ``average``; a CheckpointError if it does not hold the epochs after
    --swa-start that the run has done (one saved with another --swa-start, or without SWA, after averaging began)."""
    expected = max(0, progress.epoch - config.swa_start)
    saved = checkpoint.get("swa") or {}
    held = int(saved["n_averaged"]) if "n_averaged" in saved else 0
    if held != expected:
        raise CheckpointError(f"{path} holds an average of {plural(held, 'epoch')}, but with --swa-start "
                              f"{config.swa_start} after {progress.epoch} epochs it should hold {expected}: resume "
                              "with the --swa-start the averaging began with (--swa-start may change only before "
                              "it begins)")
    if held:
        try:
            average.load_state_dict(saved)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None


def swa_batches(data, config, rng=None):
    """The batches that remake batch norm's statistics for SWA's average: every training image once, in an order
    and with augmentation drawn from their own generator (default: seeded by --seed, the same on every resume),
    as in training (torch.optim.swa_utils.update_bn is given the training loader). Yields model inputs
    (B, 3, 32, 32)."""
    rng = np.random.default_rng([config.seed, 1]) if rng is None else rng
    order = rng.permutation(len(data.train_labels))
    for start in range(0, len(order), config.batch_size):
        index = order[start:start + config.batch_size]
        x, _ = prepare_batch(data.train_images[index], data.train_labels[index], data, config.device,
                             rng if config.augment else None, config.pad_fill)
        yield x


def finish_swa(model, average, data, config, out, stop, save):
    """SWA's result: the average of the epoch-end weights after --swa-start, its batch-norm statistics made again
    (``update_bn`` over ``swa_batches``), tested; written to out/swa.npz (a checkpoint that --eval-only and
    tools/export_pretrained.py take, by ``save(when, path, network)``) and out/swa.json. Returns swa.json's summary
    (for ``plot_curves``).

    ``model`` (the last epoch's network) is left as it is. A signal on the way stops without writing anything
    (Interrupted): the run's checkpoint is complete, and ``--resume`` does this part again.
    """
    started = time.perf_counter()
    swa_model = build_model(config)
    swa_model.load_state_dict(model.state_dict())          # the buffers' shapes; update_bn remakes their values
    average.copy_to(swa_model)
    batches = swa_batches(data, config)
    steps = -(-len(data.train_labels) // config.batch_size)
    bar = _tqdm()(batches, total=steps, desc="  SWA: batch-norm statistics", leave=False, unit="batch",
                  dynamic_ncols=True)

    def until_stopped(batches):
        for x in batches:
            if stop is not None and stop.requested:
                return
            yield x

    try:
        update_bn(swa_model, until_stopped(bar))
    finally:
        bar.close()
    result = None if stop is not None and stop.requested else evaluate(swa_model, data, config, stop)
    if result is None:
        raise Interrupted(f"interrupted while testing SWA's average: the run's checkpoint is complete; finish with: "
                          f"python -m scratchnet.train --resume --out {out}", stop.requested)
    first = config.swa_start + 1
    summary = {"epochs": [first, config.epochs], "n_averaged": average.n, "lr": config.swa_rate,
               "bn_batches": steps, "test_loss": result.loss, "test_acc": result.accuracy, "test_top5": result.top5,
               "seconds": round(time.perf_counter() - started, 3)}
    save("for SWA's average", out / "swa.npz", swa_model)
    atomic_write_text(out / "swa.json", json.dumps(summary, indent=2) + "\n")
    _tqdm().write(f"SWA: the mean of the weights of epochs {first}-{config.epochs} ({average.n}), batch norm remade "
                  f"over {steps} training batches: test loss {result.loss:.4f} acc {result.accuracy:.2%} "
                  f"top-5 {result.top5:.2%}; saved to {out / 'swa.npz'}")
    return summary


def train(config, checkpoint=None, saved=None):
    """Run (or resume, from a loaded checkpoint) training as configured; returns the list of per-epoch metrics.

    saved: the resumed run's config as saved, to say what a changed --lr or --epochs does to the schedule.
    """
    out = Path(config.out)
    keep_freed_memory()              # the next step reuses what this one frees (backend.keep_freed_memory)
    data = load_data(config)
    model = build_model(config)
    optimizer = build_optimizer(model, config)
    data_rng = np.random.default_rng(config.seed)
    progress = Progress()
    average = None if config.swa_start is None else WeightAverage(model)
    metrics_path, checkpoint_path, best_path = out / "metrics.jsonl", out / "checkpoint.npz", out / "best.npz"
    if checkpoint is not None:
        load_weights(model, checkpoint, checkpoint_path)
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_generator(data_rng, checkpoint["rng"]["data"])
        restore_generator(model.rng, checkpoint["rng"]["model"])
        progress = Progress.from_arrays(checkpoint["progress"], str(checkpoint_path))
        sizes = {"training": (progress.train_size, len(data.train_labels)),
                 "test": (progress.test_size, len(data.test_labels))}
        for split, (was, now) in sizes.items():
            if was and was != now:
                raise ConfigError(f"the run in {out} used {was:,} {split} images, but the data found now has "
                                  f"{now:,}: point --data-dir at the data it was trained on")
        if average is not None:
            load_average(average, checkpoint, config, progress, checkpoint_path)
        if checkpoint.get("format_version") == 1 and config.dropout > 0 and config.memory_efficient:
            print(f"warning: {checkpoint_path} was written before the memory-efficient network drew its "
                  "dropout masks in the textbook network's order: the run continues, with other masks than the "
                  "version that wrote it would have drawn", file=sys.stderr)
    metrics = read_metrics(metrics_path, progress.epoch + 1)
    out.mkdir(parents=True, exist_ok=True)         # only now: bad data or settings leave nothing behind
    atomic_write_text(out / "config.json", config.to_json())
    n_train = len(data.train_labels)
    steps = -(-n_train // config.batch_size)
    progress.train_size, progress.test_size = n_train, len(data.test_labels)
    if progress.lr_first < 0 and len(progress.order):      # resumed from a checkpoint that did not record it
        progress.lr_first = config.lr_at(progress.epoch * steps, steps)
    tqdm = _tqdm()
    monitor = watch(model, config, out, progress.epoch * steps + progress.step)

    def save(when, path=checkpoint_path, network=model):
        """A checkpoint of the run; network: its model, or SWA's averaged copy (saved without the average)."""
        require_finite(network, optimizer, when)
        save_checkpoint(path, network, optimizer, progress.to_arrays(), {"data": data_rng, "model": model.rng},
                        config.to_dict(), average if network is model else None)

    print(f"{config.name}: {model.num_parameters():,} parameters, {n_train} training and "
          f"{len(data.test_labels)} test images, {config.device}, out {out}/")
    print(schedule_summary(config, steps))
    if saved is not None and any(getattr(saved, key) != getattr(config, key) for key in SCHEDULE_SETTINGS):
        here = progress.epoch * steps + progress.step
        print(f"resumed with other settings than saved: it was {schedule_summary(saved, steps)}. At step {here + 1:,}, "
              f"where it continues, the rate is now {config.lr_at(here, steps):g} (it was "
              f"{saved.lr_at(here, steps):g}); recorded in {out / 'config.json'}")
    title = f"{config.name} on {config.dataset}"
    stop = StopRequest()
    try:
        while progress.epoch < config.epochs:
            epoch = progress.epoch
            if len(progress.order) == 0:     # a new epoch (a checkpoint saved at its start keeps its order)
                progress.start_epoch(data_rng.permutation(n_train), config.lr_at(epoch * steps, steps))
            started = time.perf_counter() - progress.seconds
            try:
                train_steps(model, optimizer, data, config, progress, data_rng, stop, started, monitor)
            finally:
                if monitor is not None and monitor.records:
                    plot_layer_stats(read_layer_stats(monitor.path), out / "layer_stats.png",
                                     f"{config.name}: every {plural(config.watch, 'step')}")
            train_seconds = time.perf_counter() - started
            result = None if stop.requested else evaluate(model, data, config, stop)
            if result is None:           # a signal: keep the position inside this epoch
                progress.seconds = train_seconds
                save(f"at epoch {epoch + 1}, step {progress.step} of {steps}")
                raise Interrupted(f"interrupted at epoch {epoch + 1}, step {progress.step} of {steps}: "
                                  f"checkpoint saved to {checkpoint_path}; continue with: "
                                  f"python -m scratchnet.train --resume --out {out}", stop.requested)
            if not math.isfinite(result.loss):
                raise Diverged(f"the test loss became {result.loss} after epoch {epoch + 1} "
                               f"(training loss {progress.loss_sum / n_train:.4g}, lr {optimizer.lr:g})")
            require_finite(model, optimizer, f"after epoch {epoch + 1}")
            record = {"epoch": epoch + 1, "train_loss": progress.loss_sum / n_train,
                      "train_acc": progress.correct / n_train, "test_loss": result.loss, "test_acc": result.accuracy,
                      "test_top5": result.top5, "lr": optimizer.lr, "lr_first": progress.lr_first,
                      "seconds": round(time.perf_counter() - started, 3),
                      "images_per_s": round(n_train / train_seconds, 2)}
            # Metrics first (the whole file rewritten atomically, so no line is ever half-written); a resume
            # drops the lines of epochs its checkpoint does not hold.
            metrics.append(record)
            atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))
            plot_curves(metrics, out / "curves.png", title)
            progress.finish_epoch()
            if average is not None and progress.epoch > config.swa_start:
                average.update(model)            # this epoch's end is one of the points SWA averages
            best = result.accuracy > progress.best_acc
            if best:
                progress.best_acc = result.accuracy
                save(f"after epoch {epoch + 1}", best_path)    # before checkpoint.npz, which records it as the best
            save(f"after epoch {epoch + 1}")
            tqdm.write(f"epoch {epoch + 1:>3}/{config.epochs}  train loss {record['train_loss']:.4f} "
                       f"acc {record['train_acc']:.2%}  test loss {record['test_loss']:.4f} "
                       f"acc {record['test_acc']:.2%}"
                       f"{' (best)' if best else ''}  lr {record['lr']:.4g}  {record['images_per_s']:.1f} img/s  "
                       f"{record['seconds']:.1f} s")
        if average is not None and average.n:
            summary = finish_swa(model, average, data, config, out, stop, save)
            plot_curves(metrics, out / "curves.png", title, swa=summary)
    finally:
        stop.restore()
    return metrics
