"""Train a DenseNet on CIFAR from the command line, with the paper's recipe as the defaults.

    python -m scratchnet.train --k 12 --depth 40            # DenseNet-BC (L=40, k=12) on C10+
    python -m scratchnet.train --resume --out runs/NAME      # continue an interrupted run
    python -m scratchnet.train --eval-only runs/NAME/checkpoint.npz

Everything a run writes goes into --out: config.json, metrics.jsonl (one line per
epoch), curves.png, and checkpoint.npz (every epoch, and on Ctrl-C). A resumed run
continues bit-identically on the CPU: the checkpoint holds the weights, batch-norm
buffers, momentum, the position inside the epoch and every random generator's state.
"""
import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import ops
from .backend import GPUUnavailableError, array_module_for, to_device
from .checkpoint import atomic_write, atomic_write_text, load_checkpoint, restore_generator, save_checkpoint
from .data import DataError, load_cifar, normalize, random_crop_flip, synthetic_cifar
from .models import densenet_cifar
from .optim import SCHEDULES, SGD

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("python -m scratchnet.train needs tqdm and matplotlib: pip install 'scratchnet[train]'")

# Flags that may differ when a run is resumed; every other one must match the saved config.
RESUME_MAY_CHANGE = {"epochs", "device", "data_dir", "out", "resume", "eval_only"}


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.train",
        description="Train DenseNet-BC (or DenseNet) on CIFAR with the recipe of Huang et al. (CVPR 2017). "
                    "The defaults are the paper's; the full 300 epochs take about 36 hours on 2 CPU cores, so try "
                    "--limit-train 5000 --epochs 3 (or --dataset synthetic) first.")
    model = p.add_argument_group("model")
    model.add_argument("--depth", type=int, default=40,
                       help="L, the number of layers: 4 + 6n for BC, 4 + 3n without (default: %(default)s)")
    model.add_argument("--k", type=int, default=12,
                       help="growth rate: feature maps each layer adds (default: %(default)s)")
    model.add_argument("--no-bc", dest="bc", action="store_false",
                       help="plain DenseNet: no bottleneck, no compression, a 16-channel stem (default: DenseNet-BC)")
    model.add_argument("--theta", type=float, default=None,
                       help="compression at transitions (default: 0.5 BC, 1 plain)")
    model.add_argument("--dropout", type=float, default=0.0,
                       help="dropout after each conv but the first (default: %(default)s; the paper's 0.2 without "
                            "augmentation)")
    model.add_argument("--no-memory-efficient", dest="memory_efficient", action="store_false",
                       help="the textbook DenseNet (a concatenation per layer, memory quadratic in depth) instead of "
                            "the default shared-buffer one (Pleiss et al. 2017; same gradients, faster, linear memory)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["cifar10", "cifar100", "synthetic"], default="cifar10",
                      help="synthetic: a made-up 10-class stand-in (2,000 + 500 images) to try things without data "
                           "(default: %(default)s)")
    data.add_argument("--data-dir", default="data",
                      help="where the dataset is, or is downloaded to (default: %(default)s)")
    data.add_argument("--no-augment", dest="augment", action="store_false",
                      help="the paper's C10 setting: no random crops or flips (default: C10+, augmented)")
    data.add_argument("--limit-train", type=int, default=None, metavar="N",
                      help="train on the first N images only (default: all)")
    data.add_argument("--limit-test", type=int, default=None, metavar="N",
                      help="test on the first N images only (default: all)")
    optim = p.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=300, help="passes over the training set (default: %(default)s)")
    optim.add_argument("--batch-size", type=int, default=64, help="images per SGD step (default: %(default)s)")
    optim.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default: %(default)s)")
    optim.add_argument("--schedule", choices=sorted(SCHEDULES), default="step",
                       help="step: divide by 10 at 50%% and 75%% of the epochs; cosine: anneal to 0 "
                            "(default: %(default)s)")
    optim.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (default: %(default)s)")
    optim.add_argument("--weight-decay", type=float, default=1e-4,
                       help="L2 penalty added to every gradient, as torch.optim.SGD (default: %(default)s)")
    run = p.add_argument_group("run")
    run.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                     help="gpu needs CuPy: pip install 'scratchnet[gpu]' (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0,
                     help="seeds the weights, the batch order, augmentation and dropout (default: %(default)s)")
    run.add_argument("--out", default=None,
                     help="output folder (default: runs/<model>-<dataset>, e.g. runs/densenet-bc-L40-k12-cifar10)")
    run.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    run.add_argument("--eval-only", metavar="CHECKPOINT", default=None,
                     help="evaluate a checkpoint on the test set and exit")
    return p


