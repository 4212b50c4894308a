"""Train a DenseNet on CIFAR from the command line, with the paper's recipe as the defaults.

    python -m scratchnet.train --k 12 --depth 40            # DenseNet-BC (L=40, k=12) on C10+
    python -m scratchnet.train --resume --out runs/NAME      # continue an interrupted run
    python -m scratchnet.train --eval-only runs/NAME/checkpoint.npz
    python -m scratchnet.train --eval-only pretrained        # the trained DenseNet-BC that ships with scratchnet

Everything a run writes goes into --out: config.json, metrics.jsonl (one line per
epoch), curves.png, checkpoint.npz (every epoch, and on Ctrl-C or SIGTERM) and best.npz
(the epoch of the best test accuracy). A resumed run continues bit-identically on the CPU:
the checkpoint holds the weights, batch-norm buffers, momentum, the position inside the
epoch and every random generator's state. A run that diverged continues from its last good
checkpoint with ``--resume --lr <lower>`` (recorded in config.json's "changes").

Exit codes: 0 done; 1 the run failed (diverged, a file could not be written, out of memory);
2 bad flags or files, refused before anything is written; 128 + the signal's number when
Ctrl-C (130) or SIGTERM (143) stopped it, after a checkpoint was saved.

This file is the command line: flags in, a checked ``RunConfig`` out (reconciled with the
saved one on --resume), errors as messages. The loop itself is ``trainer.py``.
"""
import argparse
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from .backend import GPUUnavailableError, array_module_for
from .checkpoint import CheckpointError, atomic_write_text, load_checkpoint, non_finite_entries
from .data import DataError
from .models import PretrainedError, pretrained_path
from .optim import SCHEDULES
from .trainer import (SCHEDULE_SETTINGS, Aborted, ConfigError, Diverged, Interrupted, MissingExtraError, Progress,
                      RunConfig, StopRequest, build_model, evaluate, flag, load_data, load_weights, require_training_extras, signal_name,
                      train)

# Settings that may differ when a run is resumed; every other one must match the saved config.
# A changed lr, epochs or restarts moves the learning-rate schedule from the checkpoint's step on (recorded in
# "changes"): a finished cosine run resumed with --epochs 3x as many and --restarts 1 goes on with SGDR's restart.
# With stochastic weight averaging, a finished run resumed with more --epochs (and --swa-start, where it has none)
# averages the epochs it adds; --swa-start may change only before averaging begins (trainer.load_average).
RESUME_MAY_CHANGE = {"epochs", "lr", "restarts", "swa_start", "swa_lr", "device", "data_dir", "out", "watch"}
RECORDED_CHANGES = SCHEDULE_SETTINGS
# Settings --eval-only takes from the command line rather than from the checkpoint's config.
EVAL_MAY_CHANGE = {"device", "data_dir", "limit_test", "batch_size"}
DEFAULTS = RunConfig()
WATCH_EVERY = 50        # --watch without a number


