"""The benchmark runs (on a tiny configuration: this is not a timed test)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchnet import backend
from scratchnet import bench

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--depth", "10", "--k", "4", "--batch", "4", "--repeats", "1", "--steps", "1"]


def test_speed_benchmark_reports_both_frameworks(capsys):
    results = bench.main(TINY + ["--mode", "efficient", "--mode", "plain"])
    printed = capsys.readouterr().out
    assert results == 0
    for name in ("scratchnet (efficient)", "scratchnet (plain)", "PyTorch", "images/s"):
        assert name in printed


def test_ablation_times_every_step_of_the_way(capsys):
    bench.main(TINY + ["--ablation"])
    printed = capsys.readouterr().out
    for name, _ in bench.ABLATION:
        assert name in printed


def test_profile_names_the_ops_where_the_time_goes(capsys):
    bench.main(TINY + ["--profile", "--mode", "plain"])
    printed = capsys.readouterr().out
    assert "Python-level calls" in printed
    shares = [float(line.rsplit(None, 1)[1].rstrip("%")) for line in printed.splitlines()
              if line.startswith("  scratchnet/") or line.startswith("  NumPy, CuPy")]
    assert "  scratchnet/ops/conv.py" in printed and abs(sum(shares) - 100) < 1


def test_peak_memory_is_measured_in_a_fresh_process(tmp_path):
    command = [sys.executable, "-m", "scratchnet.bench", "--memory", "--depths", "10", "16", "--plot",
               str(tmp_path / "memory.png"), *TINY]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 10 |") or line.startswith("| 16 |")]
    assert len(rows) == 2
    assert (tmp_path / "memory.png").read_bytes()[:4] == b"\x89PNG"
    single = subprocess.run([sys.executable, "-m", "scratchnet.bench", "--peak-memory-of", "scratchnet:efficient",
                             *TINY], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(single.stdout.strip().splitlines()[-1])["peak_mib"] >= 0


def gpu_benchmark_possible():
    import torch
    return backend.gpu_available() and torch.cuda.is_available()


@pytest.mark.skipif("gpu_benchmark_possible()", reason="a GPU is here: the benchmark would run")
def test_a_gpu_benchmark_without_a_usable_gpu_says_what_is_missing(capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(TINY + ["--device", "gpu"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "CuPy" in err or "PyTorch" in err
    assert "Traceback" not in err
