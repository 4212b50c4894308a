"""``--swa-start``: stochastic weight averaging in ``python -m scratchnet.train``, on the tiny CIFAR of ``cifar_dir``.

What it must do, each checked against something computed another way: the schedule runs its course by
--swa-start and every later step takes --swa-lr; the average is the mean of the epoch-end weights (read from
checkpoints of the same run stopped after each epoch); its batch-norm statistics are what
torch.optim.swa_utils.update_bn makes over the same batches; a run stopped and resumed inside the averaged
epochs gives the same swa.npz, bit for bit; and settings that cannot work are refused with the flag named.
"""
import json

import numpy as np
import pytest

from run_helpers import read_metrics, tiny_run, without_timing
from scratchnet import train as train_module
from scratchnet import trainer
from scratchnet.checkpoint import load_checkpoint
from scratchnet.optim import cosine_lr
from scratchnet.trainer import ConfigError, RunConfig

STEPS = 7          # tiny_run: 100 training images in batches of 16


@pytest.fixture
def data_dir(cifar_dir):
    return cifar_dir


def swa_run(data_dir, out, epochs=4, *extra):
    """tiny_run with a cosine schedule over 2 epochs, then epochs 3..epochs at 0.05, averaged."""
    argv = tiny_run(data_dir, out, "--schedule", "cosine", "--swa-start", "2", "--swa-lr", "0.05", *extra)
    argv[argv.index("--epochs") + 1] = str(epochs)
    return argv


def test_the_schedule_ends_at_swa_start_and_the_rate_then_stays_at_swa_lr():
    config = RunConfig(epochs=10, schedule="cosine", restarts=1, swa_start=6, swa_lr=0.03)
    rates = [config.lr_at(step, STEPS) for step in range(10 * STEPS)]
    # the first 6 epochs: SGDR over 6 epochs, as a run of --epochs 6 --restarts 1 (cycles of 2 and 4 epochs)
    assert rates[:6 * STEPS] == [cosine_lr(step, 0.1, 6 * STEPS, restarts=1) for step in range(6 * STEPS)]
    assert rates[:6 * STEPS] == [RunConfig(epochs=6, schedule="cosine", restarts=1).lr_at(step, STEPS)
                                 for step in range(6 * STEPS)]
    assert rates[2 * STEPS] == 0.1 and rates[6 * STEPS - 1] < 0.001          # restart at epoch 3, annealed by 6
    assert rates[6 * STEPS:] == [0.03] * (4 * STEPS)
    assert RunConfig(epochs=10, lr=0.2, swa_start=6).swa_rate == 0.1         # default: half of --lr
    summary = trainer.schedule_summary(config, STEPS)
    assert "cycles of 2 and 4 epochs" in summary and "then 0.03 for 4 epochs (epochs 7-10)" in summary


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 4, "swa_lr": 0.05}, "give --swa-start too"),
    ({"epochs": 4, "swa_start": 4}, "--swa-start 4 must be less than --epochs 4"),
    ({"epochs": 4, "swa_start": 0}, "--swa-start must be a whole number >= 1"),
    ({"epochs": 4, "swa_start": 2, "swa_lr": -1.0}, "--swa-lr must lie in"),
    ({"epochs": 10, "swa_start": 4, "schedule": "cosine", "restarts": 1},
     "--swa-start must be a multiple of 3"),
])
def test_swa_settings_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        RunConfig(**settings)


