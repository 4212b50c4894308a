"""tools/torch_reference_run.py, the PyTorch-only training that a scratchnet run is compared with.

On the session's small synthetic CIFAR-10 folder (100 training images: two steps an epoch): the run writes one
metrics line per epoch, and a run stopped in the middle of an epoch and resumed ends exactly where an
unstopped run ends.
"""
import pytest

from run_helpers import load_tool, read_metrics


def run(tool, cifar_dir, out, *extra):
    tool.main(["--data-dir", str(cifar_dir), "--out", str(out), "--epochs", "2", "--depth", "10", "--k", "4",
               "--threads", "1", "--save-every", "1", *extra])
    return read_metrics(out)


def test_a_stopped_and_resumed_run_ends_as_an_unstopped_one(torch, cifar_dir, tmp_path, monkeypatch):
    tool = load_tool("torch_reference_run")
    straight = run(tool, cifar_dir, tmp_path / "straight")
    assert [row["epoch"] for row in straight] == [1, 2]
    assert all(0 <= row["test_acc"] <= 1 and row["train_loss"] > 0 for row in straight)
    assert straight[-1]["lr"] == pytest.approx(0.0, abs=1e-12)      # cosine annealed to 0 at the last step

    augment, calls = tool.augment, []

    def stop_at_epoch_2_step_2(x, rng):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return augment(x, rng)

    monkeypatch.setattr(tool, "augment", stop_at_epoch_2_step_2)
    with pytest.raises(KeyboardInterrupt):
        run(tool, cifar_dir, tmp_path / "stopped")
    monkeypatch.setattr(tool, "augment", augment)
    resumed = run(tool, cifar_dir, tmp_path / "stopped", "--resume")

    keys = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "lr_first"]
    assert [[row[k] for k in keys] for row in resumed] == [[row[k] for k in keys] for row in straight]
    weights = [torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
               for folder in (tmp_path / "straight", tmp_path / "stopped")]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_it_refuses_to_overwrite_a_run_and_to_resume_nothing(torch, cifar_dir, tmp_path):
    tool = load_tool("torch_reference_run")
    with pytest.raises(SystemExit, match="no .*checkpoint.pt"):
        run(tool, cifar_dir, tmp_path / "none", "--resume")
    run(tool, cifar_dir, tmp_path / "done")
    with pytest.raises(SystemExit, match="holds a run already"):
        run(tool, cifar_dir, tmp_path / "done")
