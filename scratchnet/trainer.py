"""The training loop behind ``python -m scratchnet.train``: a run's settings, its progress, epochs of steps.

- ``RunConfig``: every setting of a run, with the paper's recipe as the defaults (saved as JSON);
- ``Progress``: where the run is (epoch, step, this epoch's order and running sums), which a
  checkpoint saves, so that a resumed run continues exactly;
- ``train(config, checkpoint)``: epochs of ``train_steps``, each followed by ``evaluate``, a
  metrics line, the curves and a checkpoint.

The command line (parsing, checking, resuming) is ``train.py``.
"""
import importlib
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import ops
from .backend import to_device
from .checkpoint import atomic_write, atomic_write_text, restore_generator, save_checkpoint
from .data import DataError, load_cifar, normalize, random_crop_flip, synthetic_cifar
from .models import densenet_cifar
from .optim import SCHEDULES, SGD

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


@dataclass
class RunConfig:
    """Every setting of a training run. The defaults are the paper's recipe for DenseNet-BC (L=40, k=12) on C10+."""
    depth: int = 40                 # L: 4 + 6n for BC, 4 + 3n without
    k: int = 12                     # growth rate
    bc: bool = True                 # bottleneck and compression (DenseNet-BC)
    theta: float | None = None      # compression; None: 0.5 for BC, 1 without
    dropout: float = 0.0
    memory_efficient: bool = True   # the shared-buffer DenseNet of the fast tier, else the textbook one
    dataset: str = "cifar10"        # cifar10, cifar100 or synthetic
    data_dir: str = "data"
    augment: bool = True            # C10+: random crops and flips
    limit_train: int | None = None  # train on the first N images only
    limit_test: int | None = None
    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.1
    schedule: str = "step"          # a key of optim.SCHEDULES
    momentum: float = 0.9           # Nesterov momentum
    weight_decay: float = 1e-4
    device: str = "cpu"
    seed: int = 0                   # the weights, the batch order, augmentation and dropout
    out: str | None = None          # the run's folder; None: default_out()

    @property
    def name(self):
        return ("DenseNet-BC" if self.bc else "DenseNet") + f" (L={self.depth}, k={self.k})"

    def default_out(self):
        kind = "densenet-bc" if self.bc else "densenet"
        return str(Path("runs") / f"{kind}-L{self.depth}-k{self.k}-{self.dataset}")

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
    predictions of this epoch's steps so far; seconds is their training time.
    """
    epoch: int = 0
    step: int = 0
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loss_sum: float = 0.0
    correct: int = 0
    seconds: float = 0.0

    def start_epoch(self, order):
        self.step, self.order, self.loss_sum, self.correct, self.seconds = 0, order, 0.0, 0, 0.0

    def finish_epoch(self):
        self.epoch += 1
        self.start_epoch(np.zeros(0, np.int64))

    def to_arrays(self):
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays):
        """From a checkpoint's progress section (0-d arrays and one index array)."""
        return cls(epoch=int(arrays["epoch"]), step=int(arrays["step"]), order=np.asarray(arrays["order"], np.int64),
                   loss_sum=float(arrays["loss_sum"]), correct=int(arrays["correct"]),
                   seconds=float(arrays["seconds"]))


def build_model(config):
    model = densenet_cifar(config.depth, config.k, bc=config.bc, theta=config.theta, dropout=config.dropout,
                           num_classes=100 if config.dataset == "cifar100" else 10, seed=config.seed,
                           memory_efficient=config.memory_efficient)
    return model.to(config.device)


def load_data(config):
    if config.dataset == "synthetic":
        data = synthetic_cifar(seed=config.seed)
    else:
        data = load_cifar(config.dataset, config.data_dir)
    for split, limit in (("train", config.limit_train), ("test", config.limit_test)):
        if limit is not None:
            if limit < 1:
                raise DataError(f"--limit-{split} must be at least 1, got {limit}")
            setattr(data, f"{split}_images", getattr(data, f"{split}_images")[:limit])
            setattr(data, f"{split}_labels", getattr(data, f"{split}_labels")[:limit])
    return data


def prepare_batch(images, labels, data, device, augment_rng=None):
    """uint8 images on the host -> normalised (and, given a generator, augmented) floats on device."""
    x = normalize(to_device(images, device), data.mean, data.std)
    if augment_rng is not None:
        x = random_crop_flip(x, augment_rng)
    return x, to_device(labels, device)


def evaluate(model, data, config, stop=None):
    """Mean loss and accuracy over the test set, in eval mode. None if ``stop`` was set on the way."""
    model.eval()
    batch_size = 2 * config.batch_size      # no backward pass to keep memory for
    loss_sum, correct, n = 0.0, 0, len(data.test_labels)
    batches = range(0, n, batch_size)
    for start in _tqdm()(batches, desc="  test", leave=False, unit="batch", dynamic_ncols=True):
        x, y = prepare_batch(data.test_images[start:start + batch_size], data.test_labels[start:start + batch_size],
                             data, config.device)
        logits = model(x)
        loss, _ = ops.softmax_cross_entropy(logits, y)
        loss_sum += float(loss) * len(y)
        correct += int((logits.argmax(axis=1) == y).sum())
        if stop is not None and stop.requested:
            model.train()
            return None
    model.train()
    return loss_sum / n, correct / n


class StopRequest:
    """Ctrl-C sets ``requested``; training finishes its step, saves a checkpoint and exits. A second Ctrl-C aborts."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        _tqdm().write("\nCtrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to abort at once)")

    def restore(self):
        signal.signal(signal.SIGINT, self.previous)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: training stops without saving the broken weights."""


