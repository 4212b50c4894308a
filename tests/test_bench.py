"""The benchmark runs (on a tiny configuration: this is not a timed test), and only it imports torch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchnet import backend
from scratchnet import bench

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--depth", "10", "--k", "4", "--batch", "4", "--repeats", "1", "--steps", "1"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# Python run with `import torch` failing, as on a machine without PyTorch.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; "


def test_speed_benchmark_reports_both_frameworks(capsys, torch):
    results = bench.main(TINY + ["--mode", "efficient", "--mode", "textbook"])
    printed = capsys.readouterr().out
    assert results == 0
    for name in ("scratchnet (efficient)", "scratchnet (textbook)", "PyTorch", "images/s"):
        assert name in printed


def test_ablation_times_every_step_of_the_way(capsys, torch):
    bench.main(TINY + ["--ablation"])
    printed = capsys.readouterr().out
    for name, _ in bench.ABLATION:
        assert name in printed


@pytest.mark.parametrize("mode, where", [("textbook", "scratchnet/ops/conv.py"), ("efficient", "scratchnet/fast/")])
def test_profile_names_the_files_where_the_time_goes(capsys, mode, where):
    bench.main(TINY + ["--profile", "--mode", mode])
    printed = capsys.readouterr().out
    assert "Python-level calls" in printed
    shares = [float(line.rsplit(None, 1)[1].rstrip("%")) for line in printed.splitlines()
              if line.startswith("  scratchnet/") or line.startswith("  NumPy, CuPy")]
    assert f"  {where}" in printed and abs(sum(shares) - 100) < 1


def test_peak_memory_is_measured_in_a_fresh_process(tmp_path, torch):
    command = [sys.executable, "-m", "scratchnet.bench", "--memory", "--depths", "10", "16", "--plot",
               str(tmp_path / "memory.png"), *TINY]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 10 |") or line.startswith("| 16 |")]
    assert len(rows) == 2
    assert (tmp_path / "memory.png").read_bytes()[:4] == b"\x89PNG"
    single = subprocess.run([sys.executable, "-m", "scratchnet.bench", "--peak-memory-of", "scratchnet:efficient",
                             *TINY], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert json.loads(single.stdout.strip().splitlines()[-1])["peak_mib"] >= 0


def gpu_benchmark_possible():
    try:
        import torch
    except ImportError:
        return False
    return backend.gpu_available() and torch.cuda.is_available()


@pytest.mark.skipif("gpu_benchmark_possible()", reason="a GPU is here: the benchmark would run")
def test_a_gpu_benchmark_without_a_usable_gpu_says_what_is_missing(capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(TINY + ["--device", "gpu"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "CuPy" in err or "PyTorch" in err
    assert "Traceback" not in err


def test_without_torch_the_benchmark_says_what_to_install_and_profile_still_runs():
    run = [sys.executable, "-c", WITHOUT_TORCH + "import runpy; sys.argv = ['bench', *sys.argv[1:]]; "
           "runpy.run_module('scratchnet.bench', run_name='__main__')"]
    timed = subprocess.run(run + TINY, capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert timed.returncode == 2 and "Traceback" not in timed.stderr
    assert "PyTorch is not installed" in timed.stderr and "pip install 'scratchnet[bench]'" in timed.stderr
    profiled = subprocess.run(run + TINY + ["--profile"], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert profiled.returncode == 0, profiled.stderr
    assert "Python-level calls" in profiled.stdout
    if not backend.gpu_available():          # --profile on a GPU asks for CuPy, never for PyTorch
        on_gpu = subprocess.run(run + TINY + ["--profile", "--device", "gpu"], capture_output=True, text=True,
                                cwd=ROOT, env=ENV)
        assert on_gpu.returncode == 2 and "CuPy" in on_gpu.stderr and "PyTorch" not in on_gpu.stderr


def test_the_old_mode_name_is_explained(capsys):
    with pytest.raises(SystemExit):
        bench.main(TINY + ["--mode", "plain"])
    assert "--mode textbook" in capsys.readouterr().err


def test_the_library_and_the_training_command_line_never_import_torch(tmp_path):
    code = ("import sys\n"
            "import scratchnet, scratchnet.ops, scratchnet.fast, scratchnet.nn, scratchnet.models, scratchnet.optim\n"
            "import scratchnet.data, scratchnet.gradcheck, scratchnet.train, scratchnet.trainer, scratchnet.bench\n"
            "from scratchnet.train import main\n"
            "main(['--dataset', 'synthetic', '--depth', '10', '--k', '4', '--epochs', '1', '--limit-train', '16',\n"
            "      '--limit-test', '8', '--batch-size', '8', '--out', sys.argv[1]])\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                            cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoint.npz").is_file()          # it did train
    assert result.stdout.strip().splitlines()[-1] == "[]"
