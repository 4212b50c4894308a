"""Train a DenseNet on CIFAR from the command line, with the paper's recipe as the defaults.

    python -m scratchnet.train --k 12 --depth 40            # DenseNet-BC (L=40, k=12) on C10+
    python -m scratchnet.train --resume --out runs/NAME      # continue an interrupted run
    python -m scratchnet.train --eval-only runs/NAME/checkpoint.npz

Everything a run writes goes into --out: config.json, metrics.jsonl (one line per
epoch), curves.png, and checkpoint.npz (every epoch, and on Ctrl-C). A resumed run
continues bit-identically on the CPU: the checkpoint holds the weights, batch-norm
buffers, momentum, the position inside the epoch and every random generator's state.

This file is the command line: flags in, a checked ``RunConfig`` out (reconciled with the
saved one on --resume), errors as messages. The loop itself is ``trainer.py``.
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

from .backend import GPUUnavailableError, array_module_for
from .checkpoint import atomic_write_text, load_checkpoint
from .data import DataError
from .models import densenet_cifar
from .optim import SCHEDULES
from .trainer import (Interrupted, MissingExtraError, NonFiniteLoss, RunConfig, build_model, evaluate, load_data,
                      require_training_extras, train)

# Settings that may differ when a run is resumed; every other one must match the saved config.
RESUME_MAY_CHANGE = {"epochs", "device", "data_dir", "out"}
# Settings --eval-only takes from the command line rather than from the checkpoint's config.
EVAL_MAY_CHANGE = {"device", "data_dir", "limit_test"}
DEFAULTS = RunConfig()


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
    setting(model, "--depth", "L, the number of layers: 4 + 6n for BC, 4 + 3n without", type=int)
    setting(model, "--k", "growth rate: feature maps each layer adds", type=int)
    setting(model, "--no-bc", "plain DenseNet: no bottleneck, no compression, a 16-channel stem", dest="bc",
            action="store_false", shown="DenseNet-BC")
    setting(model, "--theta", "compression at transitions", type=float, shown="0.5 BC, 1 plain")
    setting(model, "--dropout", "dropout after each conv but the first (the paper's 0.2 without augmentation)",
            type=float)
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
    setting(data, "--limit-train", "train on the first N images only", type=int, metavar="N", shown="all")
    setting(data, "--limit-test", "test on the first N images only", type=int, metavar="N", shown="all")
    optim = p.add_argument_group("optimisation")
    setting(optim, "--epochs", "passes over the training set", type=int)
    setting(optim, "--batch-size", "images per SGD step", type=int)
    setting(optim, "--lr", "initial learning rate", type=float)
    setting(optim, "--schedule", "step: divide by 10 at 50%% and 75%% of the epochs; cosine: anneal to 0",
            choices=sorted(SCHEDULES))
    setting(optim, "--momentum", "Nesterov momentum", type=float)
    setting(optim, "--weight-decay", "L2 penalty added to every gradient, as torch.optim.SGD", type=float)
    run = p.add_argument_group("run")
    setting(run, "--device", "gpu needs CuPy: pip install 'scratchnet[gpu]'", choices=["cpu", "gpu"])
    setting(run, "--seed", "seeds the weights, the batch order, augmentation and dropout", type=int)
    setting(run, "--out", "output folder", shown="runs/<model>-<dataset>, e.g. runs/densenet-bc-L40-k12-cifar10")
    run.add_argument("--resume", action="store_true", default=False,
                     help="continue the run whose checkpoint is in --out")
    run.add_argument("--eval-only", metavar="CHECKPOINT", default=None,
                     help="evaluate a checkpoint on the test set and exit")
    return p


def new_config(given):
    """The config of a new run from the settings given on the command line, checked."""
    config = RunConfig(**given)
    if config.out is None:
        config.out = config.default_out()
    densenet_cifar(config.depth, config.k, bc=config.bc, theta=config.theta)   # fail fast on a bad depth or theta
    array_module_for(config.device)          # a missing GPU is reported before anything is written
    if (Path(config.out) / "checkpoint.npz").exists():
        raise ValueError(f"{config.out} already holds a run; continue it with --resume, or choose another --out")
    return config


def resume_config(given):
    """The saved run's config and checkpoint; of the settings given, only RESUME_MAY_CHANGE may differ."""
    out = Path(given.get("out") or RunConfig(**given).default_out())
    checkpoint = load_checkpoint(out / "checkpoint.npz")
    saved = RunConfig.from_dict(checkpoint["config"])
    clashes = sorted(key for key, value in given.items()
                     if key not in RESUME_MAY_CHANGE and value != getattr(saved, key))
    if clashes:
        listing = ", ".join(f"--{key.replace('_', '-')} {given[key]} (saved: {getattr(saved, key)})" for key in clashes)
        raise ValueError(f"the run in {out} was made with other settings: {listing}. Leave these flags out to "
                         "continue it, or start a new run with another --out")
    changes = {key: value for key, value in given.items() if key in RESUME_MAY_CHANGE}
    config = replace(saved, **{**changes, "out": str(out)})      # the folder the checkpoint was found in
    array_module_for(config.device)
    return config, checkpoint


def run_eval_only(path, given):
    checkpoint = load_checkpoint(path)
    config = RunConfig.from_dict(checkpoint["config"])
    config = replace(config, **{key: value for key, value in given.items() if key in EVAL_MAY_CHANGE})
    data = load_data(replace(config, limit_train=1))
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    loss, accuracy = evaluate(model, data, config)
    print(f"{config.name} from {path}: test loss {loss:.4f}, accuracy {accuracy:.2%} "
          f"({len(data.test_labels)} images)")
    return loss, accuracy


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    given = {key: value for key, value in vars(args).items() if key not in ("resume", "eval_only")}
    config = None
    try:
        require_training_extras(plots=not args.eval_only)      # --eval-only draws no curves
        if args.eval_only:
            run_eval_only(args.eval_only, given)
            return 0
        if args.resume:
            config, checkpoint = resume_config(given)
        else:
            config, checkpoint = new_config(given), None
        Path(config.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(config.out) / "config.json", config.to_json())
        train(config, checkpoint)
    except (DataError, GPUUnavailableError, MissingExtraError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(e)
        return 130
    except NonFiniteLoss as e:
        checkpoint_path = Path(config.out) / "checkpoint.npz"
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
