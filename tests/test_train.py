"""python -m scratchnet.train on a small synthetic CIFAR: files written, resume, Ctrl-C, NaN, bad flags."""
import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cifar_fixtures import publish
from run_helpers import ENV, ROOT, read_metrics, start_training, tiny_run, without_timing
from scratchnet import backend
from scratchnet import train as train_module
from scratchnet import trainer
from scratchnet.checkpoint import generator_state, load_checkpoint, non_finite_entries, restore_generator



@pytest.fixture
def data_dir(cifar_dir):
    return cifar_dir


def test_help_explains_the_flags_and_their_defaults():
    result = subprocess.run([sys.executable, "-m", "scratchnet.train", "--help"], capture_output=True, text=True,
                            cwd=ROOT, env=ENV)
    assert result.returncode == 0
    for flag in ("--k", "--depth", "--no-bc", "--theta", "--dropout", "--schedule", "--resume", "--limit-train",
                 "--eval-only", "--no-augment", "--device", "--seed", "--data-dir", "--out", "--no-memory-efficient"):
        assert flag in result.stdout
    help_text = " ".join(result.stdout.split())
    for default in ("(default: 40)", "(default: 12)", "(default: 300)", "(default: 64)", "(default: 0.1)",
                    "(default: 0.9)", "(default: 0.0001)", "(default: step)", "50% and 75%"):
        assert default in help_text


def test_given_flags_are_told_from_defaults_without_argparse_internals():
    args = train_module.build_parser().parse_args(["--k", "12", "--no-bc", "--resume"])
    assert {key: value for key, value in vars(args).items() if key not in ("resume", "eval_only")} == {
        "k": 12, "bc": False}                       # --k 12 is the default, but it was given
    assert args.resume and args.eval_only is None