def build_parser():
    """The parser. A setting left off the command line is absent from the parsed namespace
    (argparse.SUPPRESS), so that what was given can be told from the defaults."""
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.train", argument_default=argparse.SUPPRESS,
        description="Train DenseNet-BC (or DenseNet) on CIFAR with the recipe of Huang et al. (CVPR 2017). "
                    "The defaults are the paper's; the full 300 epochs take days on 2 CPU cores "
                    "(docs/results.md), so try --limit-train 5000 --epochs 3 (or --dataset synthetic) first.")

    def setting(group, flag, help, shown=None, **kwargs):
        """A flag for one RunConfig field; its help ends with the field's default."""
        dest = kwargs.setdefault("dest", flag.lstrip("-").replace("-", "_"))
        default = getattr(DEFAULTS, dest) if shown is None else shown
        group.add_argument(flag, help=f"{help} (default: {default})", **kwargs)

    model = p.add_argument_group("model")
    setting(model, "--arch", "densenet, or resnet: the CIFAR ResNets of He et al. (pre-activation unless "
            "--post-activation; give --depth)", choices=["densenet", "resnet"])
    setting(model, "--depth", "L, the number of layers: 4 + 6n for BC, 4 + 3n without; resnet: 6n + 2, "
            "9n + 2 with --bottleneck", type=int)
    setting(model, "--k", "growth rate: feature maps each layer adds", type=int)
    setting(model, "--no-bc", "plain DenseNet: no bottleneck, no compression, a 16-channel stem", dest="bc",
            action="store_false", shown="DenseNet-BC")
    setting(model, "--theta", "compression at transitions", type=float, shown="0.5 BC, 1 plain")
    setting(model, "--dropout", "dropout after each conv but the first (the paper's 0.2 without augmentation)",
            type=float)
    setting(model, "--post-activation", "Conv-BN-ReLU units (the order of many lecture notes' Keras code) "
            "instead of the papers' BN-ReLU-Conv; the textbook tier", dest="preactivation", action="store_false",
            shown="pre-activation")
    setting(model, "--bottleneck", "resnet: 1x1-3x3-1x1 blocks (ResNet-164, -1001)", action="store_true")
    setting(model, "--no-shortcut", "resnet: the plain net, without identity or projection paths", dest="shortcut",
            action="store_false", shown="with shortcuts")
    setting(model, "--no-memory-efficient", "the textbook DenseNet (scratchnet.ops only: a concatenation per "
            "layer, memory quadratic in depth, several times slower) instead of the shared-buffer one of the fast "
            "tier (Pleiss et al. 2017; same gradients)", dest="memory_efficient", action="store_false",
            shown="memory-efficient")
    data = p.add_argument_group("data")
    setting(data, "--dataset", "synthetic: a made-up 10-class stand-in (2,000 + 500 images) to try things without "
            "data", choices=["cifar10", "cifar100", "synthetic"])
    setting(data, "--data-dir", "where the dataset is, or is downloaded to")
    setting(data, "--no-augment", "the paper's C10 setting: no random crops or flips", dest="augment",
            action="store_false", shown="C10+, augmented")
    setting(data, "--pad-fill", "what the random crops pad with: mean, the mean colour (the paper's code pads after "
            "normalising), or black (torchvision pads the raw image)", choices=["mean", "black"])
    setting(data, "--limit-train", "train on the first N images only", type=int, metavar="N", shown="all")
    setting(data, "--limit-test", "test on the first N images only", type=int, metavar="N", shown="all")
    optim = p.add_argument_group("optimisation")
    setting(optim, "--epochs", "passes over the training set", type=int)
    setting(optim, "--batch-size", "images per SGD step", type=int)
    setting(optim, "--lr", "initial learning rate", type=float)
    setting(optim, "--schedule", "step: divide by 10 at 50%% and 75%% of all steps; cosine: anneal to 0",
            choices=sorted(SCHEDULES))
    setting(optim, "--restarts", "cosine: warm restarts (SGDR, Loshchilov & Hutter 2017): the rate anneals, jumps back "
            "to --lr and anneals again over a cycle twice as long; --epochs 120 --restarts 1: cycles of 40 and 80",
            type=int, metavar="N")
    setting(optim, "--swa-start", "stochastic weight averaging (Izmailov et al. 2018): the schedule runs its course "
            "over the first E epochs; every later epoch runs at --swa-lr and its end's weights join an average, which "
            "is tested at the end and saved as swa.npz (its batch-norm statistics made again over the training "
            "images); --epochs 340 --swa-start 280 averages 60", type=int, metavar="E", shown="off")
    setting(optim, "--swa-lr", "the constant rate of the averaged epochs", type=float, shown="half of --lr")
    setting(optim, "--momentum", "Nesterov momentum", type=float)
    setting(optim, "--weight-decay", "L2 penalty added to every gradient, as torch.optim.SGD", type=float)
    run = p.add_argument_group("run")
    setting(run, "--device", "gpu needs CuPy: pip install 'scratchnet[gpu]'", choices=["cpu", "gpu"])
    setting(run, "--watch", "every N steps (N: 50 if not given), each layer's activation and gradient statistics to "
            "layer_stats.jsonl and a gradient-norm-against-depth plot, layer_stats.png, in --out", type=int,
            nargs="?", const=WATCH_EVERY, metavar="N", shown="off")
    setting(run, "--seed", "seeds the weights, the batch order, augmentation and dropout", type=int)
    setting(run, "--out", "output folder", shown="runs/<model>-<dataset>, e.g. runs/densenet-bc-L40-k12-cifar10")
    run.add_argument("--resume", action="store_true", default=False,
                     help="continue the run whose checkpoint is in --out (--epochs, --lr, --restarts, --swa-start "
                     "and --swa-lr may change)")
    run.add_argument("--eval-only", metavar="CHECKPOINT", default=None,
                     help="evaluate a checkpoint on the test set and exit; 'pretrained': the DenseNet-BC "
                     "(L=40, k=12) trained on C10+ that ships with scratchnet")
    return p


