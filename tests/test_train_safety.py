"""Nothing lost, nothing silent: divergence, bad flags, bad files and the schedule of
``python -m scratchnet.train``, each case run through ``main(argv)`` (signals: test_train.py)."""
import errno
import json
import signal

import numpy as np
import pytest

from cifar_fixtures import make_cifar_folder, write_pickle
from run_helpers import read_metrics, tiny_run, without_timing
from scratchnet import checkpoint as checkpoint_module
from scratchnet import train as train_module
from scratchnet import trainer
from scratchnet.checkpoint import load_checkpoint, non_finite_entries


def finite_checkpoint(path):
    """True if every floating-point array of the checkpoint (weights, buffers, momentum) is finite."""
    saved = load_checkpoint(path)
    return not non_finite_entries(saved["model"]) and not non_finite_entries(saved["optimizer"])


def main_in(argv, capsys):
    """main(argv) -> (exit code, stderr)."""
    code = train_module.main(argv)
    return code, capsys.readouterr().err


# -- bad flags: exit code 2, the flag named, nothing written ------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "-4"], "--batch-size must be a whole number >= 1, got -4"),
    (["--batch-size", "0"], "--batch-size must be a whole number >= 1, got 0"),
    (["--epochs", "0"], "--epochs must be a whole number >= 1, got 0"),
    (["--k", "0"], "--k must be a whole number >= 1, got 0"),
    (["--depth", "0"], "--depth must be a whole number >= 1, got 0"),
    (["--limit-test", "0"], "--limit-test must be a whole number >= 1, got 0"),
    (["--seed", "-1"], "--seed must be a whole number >= 0, got -1"),
    (["--dropout", "-0.5"], "--dropout must lie in [0, 1), got -0.5"),
    (["--dropout", "1.0"], "--dropout must lie in [0, 1), got 1.0"),
    (["--theta", "0"], "--theta must lie in (0, 1], got 0.0"),
    (["--theta", "1.5"], "--theta must lie in (0, 1], got 1.5"),
    (["--lr", "0"], "--lr must lie in (0, inf), got 0.0"),
    (["--lr", "nan"], "--lr must lie in (0, inf), got nan"),
    (["--lr", "inf"], "--lr must lie in (0, inf), got inf"),
    (["--momentum", "1"], "--momentum must lie in [0, 1), got 1.0"),
    (["--weight-decay", "-0.0001"], "--weight-decay must lie in [0, inf), got -0.0001"),
    (["--watch", "-1"], "--watch must be a whole number >= 0, got -1"),
    (["--restarts", "-1", "--schedule", "cosine"], "--restarts must be a whole number >= 0, got -1"),
    (["--restarts", "1"], "--restarts 1 restarts a cosine schedule: add --schedule cosine"),
    (["--restarts", "1", "--schedule", "cosine", "--epochs", "4"],
     "--restarts 1 makes 2 cycles, each twice as long as the one before, so --epochs must be a multiple of 3 for the "
     "restarts to fall between epochs; got 4 (try 3 or 6)"),
])
def test_impossible_numbers_are_refused_before_anything_is_written(cifar_dir, tmp_path, argv, message, capsys):
    out = tmp_path / "run"
    code, err = main_in(["--data-dir", str(cifar_dir), "--out", str(out), *argv], capsys)
    assert code == 2 and f"error: {message}" in err and "Traceback" not in err
    assert not out.exists()