def explicit_flags(parser, argv):
    """The destinations of the flags given on the command line (not left at their defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
            if action.nargs == 0:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            probe.add_argument(*action.option_strings, **kwargs)
    return set(vars(probe.parse_known_args(argv)[0]))


def default_out(config):
    kind = "densenet-bc" if config["bc"] else "densenet"
    return str(Path("runs") / f"{kind}-L{config['depth']}-k{config['k']}-{config['dataset']}")


def build_model(config):
    model = densenet_cifar(config["depth"], config["k"], bc=config["bc"], theta=config["theta"],
                           dropout=config["dropout"], num_classes=100 if config["dataset"] == "cifar100" else 10,
                           seed=config["seed"], memory_efficient=config.get("memory_efficient", True))
    return model.to(config["device"])


def load_data(config):
    if config["dataset"] == "synthetic":
        data = synthetic_cifar(seed=config["seed"])
    else:
        data = load_cifar(config["dataset"], config["data_dir"])
    for split, limit in (("train", config["limit_train"]), ("test", config["limit_test"])):
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
    batch_size = 2 * config["batch_size"]      # no backward pass to keep memory for
    loss_sum, correct, n = 0.0, 0, len(data.test_labels)
    batches = range(0, n, batch_size)
    for start in tqdm(batches, desc="  test", leave=False, unit="batch", dynamic_ncols=True):
        x, y = prepare_batch(data.test_images[start:start + batch_size], data.test_labels[start:start + batch_size],
                             data, config["device"])
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
        tqdm.write("\nCtrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to abort at once)")

    def restore(self):
        signal.signal(signal.SIGINT, self.previous)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: training stops without saving the broken weights."""


class Interrupted(Exception):
    """Ctrl-C stopped the run after a checkpoint was saved."""


def plot_curves(metrics, path, title=""):
    """Loss and accuracy per epoch, train and test, into one PNG (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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


def train_steps(model, optimizer, data, config, progress, data_rng, stop, epoch, started):
    """The rest of this epoch's training steps, from progress["step"] on, with a progress bar.

    Stops early when Ctrl-C was pressed (after a complete step); progress records
    where it stopped and the running loss and accuracy sums.
    """
    n_train, batch_size = len(data.train_labels), config["batch_size"]
    steps = -(-n_train // batch_size)
    bar = tqdm(total=steps, initial=int(progress["step"]), desc=f"epoch {epoch + 1}/{config['epochs']}",
               unit="batch", dynamic_ncols=True, leave=False)
    while int(progress["step"]) < steps and not stop.requested:
        step = int(progress["step"])
        index = progress["order"][step * batch_size:(step + 1) * batch_size]
        x, y = prepare_batch(data.train_images[index], data.train_labels[index], data, config["device"],
                             data_rng if config["augment"] else None)
        logits = model(x)
        loss, dlogits = ops.softmax_cross_entropy(logits, y)
        if not np.isfinite(float(loss)):
            raise NonFiniteLoss(f"the training loss became {float(loss)} at epoch {epoch + 1}, step "
                                f"{step + 1} of {steps}")
        model.zero_grad()
        model.backward(dlogits)
        optimizer.step()
        progress["loss_sum"] = float(progress["loss_sum"]) + float(loss) * len(index)
        progress["correct"] = int(progress["correct"]) + int((logits.argmax(axis=1) == y).sum())
        progress["step"] = step + 1
        seen = min(n_train, (step + 1) * batch_size)
        bar.update(1)
        bar.set_postfix(loss=f"{progress['loss_sum'] / seen:.3f}", acc=f"{progress['correct'] / seen:.1%}",
                        img_s=f"{seen / (time.perf_counter() - started):.0f}")
    bar.close()


def train(config, checkpoint=None):
    """Run (or resume) training as configured; returns the list of per-epoch metrics."""
    out = Path(config["out"])
    data = load_data(config)
    model = build_model(config)
    optimizer = SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"], nesterov=config["momentum"] > 0,
                    weight_decay=config["weight_decay"])
    data_rng = np.random.default_rng(config["seed"])
    progress = {"epoch": 0, "step": 0, "order": np.zeros(0, np.int64), "loss_sum": 0.0, "correct": 0, "seconds": 0.0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_generator(data_rng, checkpoint["rng"]["data"])
        restore_generator(model.rng, checkpoint["rng"]["model"])
        progress.update({key: value for key, value in checkpoint["progress"].items()})
    metrics_path, checkpoint_path = out / "metrics.jsonl", out / "checkpoint.npz"
    metrics = read_metrics(metrics_path, int(progress["epoch"]) + 1)
    atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))
    schedule, n_train, batch_size = SCHEDULES[config["schedule"]], len(data.train_labels), config["batch_size"]
    steps = -(-n_train // batch_size)

    def save():
        save_checkpoint(checkpoint_path, model, optimizer, progress, {"data": data_rng, "model": model.rng}, config)

    print(f"{config['name']}: {model.num_parameters():,} parameters, {n_train} training and "
          f"{len(data.test_labels)} test images, {config['device']}, out {out}/")
    stop = StopRequest()
    try:
        for epoch in range(int(progress["epoch"]), config["epochs"]):
            if int(progress["step"]) == 0:
                progress.update(order=data_rng.permutation(n_train), loss_sum=0.0, correct=0, seconds=0.0)
            optimizer.lr = schedule(epoch, config["lr"], config["epochs"])
            started = time.perf_counter() - float(progress["seconds"])
            train_steps(model, optimizer, data, config, progress, data_rng, stop, epoch, started)
            train_seconds = time.perf_counter() - started
            result = None if stop.requested else evaluate(model, data, config, stop)
            if result is None:           # Ctrl-C: keep the position inside this epoch
                progress["seconds"] = train_seconds
                save()
                raise Interrupted(f"interrupted at epoch {epoch + 1}, step {int(progress['step'])} of {steps}: "
                                  f"checkpoint saved to {checkpoint_path}; continue with: "
                                  f"python -m scratchnet.train --resume --out {out}")
            record = {"epoch": epoch + 1, "train_loss": progress["loss_sum"] / n_train,
                      "train_acc": progress["correct"] / n_train, "test_loss": result[0], "test_acc": result[1],
                      "lr": optimizer.lr, "seconds": round(time.perf_counter() - started, 3),
                      "images_per_s": round(n_train / train_seconds, 2)}
            metrics.append(record)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            plot_curves(metrics, out / "curves.png", f"{config['name']} on {config['dataset']}")
            progress.update(epoch=epoch + 1, step=0, order=np.zeros(0, np.int64), loss_sum=0.0, correct=0,
                            seconds=0.0)
            save()
            tqdm.write(f"epoch {epoch + 1:>3}/{config['epochs']}  train loss {record['train_loss']:.4f} "
                       f"acc {record['train_acc']:.2%}  test loss {record['test_loss']:.4f} acc {record['test_acc']:.2%}"
                       f"  lr {record['lr']:.4g}  {record['images_per_s']:.1f} img/s  {record['seconds']:.1f} s")
    finally:
        stop.restore()
    return metrics


def config_from_args(args):
    config = {key: value for key, value in vars(args).items() if key not in ("resume", "eval_only")}
    config["name"] = ("DenseNet-BC" if args.bc else "DenseNet") + f" (L={args.depth}, k={args.k})"
    config["out"] = args.out or default_out(config)
    return config


def resume_config(args, explicit):
    """The saved run's config, with the flags that may change on resume taken from the command line."""
    out = Path(args.out or default_out(config_from_args(args)))
    checkpoint = load_checkpoint(out / "checkpoint.npz")
    config = checkpoint["config"]
    given = config_from_args(args)
    clashes = [key for key in explicit - RESUME_MAY_CHANGE if key in config and given[key] != config[key]]
    if clashes:
        listing = ", ".join(f"--{key.replace('_', '-')} {given[key]} (saved: {config[key]})" for key in sorted(clashes))
        raise ValueError(f"the run in {out} was made with other settings: {listing}. Leave these flags out to "
                         "continue it, or start a new run with another --out")
    config.update({key: given[key] for key in RESUME_MAY_CHANGE & explicit if key in given})
    return config, checkpoint


