#!/bin/bash
# The mechanical part of finishing issue 13's run, from the repository root, in the venv, data in /tmp/cifar10.
set -euo pipefail
F=scratchnet/models/weights/densenet-bc-L40-k12-cifar10
python - <<'PY'
import json; run = [json.loads(l) for l in open("scratchnet/models/weights/densenet-bc-L40-k12-cifar10/metrics.jsonl")]
assert len(run) == 40, f"the run has {len(run)} of 40 epochs"
PY
python tools/export_pretrained.py $F/checkpoint.npz
python .wip/issue13/preview07.py $F/checkpoint.npz > /tmp/preview_final.txt 2>&1
(cd notebooks && SCRATCHNET_DATA_DIR=/tmp/cifar10 python ../.wip/issue13/run_nb.py 05_densenet_bc_on_cifar10.ipynb 05_densenet_bc_on_cifar10.ipynb > /tmp/nb05.log 2>&1; \
 SCRATCHNET_DATA_DIR=/tmp/cifar10 python ../.wip/issue13/run_nb.py 07_what_the_network_learned.ipynb 07_what_the_network_learned.ipynb > /tmp/nb07.log 2>&1) &
python -m scratchnet.train --eval-only pretrained --data-dir /tmp/cifar10 > /tmp/eval.txt 2>/dev/null
cat /tmp/eval.txt
python .wip/issue13/finalize_text.py /tmp/eval.txt
git rm -q $F/checkpoint.npz $F/TRAINING.md
python .wip/issue13/run_numbers.py | head -2
wait
tail -1 /tmp/nb05.log /tmp/nb07.log