def test_the_average_is_the_mean_of_the_epoch_end_weights_with_batch_norm_remade(data_dir, tmp_path, torch, capsys):
    out = tmp_path / "swa"
    assert train_module.main(swa_run(data_dir, out)) == 0
    printed = capsys.readouterr().out
    assert "then 0.05 for 2 epochs (epochs 3-4)" in printed and "SWA: the mean of the weights of epochs 3-4 (2)" in printed
    metrics = read_metrics(out)
    assert [m["lr"] for m in metrics][2:] == [0.05, 0.05]
    summary = json.loads((out / "swa.json").read_text())
    assert summary["epochs"] == [3, 4] and summary["n_averaged"] == 2 and summary["bn_batches"] == STEPS

    # The same run, stopped after epoch 3 and resumed: epoch 3's end weights from its checkpoint.
    stepwise = tmp_path / "stepwise"
    assert train_module.main(swa_run(data_dir, stepwise, 3)) == 0
    epoch3 = load_checkpoint(stepwise / "checkpoint.npz")
    assert int(epoch3["swa"]["n_averaged"]) == 1
    assert train_module.main(["--resume", "--out", str(stepwise), "--epochs", "4"]) == 0
    epoch4 = load_checkpoint(stepwise / "checkpoint.npz")
    swa = load_checkpoint(out / "swa.npz")
    from scratchnet.models import densenet_cifar
    parameters = [name for name, _ in densenet_cifar(10, 4).named_parameters()]
    for name in parameters:
        mean = (epoch3["model"][name].astype(np.float64) + epoch4["model"][name]) / 2
        np.testing.assert_allclose(swa["model"][name], mean, rtol=1e-6, atol=1e-7, err_msg=name)
        assert np.array_equal(load_checkpoint(stepwise / "swa.npz")["model"][name], swa["model"][name]), name

    # Batch norm: torch.optim.swa_utils.update_bn over the same batches, on PyTorch's twin of the averaged net.
    from scratchnet.bench.torch_reference import torch_densenet_cifar
    from torch.optim.swa_utils import update_bn as torch_update_bn
    config = RunConfig.from_dict(swa["config"])
    reference = torch_densenet_cifar(10, 4, True)
    reference.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in swa["model"].items()})
    batches = [torch.from_numpy(np.asarray(x)) for x in trainer.swa_batches(trainer.load_data(config), config)]
    torch_update_bn(batches, reference)
    for name, value in reference.named_buffers():
        if "running" in name:
            np.testing.assert_allclose(swa["model"][name], value.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    last = load_checkpoint(out / "checkpoint.npz")["model"]
    assert not np.allclose(swa["model"]["features.norm5.running_var"], last["features.norm5.running_var"])

    # swa.json's figures are the saved average's own, as --eval-only reads them.
    result = train_module.run_eval_only(str(out / "swa.npz"), {"data_dir": str(data_dir)})
    assert (result.accuracy, result.loss) == pytest.approx((summary["test_acc"], summary["test_loss"]))


def test_a_run_stopped_inside_the_averaged_epochs_resumes_to_the_same_average(data_dir, tmp_path, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_module.main(swa_run(data_dir, straight)) == 0
    from test_train import interrupt_at_training_step
    with monkeypatch.context() as patch:
        interrupt_at_training_step(patch, 3 * STEPS + 2)        # inside epoch 4, one epoch already averaged
        assert train_module.main(swa_run(data_dir, stopped)) == 130
    assert int(load_checkpoint(stopped / "checkpoint.npz")["swa"]["n_averaged"]) == 1
    assert not (stopped / "swa.npz").exists()
    assert train_module.main(["--resume", "--out", str(stopped)]) == 0
    assert without_timing(read_metrics(stopped)) == without_timing(read_metrics(straight))
    a, b = load_checkpoint(straight / "swa.npz")["model"], load_checkpoint(stopped / "swa.npz")["model"]
    assert all(np.array_equal(a[name], b[name]) for name in a)


def test_a_finished_run_goes_on_with_swa_and_swa_start_cannot_move_once_averaging_began(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_module.main(tiny_run(data_dir, out, "--schedule", "cosine")) == 0       # 2 epochs, no SWA
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "3", "--swa-start", "2"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert {"setting": "swa_start", "was": None, "now": 2, "from_epoch": 3, "from_step": 1} in config["changes"]
    assert read_metrics(out)[2]["lr"] == 0.05 and json.loads((out / "swa.json").read_text())["n_averaged"] == 1
    capsys.readouterr()
    assert train_module.main(["--resume", "--out", str(out), "--epochs", "4", "--swa-start", "1"]) == 2
    assert "holds an average of 1 epoch, but with --swa-start 1 after 3 epochs it should hold 2" in capsys.readouterr().err


def test_swa_stopped_while_its_average_is_tested_finishes_on_resume(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = trainer.update_bn

    def interrupted_update_bn(model, batches):
        import signal
        signal.raise_signal(signal.SIGTERM)
        return original(model, batches)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "update_bn", interrupted_update_bn)
        assert train_module.main(swa_run(data_dir, out, 3)) == 143
    assert not (out / "swa.npz").exists() and not (out / "swa.json").exists()
    assert train_module.main(["--resume", "--out", str(out)]) == 0
    assert json.loads((out / "swa.json").read_text())["n_averaged"] == 1
    assert train_module.main(["--resume", "--out", str(out)]) == 2       # now finished: nothing left to do