def run_eval_only(path, args, explicit):
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    config.update({key: value for key, value in vars(args).items()
                   if key in explicit and key in ("device", "data_dir", "limit_test")})
    data = load_data({**config, "limit_train": 1})
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    loss, accuracy = evaluate(model, data, config)
    print(f"{config['name']} from {path}: test loss {loss:.4f}, accuracy {accuracy:.2%} "
          f"({len(data.test_labels)} images)")
    return loss, accuracy


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = explicit_flags(parser, argv)
    try:
        if args.eval_only:
            run_eval_only(args.eval_only, args, explicit)
            return 0
        if args.resume:
            config, checkpoint = resume_config(args, explicit)
        else:
            config, checkpoint = config_from_args(args), None
            densenet_cifar(config["depth"], config["k"], bc=config["bc"], theta=config["theta"])  # fail fast
            array_module_for(config["device"])     # a missing GPU is reported before anything is written
            if (Path(config["out"]) / "checkpoint.npz").exists():
                raise ValueError(f"{config['out']} already holds a run; continue it with --resume, "
                                 "or choose another --out")
        Path(config["out"]).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(config["out"]) / "config.json", json.dumps(config, indent=2) + "\n")
        train(config, checkpoint)
    except (DataError, GPUUnavailableError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(e)
        return 130
    except NonFiniteLoss as e:
        checkpoint_path = Path(config["out"]) / "checkpoint.npz"
        if checkpoint_path.exists():
            last = load_checkpoint(checkpoint_path)["progress"]
            where = f"the last good checkpoint is {checkpoint_path} (after epoch {int(last['epoch'])})"
        else:
            where = "no checkpoint had been written yet"
        print(f"error: {e}; stopping. {where}. Try a lower --lr.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
