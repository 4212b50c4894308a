"""Average the weights of the run's epoch-end snapshots, remake the batch-norm statistics, and evaluate.

    python .wip/issue13/swa/average_snapshots.py 260 280 --data-dir /tmp/cifar10 [--save /tmp/averaged.npz]
    python .wip/issue13/swa/average_snapshots.py 241 280 --mean .wip/issue13/swa/mean_from_epoch241.npz \
        --last-checkpoint scratchnet/models/weights/densenet-bc-L40-k12-cifar10/checkpoint.npz --data-dir ...

Snapshots are /work/runs/snapshots/epochNNN.npz (snapshot_epochs.py). Prints the last snapshot's own test
accuracy and the averaged model's, whose batch-norm statistics come from one pass over the training images
with the run's augmentation (update_bn, as torch.optim.swa_utils). --save writes the averaged model into a copy
of the last snapshot (a checkpoint tools/export_pretrained.py takes). With --mean, the average is the running
mean snapshot_epochs.py kept in the repository (it must hold exactly epochs FIRST-LAST), and --last-checkpoint
names epoch LAST's checkpoint (the snapshots themselves may be gone with an earlier session's machine).
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from scratchnet.checkpoint import atomic_write, load_checkpoint
from scratchnet.train import saved_config
from scratchnet.trainer import build_model, evaluate, load_data, load_weights, swa_batches

from scratchnet import swa

SNAPSHOTS = Path("/work/runs/snapshots")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=int)
    parser.add_argument("last", type=int)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--limit-train", type=int, default=None, help="update_bn over the first N images only")
    parser.add_argument("--limit-test", type=int, default=None)
    parser.add_argument("--save", default=None)
    parser.add_argument("--mean", default=None, help="a running mean kept by snapshot_epochs.py")
    parser.add_argument("--last-checkpoint", default=None, help="with --mean: epoch LAST's checkpoint")
    args = parser.parse_args(argv)
    if args.mean:
        if not args.last_checkpoint:
            sys.exit("--mean needs --last-checkpoint (epoch LAST's checkpoint)")
        paths = [Path(args.last_checkpoint)]
    else:
        paths = [SNAPSHOTS / f"epoch{e:03d}.npz" for e in range(args.first, args.last + 1)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"missing snapshots: {', '.join(missing)}")
    last = load_checkpoint(paths[-1])
    if args.mean and (int(last["progress"]["epoch"]), int(last["progress"]["step"])) != (args.last, 0):
        sys.exit(f"{paths[-1]} is not the checkpoint of epoch {args.last}'s end")
    config = replace(saved_config(last, paths[-1]), data_dir=args.data_dir, limit_train=args.limit_train,
                     limit_test=args.limit_test)
    data = load_data(config)
    model = build_model(config)
    load_weights(model, last, paths[-1])
    alone = evaluate(model, data, config)
    print(f"epoch {args.last} alone: test accuracy {alone.accuracy:.2%}, loss {alone.loss:.4f}", flush=True)
    average = swa.WeightAverage(model)
    if args.mean:
        with np.load(args.mean) as saved:
            state = {key: saved[key] for key in saved.files}
        n_expected = args.last - args.first + 1
        if int(state["last_epoch"]) != args.last or int(state["n_averaged"]) != n_expected:
            sys.exit(f"{args.mean} holds {int(state['n_averaged'])} epochs up to {int(state['last_epoch'])}, "
                     f"not the {n_expected} epochs {args.first}-{args.last}")
        average.load_state_dict(state)
    else:
        for path in paths:
            load_weights(model, load_checkpoint(path), path)
            average.update(model)
    average.copy_to(model)
    batches = swa.update_bn(model, swa_batches(data, config, np.random.default_rng(0)))   # the generator of 2026-12-06
    averaged = evaluate(model, data, config)
    print(f"mean of epochs {args.first}-{args.last} ({average.n} snapshots, batch-norm statistics from {batches} "
          f"training batches): test accuracy {averaged.accuracy:.2%}, loss {averaged.loss:.4f}", flush=True)
    if args.save:
        state = {f"model/{name}": np.asarray(value) for name, value in model.state_dict().items()}
        with np.load(paths[-1]) as saved:
            arrays = {key: saved[key] for key in saved.files}
        arrays.update(state)
        atomic_write(args.save, lambda f: np.savez(f, **arrays))
        print(f"wrote {args.save}")


if __name__ == "__main__":
    main()
