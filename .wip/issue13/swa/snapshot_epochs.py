"""Keep a copy of the run's checkpoint at the end of every epoch from FIRST on (for weight averaging, if needed).

    python .wip/issue13/swa/snapshot_epochs.py FIRST &      # beside the training run, once per session

Polls checkpoint.npz (written atomically every epoch end) and copies it to /work/runs/snapshots/epochNNN.npz
whenever it holds a finished epoch (step 0) not yet copied. Exits when the run's last epoch is copied.

/work/runs does not survive a change of machine between sessions, so the average the fallback rule names
(epochs 241-280) is also kept in the repository, as it goes: MEAN_FILE holds the running mean of the parameters
of the epoch-end checkpoints from MEAN_FIRST on (swa.WeightAverage's state) and the last epoch added. An epoch is
added only if it is the one after that last epoch; a gap (epochs finished with no watcher running) is reported
and nothing more is added, so the file never holds a mean of other epochs than it says.
"""
import importlib.util
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from scratchnet.checkpoint import atomic_write, load_checkpoint
from scratchnet.train import saved_config
from scratchnet.trainer import build_model, load_weights

spec = importlib.util.spec_from_file_location("scratchnet.swa", Path(__file__).with_name("swa.py"))
swa = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swa)

RUN = Path("scratchnet/models/weights/densenet-bc-L40-k12-cifar10")
KEEP = Path("/work/runs/snapshots")
MEAN_FILE = Path(__file__).with_name("mean_from_epoch241.npz")
MEAN_FIRST = 241


def add_to_mean(snapshot, epoch):
    """Add the snapshot of `epoch` to MEAN_FILE's running mean, if it is the next epoch; say what was done."""
    checkpoint = load_checkpoint(snapshot)
    model = build_model(saved_config(checkpoint, snapshot))
    load_weights(model, checkpoint, snapshot)
    average = swa.WeightAverage(model)
    expected = MEAN_FIRST
    if MEAN_FILE.exists():
        with np.load(MEAN_FILE) as saved:
            state = {key: saved[key] for key in saved.files}
        average.load_state_dict(state)
        expected = int(state["last_epoch"]) + 1
    if epoch != expected:
        return f"NOT added epoch {epoch} to {MEAN_FILE.name}: it expects epoch {expected} next (a gap?)"
    average.update(model)
    arrays = {name: np.asarray(value) for name, value in average.state_dict().items()}
    arrays["last_epoch"] = np.asarray(epoch)
    atomic_write(MEAN_FILE, lambda f: np.savez(f, **arrays))
    return f"added epoch {epoch} to {MEAN_FILE.name} (mean of epochs {MEAN_FIRST}-{epoch}, n={average.n})"


def main(first):
    KEEP.mkdir(parents=True, exist_ok=True)
    last_mtime = None
    while True:
        path = RUN / "checkpoint.npz"
        try:
            mtime = path.stat().st_mtime
            if mtime != last_mtime:
                last_mtime = mtime
                with np.load(path) as saved:
                    epoch, step = int(saved["progress/epoch"]), int(saved["progress/step"])
                    total = 280                      # config.json "epochs"
                target = KEEP / f"epoch{epoch:03d}.npz"
                if step == 0 and epoch >= first and not target.exists():
                    shutil.copyfile(path, target.with_suffix(".part"))
                    target.with_suffix(".part").rename(target)
                    print(f"kept {target}", flush=True)
                    if epoch >= MEAN_FIRST:
                        print(add_to_mean(target, epoch), flush=True)
                if step == 0 and epoch >= total:
                    return
        except (OSError, KeyError, ValueError) as e:     # mid-rename or resumed run not started yet
            print(f"skipped a poll: {e}", flush=True)
        time.sleep(30)


if __name__ == "__main__":
    main(int(sys.argv[1]))
