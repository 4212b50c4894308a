#!/bin/bash
# Finishing issue 13's run, from the repository root, in the venv, with the data in /tmp/cifar10.
#   bash .wip/issue13/finish.sh export     check the rule (swa.json >= 90 %), export swa.npz, evaluate, preview lecture 7
#   bash .wip/issue13/finish.sh text       write the card/README/results blocks, drop checkpoint.npz, swa.npz, TRAINING.md
#   (then put the final numbers into the ⟨⟩ parts: lecture 7 cells 23-24, lecture 5's SHIPPED_RUN_TEXT cell)
#   (and README's lecture entries 5 and 7 from readme_lectures.md; lecture 5's Summary has a ⟨FINAL⟩)
#   bash .wip/issue13/finish.sh notebooks  run lectures 5 and 7 in full form, one after the other
set -euo pipefail
F=scratchnet/models/weights/densenet-bc-L40-k12-cifar10
case "$1" in
export)
    python -c "
import json; run = [json.loads(l) for l in open('$F/metrics.jsonl')]
epochs = json.load(open('$F/config.json'))['epochs']
assert len(run) == epochs == 400, f'the run has {len(run)} of {epochs} epochs'
swa = json.load(open('$F/swa.json'))
assert swa['epochs'] == [281, 400] and swa['n_averaged'] == 120, swa
assert swa['test_acc'] >= 0.90, f'the average classifies {swa[\"test_acc\"]:.2%}: below 90 %, nothing ships (the rule)'"
    python tools/export_pretrained.py $F/swa.npz
    python .wip/issue13/preview07.py $F/swa.npz > /tmp/preview_final.txt 2>&1
    python -m scratchnet.train --eval-only pretrained --data-dir /tmp/cifar10 > /tmp/eval.txt 2> /tmp/eval.log
    cat /tmp/eval.txt
    python .wip/issue13/run_numbers.py
    echo "now: fill the ⟨⟩ parts of MODEL_CARD.tmpl.md and results_block.md, then: finish.sh text" ;;
text)
    python .wip/issue13/finalize_text.py /tmp/eval.txt
    git rm -qf $F/checkpoint.npz $F/TRAINING.md $F/swa.npz
    rm -f $F/best.npz
    git add $F/weights.npz $F/MODEL_CARD.md $F/metrics.jsonl $F/curves.png $F/config.json $F/swa.json ;;
notebooks)
    if grep -l "⟨" notebooks/05_densenet_bc_on_cifar10.ipynb notebooks/07_what_the_network_learned.ipynb \
            README.md docs/results.md $F/MODEL_CARD.md; then
        echo "unfilled ⟨⟩ parts left in the files above"; exit 1
    fi
    cd notebooks
    for nb in 05_densenet_bc_on_cifar10.ipynb 07_what_the_network_learned.ipynb; do
        SCRATCHNET_DATA_DIR=/tmp/cifar10 python ../.wip/issue13/run_nb.py $nb $nb 2>&1 | tail -1
    done ;;
esac
