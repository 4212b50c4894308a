"""What the tests of ``python -m scratchnet.train`` share: a tiny run's flags and its metrics file; and what the
tests of tools/ share: importing a tool."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "images_per_s")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def tiny_run(data_dir, out, *extra):
    """DenseNet-BC (L=10, k=4) for 2 epochs of 7 steps on the 100 + 20 images of the ``cifar_dir`` fixture."""
    return ["--data-dir", str(data_dir), "--depth", "10", "--k", "4", "--batch-size", "16", "--epochs", "2",
            "--out", str(out), *extra]


def read_metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def load_tool(name):
    """tools/NAME.py imported as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_timing(metrics):
    return [{key: value for key, value in m.items() if key not in TIMING} for m in metrics]


def start_training(argv):
    """``python -m scratchnet.train argv`` as a real process, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "scratchnet.train", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