def check_out_folder(out):
    """Refuse an --out that cannot be the run's folder: a file, under a file, a broken link, or not writable."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"--out {out} is a broken symbolic link (to {os.readlink(out)}): give a folder")
    existing = next(p for p in (out, *out.parents) if p.exists() or p == Path(p.anchor) or p == Path("."))
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is under {existing}, which is a file"
        raise ConfigError(f"--out {out} {where}: give a folder (it is created if need be)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable; choose a folder you can write to")


# Flags that only one architecture has.
ARCH_ONLY = {"densenet": ("k", "bc", "theta", "dropout"), "resnet": ("bottleneck", "shortcut")}


def new_config(given):
    """The config of a new run from the settings given on the command line, checked."""
    arch = given.get("arch", RunConfig.arch)
    other = "resnet" if arch == "densenet" else "densenet"
    misplaced = [flag(key) for key in ARCH_ONLY[other] if key in given]
    if misplaced:
        verb = "belongs" if len(misplaced) == 1 else "belong"
        raise ConfigError(f"{', '.join(misplaced)} {verb} to --arch {other}, not to --arch {arch}")
    if arch == "resnet" or given.get("preactivation") is False:
        given = {**given, "memory_efficient": False}          # only the pre-activation DenseNet has a fast tier
    config = RunConfig(**given)
    if config.out is None:
        config.out = config.default_out()
    check_out_folder(config.out)
    try:
        build_model(replace(config, device="cpu"))            # a depth that does not fit, a bad theta
    except ValueError as e:
        raise ConfigError(str(e)) from None
    array_module_for(config.device)          # a missing GPU is reported before anything is written
    kept = [name for name in ("checkpoint.npz", "best.npz") if (Path(config.out) / name).exists()]
    if kept:
        raise ConfigError(f"{config.out} already holds a run ({', '.join(kept)}); continue it with --resume "
                          "(--lr, --epochs and --restarts may change), or choose another --out")
    return config


def saved_config(checkpoint, path):
    """The RunConfig a checkpoint was saved with; a CheckpointError naming the file if it is not a valid one."""
    try:
        return RunConfig.from_dict(checkpoint["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path} holds a config that is not valid ({e})") from None


def require_resumable(checkpoint, path):
    """The checkpoint's Progress; a CheckpointError unless it holds what a resumed run needs, all of it finite."""
    progress = Progress.from_arrays(checkpoint["progress"], str(path))
    missing = [name for name, section, key in (("the optimiser's state", "optimizer", "lr"),
                                               ("the data order's generator", "rng", "data"),
                                               ("the model's generator", "rng", "model"))
               if key not in checkpoint[section]]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it cannot be resumed, though --eval-only can "
                              "still read its weights")
    broken = non_finite_entries(checkpoint["model"]) + non_finite_entries(checkpoint["optimizer"])
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite values ({', '.join(broken[:3])}): it was saved after "
                              "training diverged (by a scratchnet older than its divergence check) and cannot be "
                              "continued; start a new run in another --out with a lower --lr")
    return progress


def resume_config(given):
    """The saved run's config and checkpoint; of the settings given, only RESUME_MAY_CHANGE may differ.

    A changed lr or epochs is recorded in the config's ``changes``, with the position it applies from.
    """
    out = Path(given.get("out") or RunConfig(**given).default_out())
    check_out_folder(out)
    path, best = out / "checkpoint.npz", out / "best.npz"
    if not path.exists() and best.is_file():     # a stop between the first best.npz and checkpoint.npz
        raise CheckpointError(f"no checkpoint at {path}, but {best} is there, a checkpoint of the same kind: to "
                              f"continue from it, copy it: cp {best} {path}")
    checkpoint = load_checkpoint(path)
    saved = saved_config(checkpoint, path)
    progress = require_resumable(checkpoint, path)
    clashes = sorted(key for key, value in given.items()
                     if key not in RESUME_MAY_CHANGE and value != getattr(saved, key))
    if clashes:
        listing = ", ".join(f"{flag(key)} {given[key]} (saved: {getattr(saved, key)})" for key in clashes)
        raise ConfigError(f"the run in {out} was made with other settings: {listing}. Leave these flags out to "
                          "continue it, or start a new run with another --out")
    changes = {key: value for key, value in given.items() if key in RESUME_MAY_CHANGE}
    config = replace(saved, **{**changes, "out": str(out)})      # the folder the checkpoint was found in
    swa_unfinished = config.swa_start is not None and not (out / "swa.json").exists()
    if progress.epoch >= config.epochs and not (progress.epoch == config.epochs and swa_unfinished):
        raise ConfigError(f"the run in {out} has done {progress.epoch} of its {saved.epochs} epochs; to train on, "
                          f"resume with --epochs greater than {progress.epoch}")
    config.changes = saved.changes + [
        {"setting": key, "was": getattr(saved, key), "now": getattr(config, key), "from_epoch": progress.epoch + 1,
         "from_step": progress.step + 1} for key in RECORDED_CHANGES if getattr(config, key) != getattr(saved, key)]
    array_module_for(config.device)
    return config, checkpoint, saved


