#!/usr/bin/env bash
# Every GPU figure in docs/, in one run: the test suite with CuPy, the GPU benchmarks, peak GPU memory,
# per-op parity on CuPy, lecture 6 executed on the GPU, and a full-data CIFAR-10 training run.
#
#   OUT=gpu-results CIFAR_JPEG=path/to/cifar10-jpeg.tar.gz bash docs/gpu_checks.sh
#
# Logs, plots and the executed notebook go to WORK (default OUT/work), all of them also packed into
# OUT/results.tgz after every stage.
# Run from the repository root on a machine with an NVIDIA GPU, CuPy, PyTorch (CUDA), pytest, matplotlib and
# Pillow. CIFAR_JPEG is ../shared/cifar10/cifar10-jpeg.tar.gz (with make_cifar10.py beside it); without it the
# training stage is skipped. Each stage has a time limit and the whole run a deadline (DEADLINE_S), so a
# machine lent for a few minutes still returns every stage that finished. Checks that time nothing run side
# by side; timings run alone.
set -u
OUT=${OUT:-gpu-results}
WORK=${WORK:-$OUT/work}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD" MPLBACKEND=Agg PYTHONUNBUFFERED=1
DEADLINE=$(( $(date +%s) + ${DEADLINE_S:-3600} ))

stage() {   # stage NAME LIMIT_S COMMAND...: run it with stdout+stderr in work/NAME.log, cut at LIMIT_S or the deadline
    local name=$1 limit=$2 start left rc
    shift 2
    start=$(date +%s)
    left=$(( DEADLINE - start ))
    (( left < limit )) && limit=$left
    if (( limit < 10 )); then
        echo "$name: skipped, the deadline has passed" | tee -a "$WORK/stages.txt"
        return
    fi
    timeout -s INT -k 15 "$limit" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    echo "$name: rc=$rc, $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$WORK/stages.txt"
    pack "$name"
}

pack() {    # OUT/results.tgz <- WORK, replaced whole (stages that run side by side pack at different times)
    tar czf "$OUT/partial-$1.tgz" -C "$WORK" --exclude='*.npz' . && mv -f "$OUT/partial-$1.tgz" "$OUT/results.tgz"
}

{ nvidia-smi; python3 -c "import sys, numpy, cupy, torch; print(sys.version); print('numpy', numpy.__version__, \
'cupy', cupy.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())"; nproc; } > "$WORK/machine.txt" 2>&1

# 1. Side by side, none of them timed: the whole suite (CuPy cases included, in parallel workers where
#    pytest-xdist is installed); each op's worst error against PyTorch with scratchnet on CuPy; peak GPU memory
#    against depth (each framework's own allocator, in a process of its own); decoding the real CIFAR-10 copy.
if [[ -n "${CIFAR_JPEG:-}" ]]; then
    (python3 "$(dirname "$CIFAR_JPEG")/make_cifar10.py" /tmp/cifar10 > "$WORK/decode.log" 2>&1) &
fi
stage parity 180 python3 tests/parity_report.py --device gpu &
stage memory 180 python3 -m scratchnet.bench --device gpu --memory --depths 40 100 190 --plot "$WORK/memory-gpu.png" &
workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
stage tests 200 python3 -m pytest -q -rs -p no:cacheprovider $workers --durations=15
wait

# 2. Speed, alone on the machine: a training step of scratchnet on CuPy against PyTorch on CUDA (cuDNN).
stage bench-L40 100 python3 -m scratchnet.bench --device gpu --mode efficient --mode textbook
stage bench-L100 120 python3 -m scratchnet.bench --device gpu --depth 100 --mode efficient --mode textbook
stage bench-L40-b256 60 python3 -m scratchnet.bench --device gpu --batch 256 --mode efficient --mode textbook
stage bench-L100-b256 80 python3 -m scratchnet.bench --device gpu --depth 100 --batch 256 --mode efficient --mode textbook
stage ablation-L40 100 python3 -m scratchnet.bench --device gpu --ablation
stage profile-L40 60 python3 -m scratchnet.bench --device gpu --profile --mode efficient --mode textbook --repeats 2 --steps 2

# 3. Lecture 6, full form, executed top to bottom cell by cell (GPU machines may have no Jupyter): outputs,
#    figures and errors are written into a copy of the notebook, as Jupyter would.
stage lecture6 120 python3 - notebooks/06_same_code_on_the_gpu.ipynb "$WORK/06_same_code_on_the_gpu.ipynb" <<'PY'
import ast, base64, contextlib, io, json, os, sys, traceback
import matplotlib.pyplot as plt

source, target = sys.argv[1], sys.argv[2]
os.chdir(os.path.dirname(os.path.abspath(source)))
notebook = json.load(open(os.path.basename(source)))
namespace, count = {"__name__": "__main__"}, 0
for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
        continue
    count += 1
    code = "".join(line for line in cell["source"] if not line.lstrip().startswith("%"))
    outputs, stream = [], io.StringIO()
    try:
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            exec(compile(tree, f"<cell {count}>", "exec"), namespace)
            value = eval(compile(ast.Expression(last.value), f"<cell {count}>", "eval"), namespace) if last else None
        error = None
    except Exception as exc:
        value, error = None, exc
    if stream.getvalue():
        outputs.append({"output_type": "stream", "name": "stdout", "text": stream.getvalue().splitlines(True)})
    for number in plt.get_fignums():
        png = io.BytesIO()
        plt.figure(number).savefig(png, format="png", bbox_inches="tight")
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": base64.b64encode(png.getvalue()).decode(), "text/plain": ["<Figure>"]}})
    plt.close("all")
    if value is not None:
        outputs.append({"output_type": "execute_result", "execution_count": count, "metadata": {},
                        "data": {"text/plain": repr(value).splitlines(True)}})
    if error is not None:
        outputs.append({"output_type": "error", "ename": type(error).__name__, "evalue": str(error),
                        "traceback": traceback.format_exception(error)})
    cell["outputs"], cell["execution_count"] = outputs, count
    print(f"cell {count}: {'error' if error else 'ok'}", flush=True)
    json.dump(notebook, open(target, "w"), indent=1)
    if error is not None:
        sys.exit(1)
PY

# 4. A full-data training run of the default model, 4 epochs (cut by its limit, it saves a checkpoint and stops).
if [[ -d /tmp/cifar10/cifar-10-batches-py ]]; then
    stage train 300 python3 -m scratchnet.train --device gpu --epochs 4 --data-dir /tmp/cifar10 \
        --out "$WORK/train-gpu"
fi
cat "$WORK/stages.txt"
