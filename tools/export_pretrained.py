"""Turn a finished training run into the weights file that ships with scratchnet.

    python tools/export_pretrained.py scratchnet/models/weights/densenet-bc-L40-k12-cifar10/checkpoint.npz

writes ``weights.npz`` beside the run's model card: the run's config and the model's state dict (float32, as
trained), no optimiser state. It refuses a run that has not finished all its epochs (``--unfinished`` allows it,
for trying the pipeline out), holds non-finite weights, or was trained with other settings than the shipped
network's (``scratchnet.models.PRETRAINED``). The final epoch's weights are shipped, not best.npz's: choosing the
epoch by its test accuracy would make the reported test accuracy optimistic. A run that averaged its weights
(``--swa-start``) ships its average, ``swa.npz``; its ``checkpoint.npz`` (the last epoch) is refused.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from scratchnet.checkpoint import FORMAT_VERSION, atomic_write, load_checkpoint, non_finite_entries
from scratchnet.models import PRETRAINED, PretrainedError
from scratchnet.models.pretrained import WEIGHTS_FILE, pretrained_name
from scratchnet.trainer import RunConfig


def export(checkpoint_path, name, unfinished=False, out=None):
    """Write ``name``'s weights file from the checkpoint; returns its path. ValueError if it must not ship."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = RunConfig.from_dict(checkpoint["config"])
    epochs_done = int(checkpoint["progress"].get("epoch", 0))
    if epochs_done < config.epochs and not unfinished:
        raise ValueError(f"{checkpoint_path} has {epochs_done} of its {config.epochs} epochs done; finish the run "
                         "first (or pass --unfinished to try the export out)")
    if config.swa_start is not None and checkpoint["swa"]:
        raise ValueError(f"{checkpoint_path} holds the last epoch of a run that averaged its weights (--swa-start "
                         f"{config.swa_start}); the run's result is the average: export swa.npz beside it")
    trained = {"depth": config.depth, "k": config.k, "bc": config.bc, "theta": config.theta, "dropout": config.dropout,
               "num_classes": 100 if config.dataset == "cifar100" else 10, "preactivation": config.preactivation}
    try:
        matched = pretrained_name(trained)          # theta None: the default compression, as densenet_cifar's
    except PretrainedError:
        matched = None
    if config.arch != "densenet" or config.dataset != "cifar10" or matched != name:
        raise ValueError(f"{checkpoint_path} holds {config.name} on {config.dataset}, not {name}")
    bad = non_finite_entries(checkpoint["model"])
    if bad:
        raise ValueError(f"{checkpoint_path} holds non-finite weights ({', '.join(bad)})")
    saved = {**config.to_dict(), "data_dir": RunConfig.data_dir, "out": None}   # nothing of this machine's paths
    arrays = {"format_version": np.array(FORMAT_VERSION), "config": np.array(json.dumps(saved)),
              **{f"model/{key}": value for key, value in checkpoint["model"].items()}}
    path = Path(out) if out else Path(checkpoint_path).parent / WEIGHTS_FILE
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="the finished run's checkpoint.npz")
    p.add_argument("--name", default=next(iter(PRETRAINED)), choices=sorted(PRETRAINED))
    p.add_argument("--out", help="where to write (default: weights.npz beside the checkpoint)")
    p.add_argument("--unfinished", action="store_true", help="export a run that has not finished its epochs")
    args = p.parse_args(argv)
    try:
        path = export(args.checkpoint, args.name, args.unfinished, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