@pytest.mark.parametrize("missing, named", [("tqdm", "tqdm"), ("matplotlib", "matplotlib")])
def test_missing_training_extras_are_reported_when_the_command_runs_not_at_import(tmp_path, missing, named):
    code = (f"import sys; sys.modules[{missing!r}] = None\n"
            "import scratchnet.train\n"            # importing must work (no sys.exit at import)
            "print('imported')\n"
            "sys.exit(scratchnet.train.main(['--dataset', 'synthetic', '--out', sys.argv[1]]))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                            cwd=ROOT, env=ENV)
    assert result.stdout.startswith("imported") and result.returncode == 2
    assert f"{named}, which is not installed" in result.stderr and "pip install 'scratchnet[train]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_a_run_writes_metrics_curves_config_and_a_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(data_dir, out)) == 0
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    for m in metrics:
        assert {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "lr_first", "seconds",
                "images_per_s"} <= set(m)
        assert 0 <= m["test_acc"] <= 1 and m["images_per_s"] > 0 and np.isfinite(m["train_loss"])
    # The step schedule by step: 14 steps, /10 from step 7 (50%) and again from step 10 (75%).
    assert [value for m in metrics for value in (m["lr_first"], m["lr"])] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["depth"] == 10 and config["k"] == 4 and config["bc"] and config["augment"]
    checkpoint = load_checkpoint(out / "checkpoint.npz")        # loads with allow_pickle=False
    assert int(checkpoint["progress"]["epoch"]) == 2
    assert "features.denseblock1.denselayer1.norm1.running_var" in checkpoint["model"]
    assert any(key.startswith("momentum_buffer.") for key in checkpoint["optimizer"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temporary files left


def interrupt_at_training_step(monkeypatch, step):
    """Send ourselves a real SIGINT while training step ``step`` (counting from 1) is being prepared."""
    calls = {"n": 0}
    original = trainer.prepare_batch

    def prepare_batch(images, labels, data, device, augment_rng=None, *rest):
        calls["n"] += augment_rng is not None
        if augment_rng is not None and calls["n"] == step:
            signal.raise_signal(signal.SIGINT)
        return original(images, labels, data, device, augment_rng, *rest)

    monkeypatch.setattr(trainer, "prepare_batch", prepare_batch)


def terminate_between_epochs(monkeypatch):
    """Send ourselves a real SIGTERM after epoch 1's evaluation, while its curves are drawn (before its save)."""
    original = trainer.plot_curves

    def plot_curves(metrics, path, title=""):
        if len(metrics) == 1:
            signal.raise_signal(signal.SIGTERM)
        return original(metrics, path, title)

    monkeypatch.setattr(trainer, "plot_curves", plot_curves)


# 7 steps an epoch: Ctrl-C inside epoch 1, inside epoch 2; SIGTERM between them (the next epoch's order is drawn
# and saved before the loop stops, and the resumed run must not draw another).
@pytest.mark.parametrize("stop_at_step", [3, 9, 7])
def test_an_interrupted_run_resumes_bit_identically(data_dir, tmp_path, monkeypatch, stop_at_step, capsys):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    extra = ("--dropout", "0.1")                        # dropout masks must continue identically too
    assert train_module.main(tiny_run(data_dir, straight, *extra)) == 0

    with monkeypatch.context() as patch:
        if stop_at_step % 7:
            interrupt_at_training_step(patch, stop_at_step)
            assert train_module.main(tiny_run(data_dir, interrupted, *extra)) == 128 + signal.SIGINT
        else:
            terminate_between_epochs(patch)
            assert train_module.main(tiny_run(data_dir, interrupted, *extra)) == 128 + signal.SIGTERM
    assert "checkpoint saved" in capsys.readouterr().out
    saved = load_checkpoint(interrupted / "checkpoint.npz")["progress"]
    assert int(saved["epoch"]) * 7 + int(saved["step"]) == stop_at_step
    assert train_module.main(["--resume", "--out", str(interrupted), "--data-dir", str(data_dir)]) == 0

    assert without_timing(read_metrics(interrupted)) == without_timing(read_metrics(straight))
    a, b = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(interrupted / "checkpoint.npz")
    for section in ("model", "optimizer"):
        assert a[section].keys() == b[section].keys()
        for key in a[section]:
            assert np.array_equal(a[section][key], b[section][key]), key


@pytest.mark.parametrize("signum, announced", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_in_a_real_process_saves_and_exits_cleanly(data_dir, tmp_path, signum, announced):
    """SIGTERM is what timeout, docker stop, systemd and batch schedulers send: it is handled as Ctrl-C is."""
    out = tmp_path / "run"
    process = start_training([*tiny_run(data_dir, out), "--epochs", "200"])
    deadline = time.time() + 120
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:   # wait for epoch 1 to finish
        time.sleep(0.1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert f"{announced}: finishing this step, then saving a checkpoint" in stdout
    assert "Traceback" not in stderr and "checkpoint saved" in stdout
    assert f"python -m scratchnet.train --resume --out {out}" in stdout
    progress = load_checkpoint(out / "checkpoint.npz")["progress"]
    assert 1 <= int(progress["epoch"]) < 200
    saved = load_checkpoint(out / "checkpoint.npz")
    assert not non_finite_entries(saved["model"]) and not non_finite_entries(saved["optimizer"])


def test_a_nan_loss_stops_and_names_the_step_and_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = {"n": 0}
    original = trainer.prepare_batch

    def poisoned(images, labels, data, device, augment_rng=None, *rest):
        x, y = original(images, labels, data, device, augment_rng, *rest)
        calls["n"] += augment_rng is not None
        if calls["n"] == 10:                      # epoch 2, step 3
            x = x * np.nan
        return x, y

    monkeypatch.setattr(trainer, "prepare_batch", poisoned)
    assert train_module.main(tiny_run(data_dir, out)) == 1
    message = capsys.readouterr().err
    assert "the training loss became nan at epoch 2, step 3 of 7" in message
    assert f"The last good checkpoint is {out / 'checkpoint.npz'} (after epoch 1;" in message
    assert f"python -m scratchnet.train --resume --out {out} --lr 0.01" in message
    assert int(load_checkpoint(out / "checkpoint.npz")["progress"]["epoch"]) == 1   # not overwritten


def test_eval_only_reports_the_checkpoints_test_accuracy(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(data_dir, out)) == 0
    capsys.readouterr()
    assert train_module.main(["--eval-only", str(out / "checkpoint.npz"), "--data-dir", str(data_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {read_metrics(out)[-1]['test_acc']:.2%}" in printed


@pytest.mark.parametrize("argv, message", [
    (["--depth", "41"], "depth 41 does not fit DenseNet-BC"),
    (["--no-bc", "--depth", "39"], "the nearest valid depths are 37 or 40"),
    (["--limit-train", "0"], "--limit-train must be a whole number >= 1"),
])
def test_bad_flags_are_reported_without_a_traceback(data_dir, tmp_path, argv, message, capsys):
    assert train_module.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "x"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_runs_are_not_overwritten_and_resume_needs_a_checkpoint(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(["--resume", "--out", str(out)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert train_module.main(tiny_run(data_dir, out, "--epochs", "1")) == 0
    assert train_module.main(tiny_run(data_dir, out)) == 2
    assert "already holds a run (checkpoint.npz, best.npz); continue it with --resume" in capsys.readouterr().err
    assert train_module.main(["--resume", "--out", str(out), "--k", "6"]) == 2
    assert "--k 6 (saved: 4)" in capsys.readouterr().err
    # A flag given with its default value is still a flag given: the saved run has k = 4, not the default 12.
    assert train_module.main(["--resume", "--out", str(out), "--k", "12", "--depth", "10"]) == 2
    err = capsys.readouterr().err
    assert "--k 12 (saved: 4)" in err and "--depth" not in err


def test_a_checkpoint_of_the_previous_format_resumes_and_warns_about_dropout_masks(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(data_dir, out, "--epochs", "1", "--dropout", "0.1")) == 0
    with np.load(out / "checkpoint.npz") as archive:                  # as the code before format 2 wrote it
        arrays = {key: archive[key] for key in archive.files}
    arrays["format_version"] = np.array(1)
    np.savez(out / "checkpoint.npz", **arrays)
    capsys.readouterr()
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    assert "dropout masks in the textbook network's order" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoint.npz")["format_version"] == 2


def test_the_synthetic_stand_in_trains_without_any_files(tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", "synthetic", "--depth", "10", "--k", "4", "--epochs", "2", "--limit-train", "256",
            "--limit-test", "128", "--out", str(out)]
    assert train_module.main(argv) == 0
    metrics = read_metrics(out)
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]


def test_a_missing_dataset_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    publish(monkeypatch, "cifar10", tmp_path / "unreachable" / "cifar-10-python.tar.gz", "0" * 32)
    assert train_module.main(["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "downloading it failed" in err and "--data-dir" in err
    assert not (tmp_path / "run").exists()                  # no run folder with a config and nothing else


def test_a_checkpoint_saves_numpy_generators_exactly_and_refuses_others():
    rng = np.random.default_rng(7)
    rng.random(5)
    state = generator_state(rng)
    expected = rng.random(3)
    restored = np.random.default_rng(0)
    restore_generator(restored, state)
    assert np.array_equal(restored.random(3), expected)
    with pytest.raises(TypeError, match="numpy.random.default_rng"):
        generator_state(random.Random(0))


@pytest.mark.skipif("backend.gpu_available()", reason="a GPU is here: the run would start")
def test_asking_for_a_missing_gpu_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(["--dataset", "synthetic", "--device", "gpu", "--out", str(out)]) == 2
    assert "pip install" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("pad_fill", ["mean", "black"])
def test_the_crops_pad_with_the_mean_colour_or_with_black(pad_fill):
    """White images: whatever a crop shows of its padding is the mean colour (0 after normalising) or black."""
    data = trainer.load_data(trainer.RunConfig(dataset="synthetic"))
    white = np.full((64, 3, 32, 32), 255, np.uint8)
    x, _ = trainer.prepare_batch(white, np.zeros(64, np.int64), data, "cpu", np.random.default_rng(0), pad_fill)
    mean, std = np.array(data.mean), np.array(data.std)
    expected_padding = -mean / std if pad_fill == "black" else np.zeros(3)      # (0 - mean) / std is black
    white_value = (255 - mean) / std
    for c in range(3):
        values = np.unique(x[:, c])
        assert np.allclose(sorted(values), sorted([expected_padding[c], white_value[c]]), rtol=1e-6)


def test_the_pad_fill_is_a_setting_of_the_run(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(data_dir, out, "--epochs", "1", "--pad-fill", "black")) == 0
    assert json.loads((out / "config.json").read_text())["pad_fill"] == "black"
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "2", "--pad-fill", "mean"]) == 2


@pytest.mark.parametrize("flags, name, folder", [
    (["--arch", "resnet", "--depth", "8"], "pre-activation ResNet-8", "preact-resnet-8-cifar10"),
    (["--arch", "resnet", "--depth", "8", "--post-activation", "--no-shortcut"], "plain net-8", "plain-8-cifar10"),
    (["--depth", "10", "--k", "4", "--post-activation"], "DenseNet-BC (L=10, k=4, post-activation)",
     "densenet-bc-L10-k4-post-cifar10"),
])
def test_other_architectures_train_from_the_command_line(data_dir, tmp_path, monkeypatch, flags, name, folder, capsys):
    monkeypatch.chdir(tmp_path)                                 # the default --out, runs/<architecture>-<dataset>
    argv = ["--data-dir", str(data_dir), "--batch-size", "16", "--epochs", "1", *flags]
    assert train_module.main(argv) == 0
    assert capsys.readouterr().out.startswith(f"{name}: ")
    out = tmp_path / "runs" / folder
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == name and not config["memory_efficient"]      # one tier: the textbook one
    model = trainer.build_model(trainer.RunConfig.from_dict(config))
    assert model.load_state_dict(load_checkpoint(out / "checkpoint.npz")["model"]) == ([], [])
    assert np.isfinite(read_metrics(out)[0]["test_loss"])


@pytest.mark.parametrize("flags, message", [
    (["--arch", "resnet", "--depth", "40"], "depth 40 does not fit a ResNet of basic blocks"),
    (["--arch", "resnet", "--depth", "8", "--k", "6"], "--k belongs to --arch densenet, not to --arch resnet"),
    (["--depth", "10", "--bottleneck"], "--bottleneck belongs to --arch resnet"),
])
def test_architecture_flags_that_do_not_fit_are_refused(data_dir, tmp_path, flags, message, capsys):
    assert train_module.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "x"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x").exists()


# -- --watch and the first non-finite module ------------------------------------------------------------------------
def resnet_run(data_dir, out, *extra):
    return ["--arch", "resnet", "--depth", "20", "--data-dir", str(data_dir), "--batch-size", "16", "--epochs", "2",
            "--out", str(out), *extra]


def test_watch_writes_each_layers_statistics_and_a_plot_without_changing_the_run(data_dir, tmp_path):
    from scratchnet.models import resnet_cifar
    from scratchnet.monitor import leaf_modules, read_layer_stats
    watched, plain = tmp_path / "watched", tmp_path / "plain"
    assert train_module.main(resnet_run(data_dir, watched, "--watch")) == 0     # every 50 steps: step 0 of 14
    assert train_module.main(resnet_run(data_dir, plain)) == 0
    rows = read_layer_stats(watched / "layer_stats.jsonl")
    names = [name for name, _ in leaf_modules(resnet_cifar(20))]
    assert [row["module"] for row in rows] == names and {row["step"] for row in rows} == {0}
    assert all(row["std"] > 0 and row["grad_norm"] > 0 for row in rows)
    assert (watched / "layer_stats.png").stat().st_size > 10_000
    assert json.loads((watched / "config.json").read_text())["watch"] == train_module.WATCH_EVERY
    assert without_timing(read_metrics(watched)) == without_timing(read_metrics(plain))
    assert not (plain / "layer_stats.jsonl").exists()


def test_a_resumed_watch_drops_the_rows_of_steps_after_the_checkpoint(data_dir, tmp_path):
    from scratchnet.monitor import read_layer_stats
    out = tmp_path / "run"
    assert train_module.main(tiny_run(data_dir, out, "--epochs", "1", "--watch", "3")) == 0
    path = out / "layer_stats.jsonl"
    first = read_layer_stats(path)
    with open(path, "a") as f:               # rows of a step the checkpoint does not hold, as a crash leaves them
        f.write(json.dumps({**first[0], "step": 8}) + "\n")
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    rows = read_layer_stats(path)
    assert sorted({row["step"] for row in rows}) == [0, 3, 6, 9, 12]        # 7 steps an epoch
    assert rows[:len(first)] == first and sum(row["step"] == 8 for row in rows) == 0


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("efficient", [[], ["--no-memory-efficient"]])
def test_a_diverging_run_names_the_first_non_finite_module(tmp_path, efficient, capsys):
    from scratchnet.models import densenet_cifar
    out = tmp_path / "run"
    argv = ["--dataset", "synthetic", "--depth", "10", "--k", "4", "--epochs", "1", "--lr", "1000",
            "--watch", "1", "--out", str(out), *efficient]
    assert train_module.main(argv) == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert " at epoch 1, step " in line and "(lr 1000): first non-finite: " in line
    module = line.split("first non-finite: ")[1].split(" (")[0]
    assert module in dict(densenet_cifar(10, 4).named_modules()) and module.startswith("features.")
    assert not (out / "checkpoint.npz").exists()
    # The monitor saw the step that failed: its gradients were not all finite, and it made no update.
    from scratchnet.monitor import read_layer_stats
    rows = read_layer_stats(out / "layer_stats.jsonl")
    last = [row for row in rows if row["step"] == max(r["step"] for r in rows)]
    assert any(not np.isfinite(row["weight_grad_norm"]) for row in last if row.get("weight_grad_norm") is not None)
    assert all(row.get("weight_update_ratio") is None for row in last)
    assert (out / "layer_stats.png").exists()