def test_impossible_numbers_are_refused_on_resume_too(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    before = (out / "checkpoint.npz").read_bytes()
    code, err = main_in(["--resume", "--out", str(out), "--lr", "-0.1"], capsys)
    assert code == 2 and "--lr must lie in (0, inf), got -0.1" in err
    code, err = main_in(["--resume", "--out", str(out)], capsys)       # its 1 epoch are done
    assert code == 2 and "has done 1 of its 1 epochs; to train on, resume with --epochs greater than 1" in err
    assert (out / "checkpoint.npz").read_bytes() == before


def test_python_callers_get_the_same_checks():
    with pytest.raises(trainer.ConfigError, match="--batch-size must be a whole number >= 1, got -4"):
        trainer.RunConfig(batch_size=-4)
    with pytest.raises(trainer.ConfigError, match="--dropout must lie in"):
        trainer.RunConfig(dropout=True)
    assert trainer.RunConfig(seed=np.int64(3), lr=np.float32(0.05)).seed == 3     # NumPy numbers are numbers


def test_an_out_that_is_a_file_or_under_one_is_refused(cifar_dir, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    for out, message in ((afile, f"--out {afile} is a file"), (afile / "run", f"is under {afile}, which is a file")):
        for resume in ([], ["--resume"]):
            code, err = main_in([*tiny_run(cifar_dir, out), *resume], capsys)
            assert code == 2 and message in err and "Traceback" not in err
    assert afile.read_text() == "mine"


# -- divergence: nothing non-finite is kept, the run stops, and continues with a lower lr --------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",       # NumPy, as the weights blow up
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_run_at_a_huge_learning_rate_stops_and_keeps_only_finite_checkpoints(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"                  # one step per epoch, as the case that ended with exit 0
    code, err = main_in(tiny_run(cifar_dir, out, "--lr", "1e4", "--batch-size", "100", "--epochs", "6"),
                        capsys)
    assert code == 1 and "Traceback" not in err
    assert "became nan" in err or "became inf" in err or "arrays hold NaN or infinite values" in err
    for name in ("checkpoint.npz", "best.npz"):
        if (out / name).exists():
            assert finite_checkpoint(out / name), name
    if (out / "metrics.jsonl").exists():
        assert all(np.isfinite(m["test_loss"]) and np.isfinite(m["train_loss"]) for m in read_metrics(out))


def test_non_finite_batch_norm_buffers_stop_the_run_before_they_are_saved(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original = trainer.evaluate

    def evaluate_after_breaking_a_buffer(model, data, config, stop=None):
        if original.calls == 1:             # the end of epoch 2
            model.state_dict()["features.denseblock1.denselayer1.norm1.running_var"][0] = np.inf
        original.calls += 1
        return original(model, data, config, stop)

    original.calls = 0
    monkeypatch.setattr(trainer, "evaluate", evaluate_after_breaking_a_buffer)
    code, err = main_in(tiny_run(cifar_dir, out), capsys)
    assert code == 1
    assert "after epoch 2, 1 arrays hold NaN or infinite values (features.denseblock1.denselayer1.norm1." \
           "running_var)" in err
    assert f"The last good checkpoint is {out / 'checkpoint.npz'} (after epoch 1;" in err
    assert finite_checkpoint(out / "checkpoint.npz") and finite_checkpoint(out / "best.npz")
    assert int(load_checkpoint(out / "checkpoint.npz")["progress"]["epoch"]) == 1
    assert [m["epoch"] for m in read_metrics(out)] == [1]


def test_a_non_finite_test_loss_stops_the_run_with_an_error(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original = trainer.evaluate

    def nan_after_epoch_2(model, data, config, stop=None):
        result = original(model, data, config, stop)
        if nan_after_epoch_2.calls == 1:
            result.loss = float("nan")
        nan_after_epoch_2.calls += 1
        return result

    nan_after_epoch_2.calls = 0
    monkeypatch.setattr(trainer, "evaluate", nan_after_epoch_2)
    code, err = main_in(tiny_run(cifar_dir, out, "--epochs", "3"), capsys)
    assert code == 1 and "the test loss became nan after epoch 2" in err
    assert [m["epoch"] for m in read_metrics(out)] == [1]
    assert int(load_checkpoint(out / "checkpoint.npz")["progress"]["epoch"]) == 1


def test_a_diverged_run_continues_from_its_last_good_checkpoint_with_a_lower_lr(cifar_dir, tmp_path, monkeypatch,
                                                                                  capsys):
    out = tmp_path / "run"
    original = trainer.prepare_batch

    def poisoned(images, labels, data, device, augment_rng=None, *rest):
        x, y = original(images, labels, data, device, augment_rng, *rest)
        poisoned.calls += augment_rng is not None
        return (x * np.nan if poisoned.calls == 10 else x), y       # epoch 2, step 3

    poisoned.calls = 0
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "prepare_batch", poisoned)
        code, err = main_in(tiny_run(cifar_dir, out), capsys)
    assert code == 1
    advice = f"python -m scratchnet.train --resume --out {out} --lr 0.01"
    assert advice in err
    code = train_module.main(advice.split()[3:] + ["--data-dir", str(cifar_dir)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "At step 8, where it continues, the rate is now 0.001 (it was 0.01)" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.01
    assert config["changes"] == [{"setting": "lr", "was": 0.1, "now": 0.01, "from_epoch": 2, "from_step": 1}]
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[0]["lr"] == pytest.approx(0.1) and metrics[1]["lr_first"] == pytest.approx(0.001)
    assert load_checkpoint(out / "checkpoint.npz")["config"]["changes"] == config["changes"]


def test_a_finished_cosine_run_goes_on_with_a_warm_restart(cifar_dir, tmp_path, capsys):
    """--resume --epochs 3 --restarts 1 after a 1-epoch cosine run is the SGDR run of 3 epochs, bit for bit:
    the first cycle is the plain cosine schedule, then the rate is back at --lr for a cycle of 2 epochs."""
    planned, extended = tmp_path / "planned", tmp_path / "extended"
    assert train_module.main(tiny_run(cifar_dir, planned, "--epochs", "3", "--schedule", "cosine",
                                      "--restarts", "1")) == 0
    assert train_module.main(tiny_run(cifar_dir, extended, "--epochs", "1", "--schedule", "cosine")) == 0
    capsys.readouterr()
    assert train_module.main(["--resume", "--out", str(extended), "--epochs", "3", "--restarts", "1"]) == 0
    printed = capsys.readouterr().out
    assert "cycles of 1 and 2 epochs, back at 0.1 from epoch 2" in printed
    assert "At step 8, where it continues, the rate is now 0.1 (it was 0)" in printed
    assert without_timing(read_metrics(extended)) == without_timing(read_metrics(planned))
    assert read_metrics(extended)[1]["lr_first"] == 0.1
    ours, theirs = (load_checkpoint(out / "checkpoint.npz") for out in (extended, planned))
    for name, value in theirs["model"].items():
        assert np.array_equal(ours["model"][name], value), name
    changes = json.loads((extended / "config.json").read_text())["changes"]
    assert [(c["setting"], c["was"], c["now"], c["from_epoch"]) for c in changes] == [("epochs", 1, 3, 2),
                                                                                      ("restarts", 0, 1, 2)]


def test_the_advice_after_a_diverged_resume_can_be_followed(cifar_dir, tmp_path, monkeypatch, capsys):
    """A resume that stretched --epochs, then diverged: the good checkpoint still has the old epochs."""
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    original = trainer.prepare_batch

    def poisoned(images, labels, data, device, augment_rng=None, *rest):
        x, y = original(images, labels, data, device, augment_rng, *rest)
        return x * np.nan, y

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "prepare_batch", poisoned)
        code, err = main_in(["--resume", "--out", str(out), "--epochs", "3", "--lr", "1"], capsys)
    assert code == 1
    advice = f"python -m scratchnet.train --resume --out {out} --epochs 3 --lr 0.1"
    assert advice in err
    config = json.loads((out / "config.json").read_text())      # back to the checkpoint's own config
    assert (config["epochs"], config["lr"], config["changes"]) == (1, 0.1, [])
    assert train_module.main(advice.split()[3:]) == 0
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2, 3]


def test_a_resume_on_other_data_is_refused(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    other = tmp_path / "other"
    make_cifar_folder(other, per_file=10)
    code, err = main_in(["--resume", "--out", str(out), "--epochs", "2", "--data-dir", str(other)], capsys)
    assert code == 2 and "used 100 training images, but the data found now has 50" in err


def test_a_learning_rate_changed_inside_an_epoch_keeps_that_epochs_first_rate(cifar_dir, tmp_path, monkeypatch,
                                                                                capsys):
    out = tmp_path / "run"
    original = trainer.prepare_batch

    def interrupt_at_step_3(images, labels, data, device, augment_rng=None, *rest):
        interrupt_at_step_3.calls += augment_rng is not None
        if interrupt_at_step_3.calls == 3:
            signal.raise_signal(signal.SIGINT)
        return original(images, labels, data, device, augment_rng, *rest)

    interrupt_at_step_3.calls = 0
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "prepare_batch", interrupt_at_step_3)
        assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "4")) == 130
    assert train_module.main(["--resume", "--out", str(out), "--lr", "0.05"]) == 0
    metrics = read_metrics(out)
    assert metrics[0]["lr_first"] == pytest.approx(0.1) and metrics[0]["lr"] == pytest.approx(0.05)
    changes = json.loads((out / "config.json").read_text())["changes"]
    assert changes == [{"setting": "lr", "was": 0.1, "now": 0.05, "from_epoch": 1, "from_step": 4}]


def test_a_checkpoint_that_is_not_finite_is_not_resumed(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"                  # as a version before the divergence check could have left one
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    with np.load(out / "checkpoint.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["model/features.norm5.running_var"] = np.full_like(arrays["model/features.norm5.running_var"], np.inf)
    np.savez(out / "checkpoint.npz", **arrays)
    code, err = main_in(["--resume", "--out", str(out), "--epochs", "2"], capsys)
    assert code == 2 and "holds NaN or infinite values (features.norm5.running_var)" in err


def test_eval_only_refuses_settings_it_would_ignore(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    code, err = main_in(["--eval-only", str(out / "checkpoint.npz"), "--k", "8", "--dataset", "cifar100"], capsys)
    assert code == 2 and "--dataset, --k cannot be given with it" in err
    assert train_module.main(["--eval-only", str(out / "checkpoint.npz"), "--data-dir", str(cifar_dir),
                              "--batch-size", "3"]) == 0
    code, err = main_in(["--eval-only", str(out), "--data-dir", str(cifar_dir)], capsys)
    assert code == 2 and "(it is a folder: give its checkpoint.npz or best.npz)" in err


def test_a_best_checkpoint_without_a_last_one_is_pointed_at_and_kept(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"                  # as a kill between the first best.npz and checkpoint.npz leaves it
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    (out / "checkpoint.npz").unlink()
    best = (out / "best.npz").read_bytes()
    code, err = main_in(["--resume", "--out", str(out), "--epochs", "2"], capsys)
    assert code == 2 and f"copy it: cp {out / 'best.npz'} {out / 'checkpoint.npz'}" in err
    code, err = main_in(tiny_run(cifar_dir, out), capsys)               # a new run would overwrite it
    assert code == 2 and "already holds a run (best.npz)" in err
    assert (out / "best.npz").read_bytes() == best


def test_an_invalid_saved_config_names_the_checkpoint(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    with np.load(out / "checkpoint.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    config = json.loads(str(arrays["config"]))
    for field, value, message in (("changes", "oops", "changes must be a list"), ("depth", "10", "--depth must be")):
        arrays["config"] = np.array(json.dumps({**config, field: value}))
        np.savez(out / "checkpoint.npz", **arrays)
        code, err = main_in(["--resume", "--out", str(out), "--epochs", "2"], capsys)
        assert code == 2 and f"{out / 'checkpoint.npz'} holds a config that is not valid" in err and message in err
    arrays["config"] = np.array(json.dumps({**config, "k": 6}))             # weights of k = 4
    np.savez(out / "checkpoint.npz", **arrays)
    code, err = main_in(["--eval-only", str(out / "checkpoint.npz"), "--data-dir", str(cifar_dir)], capsys)
    assert code == 2 and "does not hold the weights of the model its config describes" in err


def test_an_out_that_cannot_be_written_is_refused_before_anything_is(cifar_dir, tmp_path, monkeypatch, capsys):
    """os.access says no (chmod would, but these tests may run as root, whom it does not stop)."""
    monkeypatch.setattr(train_module.os, "access", lambda path, mode: False)
    out = tmp_path / "runs" / "x"
    code, err = main_in(tiny_run(cifar_dir, out), capsys)
    assert code == 2 and f"--out {out}: {tmp_path} is not writable; choose a folder you can write to" in err
    assert not (tmp_path / "runs").exists()


def test_a_broken_symbolic_link_as_out_is_named(cifar_dir, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    code, err = main_in(tiny_run(cifar_dir, link), capsys)
    assert code == 2 and f"--out {link} is a broken symbolic link" in err


# -- the schedule counts steps --------------------------------------------------------------------------------------
def test_the_step_schedule_drops_at_half_and_three_quarters_of_all_steps(cifar_dir, tmp_path, monkeypatch):
    rates = []
    original = trainer.SGD.step

    def step(self):
        rates.append(self.lr)
        original(self)

    monkeypatch.setattr(trainer.SGD, "step", step)
    assert train_module.main(tiny_run(cifar_dir, tmp_path / "run", "--epochs", "1")) == 0
    # 7 steps: 50% of them is step 3.5, so the rate is /10 from step index 7 // 2 = 3, and /100 from 21 // 4 = 5.
    assert rates == pytest.approx([0.1] * 3 + [0.01] * 2 + [0.001] * 2)


def test_a_schedule_too_short_for_its_drops_says_so(cifar_dir, tmp_path, capsys):
    assert train_module.main(tiny_run(cifar_dir, tmp_path / "run", "--epochs", "1", "--batch-size", "100")) == 0
    assert ("divided by 10 from step 1 (epoch 1, step 1) and again from step 1 (epoch 1, step 1) of 1 (1 epoch of "
            "1 step); with only 1 step the 50% and 75% points do not fall on steps of their own") in \
        capsys.readouterr().out


def test_more_epochs_on_resume_say_what_they_do_to_the_schedule(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "divided by 10 from step 8 (epoch 2, step 1) and again from step 11 (epoch 2, step 4) of 14" in printed
    assert "it was learning rate 0.1, divided by 10 from step 4 (epoch 1, step 4) and again from step 6 (epoch 1, step 6) of 7" in printed
    assert "At step 8, where it continues, the rate is now 0.01 (it was 0.001)" in printed
    changes = json.loads((out / "config.json").read_text())["changes"]
    assert changes == [{"setting": "epochs", "was": 1, "now": 2, "from_epoch": 2, "from_step": 1}]


# -- files: metrics, checkpoints, a full disk -----------------------------------------------------------------------
def test_a_torn_last_metrics_line_is_dropped_and_the_run_resumes(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_loss": 2.1')             # a kill during an append
    capsys.readouterr()
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    assert f"the last line of {out / 'metrics.jsonl'} is incomplete" in capsys.readouterr().err
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]


def test_a_damaged_metrics_line_inside_the_file_is_named(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    lines = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text("garbage\n" + lines)
    code, err = main_in(["--resume", "--out", str(out), "--epochs", "2"], capsys)
    assert code == 2 and f"{out / 'metrics.jsonl'}, line 1, is not a metrics record" in err
    assert (out / "metrics.jsonl").read_text() == "garbage\n" + lines          # left as it was


def test_a_full_disk_is_a_message_and_the_last_checkpoint_survives(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_fsync = checkpoint_module.os.fsync
    writes = []

    def fsync(fd):
        writes.append(fd)
        if len(writes) > 5:                 # epoch 1's metrics, curves, best and checkpoint get through
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync)
    code, err = main_in(tiny_run(cifar_dir, out), capsys)
    assert code == 1 and "Traceback" not in err
    assert "No space left on device" in err and f"--resume --out {out}" in err
    assert f"could not write {out / 'metrics.jsonl'}: No space left on device" in err     # epoch 2's first write
    assert int(load_checkpoint(out / "checkpoint.npz")["progress"]["epoch"]) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]     # no temporary files left


def damaged_checkpoints(good, folder):
    """name -> (path, what the message must say) for checkpoints broken in the ways files break."""
    data = good.read_bytes()
    with np.load(good) as archive:
        arrays = {key: archive[key] for key in archive.files}
    cases = {"empty": b"", "truncated": data[:len(data) // 2], "text": b"epoch 3, loss 0.5\n"}
    paths = {}
    for name, content in cases.items():
        (folder / f"{name}.npz").write_bytes(content)
        paths[name] = (folder / f"{name}.npz", "is not a complete scratchnet checkpoint")
    with open(folder / "array.npz", "wb") as f:                      # a .npy under an .npz name
        np.save(f, np.zeros(3))
    paths["npy"] = (folder / "array.npz", "not a .npz archive")
    np.savez(folder / "no-config.npz", **{k: v for k, v in arrays.items() if k != "config"})
    paths["no-config"] = (folder / "no-config.npz", "lacks the run's config")
    np.savez(folder / "objects.npz", format_version=np.array(2), config=np.array([{"a": 1}], dtype=object))
    paths["objects"] = (folder / "objects.npz", "holds pickled objects")
    np.savez(folder / "other.npz", weights=np.zeros(3))
    paths["other"] = (folder / "other.npz", "has no format_version")
    return paths


def test_broken_checkpoints_are_messages_for_eval_only_and_resume(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    good = out / "checkpoint.npz"
    for name, (path, message) in damaged_checkpoints(good, tmp_path).items():
        code, err = main_in(["--eval-only", str(path), "--data-dir", str(cifar_dir)], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (name, err)
        assert "allow_pickle" not in err                      # NumPy's advice to load it unsafely is not passed on
        run = tmp_path / f"resume-{name}"
        run.mkdir()
        (run / "checkpoint.npz").write_bytes(path.read_bytes())
        code, err = main_in(["--resume", "--out", str(run), "--epochs", "2"], capsys)
        assert code == 2 and message in err, (name, err)
    # A checkpoint without its position in training still evaluates, but cannot be resumed.
    with np.load(good) as archive:
        arrays = {key: archive[key] for key in archive.files if not key.startswith("progress/")}
    np.savez(tmp_path / "resume-objects" / "checkpoint.npz", **arrays)
    code, err = main_in(["--resume", "--out", str(tmp_path / "resume-objects"), "--epochs", "2"], capsys)
    assert code == 2 and "lacks a readable position in training" in err
    assert train_module.main(["--eval-only", str(tmp_path / "resume-objects" / "checkpoint.npz"),
                              "--data-dir", str(cifar_dir)]) == 0


def test_a_damaged_cifar_file_is_a_message_naming_it_and_nothing_is_written(tmp_path, capsys):
    make_cifar_folder(tmp_path / "data", per_file=20)
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3"
    write_pickle(batch, {"labels": [0] * 20})                   # no 'data' entry
    out = tmp_path / "run"
    code, err = main_in(tiny_run(tmp_path / "data", out), capsys)
    assert code == 2 and f"{batch} is not a usable CIFAR file: it has no 'data' entry" in err
    assert "Traceback" not in err and not out.exists() and batch.exists()


# -- what a run keeps and reports ------------------------------------------------------------------------------------
def test_the_best_checkpoint_is_kept_beside_the_last(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "4", "--lr", "0.5")) == 0
    accuracies = [m["test_acc"] for m in read_metrics(out)]
    best_epoch = int(np.argmax(accuracies)) + 1             # the first epoch of the best accuracy
    best = load_checkpoint(out / "best.npz")
    assert int(best["progress"]["epoch"]) == best_epoch
    assert float(best["progress"]["best_acc"]) == max(accuracies)
    assert int(load_checkpoint(out / "checkpoint.npz")["progress"]["epoch"]) == 4
    capsys.readouterr()
    assert train_module.main(["--eval-only", str(out / "best.npz"), "--data-dir", str(cifar_dir)]) == 0
    assert f"top-1 accuracy {max(accuracies):.2%}" in capsys.readouterr().out


def test_eval_only_reports_top1_top5_and_each_class(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(cifar_dir, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert train_module.main(["--eval-only", str(out / "checkpoint.npz"), "--data-dir", str(cifar_dir)]) == 0
    printed = capsys.readouterr().out.splitlines()
    # The reference: the same network's logits ranked here with NumPy.
    config = trainer.RunConfig.from_dict(load_checkpoint(out / "checkpoint.npz")["config"])
    model = trainer.build_model(config)
    model.load_state_dict(load_checkpoint(out / "checkpoint.npz")["model"])
    model.eval()
    data = trainer.load_data(config)
    x, labels = trainer.prepare_batch(data.test_images, data.test_labels, data, "cpu")
    ranked = np.argsort(-model(x), axis=1, kind="stable")
    top1 = ranked[:, 0] == labels
    top5 = (ranked[:, :5] == labels[:, None]).any(axis=1)
    assert f"top-1 accuracy {top1.mean():.2%}, top-5 {top5.mean():.2%} (20 images)" in printed[0]
    for c, name in enumerate(data.classes):
        line = next(line for line in printed[1:] if line.split()[0] == name)
        right, count = int(top1[labels == c].sum()), int((labels == c).sum())
        assert line.endswith(f"({right}/{count})")