class Interrupted(Exception):
    """Ctrl-C stopped the run after a checkpoint was saved."""


def plot_curves(metrics, path, title=""):
    """Loss and accuracy per epoch, train and test, into one PNG (written atomically)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("test", "--")):
        left.plot(epochs, [m[f"{split}_loss"] for m in metrics], style, marker="o", label=split)
        right.plot(epochs, [100 * m[f"{split}_acc"] for m in metrics], style, marker="o", label=split)
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
    """The metrics lines of epochs < before_epoch (later ones belong to work the checkpoint does not hold)."""
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [m for m in lines if m["epoch"] < before_epoch]


def train_steps(model, optimizer, data, config, progress, data_rng, stop, started):
    """The rest of this epoch's training steps, from progress.step on, with a progress bar.

    Stops early when Ctrl-C was pressed (after a complete step); progress records
    where it stopped and the running loss and accuracy sums.
    """
    n_train, batch_size = len(data.train_labels), config.batch_size
    steps = -(-n_train // batch_size)
    bar = _tqdm()(total=steps, initial=progress.step, desc=f"epoch {progress.epoch + 1}/{config.epochs}",
                  unit="batch", dynamic_ncols=True, leave=False)
    while progress.step < steps and not stop.requested:
        index = progress.order[progress.step * batch_size:(progress.step + 1) * batch_size]
        x, y = prepare_batch(data.train_images[index], data.train_labels[index], data, config.device,
                             data_rng if config.augment else None)
        logits = model(x)
        loss, dlogits = ops.softmax_cross_entropy(logits, y)
        if not np.isfinite(float(loss)):
            raise NonFiniteLoss(f"the training loss became {float(loss)} at epoch {progress.epoch + 1}, step "
                                f"{progress.step + 1} of {steps}")
        model.zero_grad()
        model.backward(dlogits)
        optimizer.step()
        progress.loss_sum += float(loss) * len(index)
        progress.correct += int((logits.argmax(axis=1) == y).sum())
        progress.step += 1
        seen = min(n_train, progress.step * batch_size)
        bar.update(1)
        bar.set_postfix(loss=f"{progress.loss_sum / seen:.3f}", acc=f"{progress.correct / seen:.1%}",
                        img_s=f"{seen / (time.perf_counter() - started):.0f}")
    bar.close()


def train(config, checkpoint=None):
    """Run (or resume, from a loaded checkpoint) training as configured; returns the list of per-epoch metrics."""
    out = Path(config.out)
    data = load_data(config)
    model = build_model(config)
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                    weight_decay=config.weight_decay)
    data_rng = np.random.default_rng(config.seed)
    progress = Progress()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_generator(data_rng, checkpoint["rng"]["data"])
        restore_generator(model.rng, checkpoint["rng"]["model"])
        progress = Progress.from_arrays(checkpoint["progress"])
        if checkpoint.get("format_version") == 1 and config.dropout > 0 and config.memory_efficient:
            print(f"warning: {out / 'checkpoint.npz'} was written before the memory-efficient network drew its "
                  "dropout masks in the textbook network's order: the run continues, with other masks than the "
                  "version that wrote it would have drawn", file=sys.stderr)
    metrics_path, checkpoint_path = out / "metrics.jsonl", out / "checkpoint.npz"
    metrics = read_metrics(metrics_path, progress.epoch + 1)
    atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))
    schedule, n_train = SCHEDULES[config.schedule], len(data.train_labels)
    steps = -(-n_train // config.batch_size)
    tqdm = _tqdm()

    def save():
        save_checkpoint(checkpoint_path, model, optimizer, progress.to_arrays(),
                        {"data": data_rng, "model": model.rng}, config.to_dict())

    print(f"{config.name}: {model.num_parameters():,} parameters, {n_train} training and "
          f"{len(data.test_labels)} test images, {config.device}, out {out}/")
    stop = StopRequest()
    try:
        while progress.epoch < config.epochs:
            epoch = progress.epoch
            if progress.step == 0:
                progress.start_epoch(data_rng.permutation(n_train))
            optimizer.lr = schedule(epoch, config.lr, config.epochs)
            started = time.perf_counter() - progress.seconds
            train_steps(model, optimizer, data, config, progress, data_rng, stop, started)
            train_seconds = time.perf_counter() - started
            result = None if stop.requested else evaluate(model, data, config, stop)
            if result is None:           # Ctrl-C: keep the position inside this epoch
                progress.seconds = train_seconds
                save()
                raise Interrupted(f"interrupted at epoch {epoch + 1}, step {progress.step} of {steps}: "
                                  f"checkpoint saved to {checkpoint_path}; continue with: "
                                  f"python -m scratchnet.train --resume --out {out}")
            record = {"epoch": epoch + 1, "train_loss": progress.loss_sum / n_train,
                      "train_acc": progress.correct / n_train, "test_loss": result[0], "test_acc": result[1],
                      "lr": optimizer.lr, "seconds": round(time.perf_counter() - started, 3),
                      "images_per_s": round(n_train / train_seconds, 2)}
            metrics.append(record)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            plot_curves(metrics, out / "curves.png", f"{config.name} on {config.dataset}")
            progress.finish_epoch()
            save()
            tqdm.write(f"epoch {epoch + 1:>3}/{config.epochs}  train loss {record['train_loss']:.4f} "
                       f"acc {record['train_acc']:.2%}  test loss {record['test_loss']:.4f} acc {record['test_acc']:.2%}"
                       f"  lr {record['lr']:.4g}  {record['images_per_s']:.1f} img/s  {record['seconds']:.1f} s")
    finally:
        stop.restore()
    return metrics