def run_eval_only(path, given):
    """Print the checkpoint's test loss, top-1 and top-5 accuracy and its accuracy per class."""
    refused = sorted(key for key in given if key not in EVAL_MAY_CHANGE)
    if refused:
        raise ConfigError(f"--eval-only takes the model and data settings from the checkpoint's config, so "
                          f"{', '.join(flag(key) for key in refused)} cannot be given with it (only "
                          f"{', '.join(flag(key) for key in sorted(EVAL_MAY_CHANGE))})")
    if path == "pretrained":
        path = pretrained_path()
    checkpoint = load_checkpoint(path)
    config = replace(saved_config(checkpoint, path), **given)
    data = load_data(replace(config, limit_train=1))
    model = build_model(config)
    load_weights(model, checkpoint, path)
    result = evaluate(model, data, config)
    print(f"{config.name} from {path}: test loss {result.loss:.4f}, top-1 accuracy {result.accuracy:.2%}, "
          f"top-5 {result.top5:.2%} ({len(data.test_labels)} images)")
    width = max(len(name) for name in data.classes)
    for name, right, count in zip(data.classes, result.class_correct, result.class_count):
        share = f"{right / count:7.2%}" if count else "      -"
        print(f"  {name:<{width}}  {share}  ({right}/{count})")
    return result


def explain_divergence(error, config):
    """The message for a run that diverged: where, the last good checkpoint, and how to continue from it.

    config.json is put back to the good checkpoint's config (the one a resume continues from).
    """
    out = Path(config.out)
    checkpoint_path = out / "checkpoint.npz"
    lower = f"{config.lr / 10:g}"
    if not checkpoint_path.exists():
        return (f"error: {error}; stopping. No checkpoint had been written yet: start again with a lower "
                f"learning rate, e.g. --lr {lower}")
    try:
        last = load_checkpoint(checkpoint_path)
        progress = require_resumable(last, checkpoint_path)
        saved = saved_config(last, checkpoint_path)
    except CheckpointError as e:
        return f"error: {error}; stopping. The checkpoint on disk cannot be continued: {e}"
    atomic_write_text(out / "config.json", replace(saved, out=str(out)).to_json())
    at = f"after epoch {progress.epoch}" + (f", step {progress.step}" if progress.step else "")
    # What this attempt changed against that checkpoint has to be given again (but the rate, lowered).
    again = "".join(f" {flag(key)} {getattr(config, key)}" for key in sorted(RESUME_MAY_CHANGE - {"out", "lr"})
                    if getattr(config, key) != getattr(saved, key))
    return (f"error: {error}; stopping. The last good checkpoint is {checkpoint_path} ({at}; finite weights, "
            f"buffers and momentum). Continue from it with a lower learning rate: "
            f"python -m scratchnet.train --resume --out {out}{again} --lr {lower}")


def stop_before_training(signum, frame):
    """SIGINT and SIGTERM until the training loop takes them over: stop at once, nothing to save yet."""
    raise Aborted(f"{signal_name(signum)} before training started: stopped; nothing was written since the last "
                  "checkpoint", signum)


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    given = {key: value for key, value in vars(args).items() if key not in ("resume", "eval_only")}
    config = None
    previous = {number: signal.signal(number, stop_before_training) for number in StopRequest.SIGNALS}
    try:
        require_training_extras(plots=not args.eval_only)      # --eval-only draws no curves
        if args.eval_only:
            run_eval_only(args.eval_only, given)
            return 0
        if args.resume:
            config, checkpoint, saved = resume_config(given)
        else:
            config, checkpoint, saved = new_config(given), None, None
        train(config, checkpoint, saved)
    except (ConfigError, CheckpointError, DataError, GPUUnavailableError, MissingExtraError, PretrainedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(e)
        return 128 + e.signum
    except Diverged as e:
        print(explain_divergence(e, config), file=sys.stderr)
        return 1
    except OSError as e:                             # a full disk, a folder that vanished, ...
        print(f"error: could not write {e.filename or 'a file of the run'}: {e.strerror or e}. "
              f"Every file already on disk is intact (each is written whole, then renamed into place)"
              + (f"; once this is fixed, continue with: python -m scratchnet.train --resume --out {config.out}"
                 if config is not None and (Path(config.out) / "checkpoint.npz").exists() else ""), file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size, --depth or --k", file=sys.stderr)
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
