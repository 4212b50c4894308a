"""Keep a copy of the run's checkpoint at the end of every epoch from FIRST on (for weight averaging, if needed).

    python .wip/issue13/swa/snapshot_epochs.py FIRST &      # beside the training run, once per session

Polls checkpoint.npz (written atomically every epoch end) and copies it to /work/runs/snapshots/epochNNN.npz
whenever it holds a finished epoch (step 0) not yet copied. Exits when the run's last epoch is copied.
"""
import shutil
import sys
import time
from pathlib import Path

import numpy as np

RUN = Path("scratchnet/models/weights/densenet-bc-L40-k12-cifar10")
KEEP = Path("/work/runs/snapshots")


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
                if step == 0 and epoch >= total:
                    return
        except (OSError, KeyError, ValueError) as e:     # mid-rename or resumed run not started yet
            print(f"skipped a poll: {e}", flush=True)
        time.sleep(30)


if __name__ == "__main__":
    main(int(sys.argv[1]))
