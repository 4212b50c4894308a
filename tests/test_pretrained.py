"""The DenseNet-BC that ships with scratchnet: densenet_cifar(40, 12, pretrained=True) and --eval-only pretrained.

Most tests point the package at a weights folder of their own (a seeded network exported as the shipped one
would be), so they check the loading, not the training; the last one classifies the real CIFAR-10 test set
with the weights that really ship.
"""
import json
import re

import numpy as np
import pytest

from run_helpers import ROOT, load_tool, read_metrics
from scratchnet import train as train_module
from scratchnet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scratchnet.data import load_cifar, normalize
from scratchnet.models import PretrainedError, densenet_cifar, pretrained
from scratchnet.optim import SGD
from scratchnet.swa import WeightAverage
from scratchnet.trainer import RunConfig

NAME = "densenet-bc-L40-k12-cifar10"
SHIPPED_WEIGHTS = ROOT / "scratchnet" / "models" / "weights" / NAME / "weights.npz"
export_pretrained = load_tool("export_pretrained")


def finished_run(folder, seed=5, depth=40, epochs_done=40, poison=False, swa_start=None, running_average=False):
    """A checkpoint as the trainer leaves it after the run: weights of a network seeded with ``seed``. With
    ``swa_start`` the run averaged its later epochs' weights: its checkpoint.npz holds the last epoch and the
    running average (``running_average``), its swa.npz the average alone (the default)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = densenet_cifar(depth, 12, seed=seed)
    if poison:
        model.classifier.weight.data[0, 0] = np.nan
    config = RunConfig(depth=depth, epochs=40, schedule="cosine", data_dir="/somewhere/cifar10", out=str(folder),
                       swa_start=swa_start)
    average = None
    if running_average:
        average = WeightAverage(model)
        average.update(model)
    save_checkpoint(folder / "checkpoint.npz", model, SGD(model.parameters(), lr=0.1), {"epoch": epochs_done},
                    {"data": np.random.default_rng(0)}, config.to_dict(), average)
    return folder / "checkpoint.npz", model


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A weights folder holding NAME's weights file, exported from a seed-5 network; returns that network."""
    checkpoint, model = finished_run(tmp_path / "weights" / NAME)
    export_pretrained.export(checkpoint, NAME)
    monkeypatch.setattr(pretrained, "weights_folder", lambda: tmp_path / "weights")
    return model


@pytest.mark.parametrize("settings, named", [
    ({"depth": 100}, "depth=100"), ({"depth": 100, "k": 24}, "depth=100, k=24"), ({"bc": False}, "bc=False, theta=1.0"),
    ({"theta": 1.0}, "theta=1.0"), ({"num_classes": 100}, "num_classes=100"), ({"dropout": 0.2}, "dropout=0.2"),
    ({"preactivation": False}, "preactivation=False")])
def test_other_settings_refuse_pretrained_naming_what_differs(settings, named, shipped):
    settings = {"depth": 40, "k": 12, **settings}
    with pytest.raises(PretrainedError) as error:
        densenet_cifar(pretrained=True, **settings)
    message = str(error.value)
    assert f"this model asks for {named};" in message and "depth=40, k=12, bc=True, theta=0.5" in message


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "memory-efficient"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pretrained_loads_the_shipped_weights_into_either_tier(shipped, memory_efficient, dtype):
    model = densenet_cifar(40, 12, pretrained=True, memory_efficient=memory_efficient, dtype=dtype)
    loaded, trained = model.state_dict(), shipped.state_dict()
    assert list(loaded) == list(trained)
    for key, value in trained.items():
        assert loaded[key].dtype == (value.dtype if value.dtype.kind == "i" else dtype), key
        assert np.array_equal(loaded[key], value.astype(loaded[key].dtype)), key
    fresh = densenet_cifar(40, 12).state_dict()                 # seed 0: what pretrained=False would give
    assert not np.array_equal(fresh["features.conv0.weight"], loaded["features.conv0.weight"])


def test_the_weights_file_holds_no_optimiser_state_and_no_paths_of_the_training_machine(shipped, tmp_path):
    with np.load(tmp_path / "weights" / NAME / "weights.npz") as archive:
        keys = archive.files
        config = str(archive["config"])
    assert not [key for key in keys if key.startswith(("optimizer/", "rng/", "progress/"))]
    assert "/somewhere" not in config and str(tmp_path) not in config


def test_a_missing_weights_file_says_how_to_get_it_back(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "weights_folder", lambda: tmp_path)
    with pytest.raises(PretrainedError, match="are not in this installation .*weights.npz is missing.*reinstall"):
        densenet_cifar(40, 12, pretrained=True)


def test_a_damaged_weights_file_is_named(shipped, tmp_path):
    path = tmp_path / "weights" / NAME / "weights.npz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        densenet_cifar(40, 12, pretrained=True)


@pytest.mark.parametrize("problem, message", [
    ({"epochs_done": 39}, "has 39 of its 40 epochs done"), ({"depth": 16}, "holds DenseNet-BC (L=16, k=12)"),
    ({"poison": True}, "non-finite weights (classifier.weight)"),
    ({"swa_start": 30, "running_average": True},
     "holds the last epoch of a run that averaged its weights (--swa-start 30); the run's result is the average: "
     "export swa.npz beside it")])
def test_export_refuses_a_run_that_must_not_ship(tmp_path, problem, message):
    checkpoint, _ = finished_run(tmp_path / "run", **problem)
    with pytest.raises(ValueError, match=re.escape(message)):
        export_pretrained.export(checkpoint, NAME)
    assert not (tmp_path / "run" / "weights.npz").exists()


def test_export_takes_the_average_a_run_that_averaged_its_weights_saved(tmp_path):
    checkpoint, model = finished_run(tmp_path / "run", swa_start=30)    # as the trainer saves swa.npz
    exported = load_checkpoint(export_pretrained.export(checkpoint, NAME))
    assert exported["config"]["swa_start"] == 30
    for name, value in model.state_dict().items():
        assert np.array_equal(exported["model"][name], value), name


def test_eval_only_pretrained_reports_the_shipped_networks_accuracy(shipped, cifar_dir, capsys):
    assert train_module.main(["--eval-only", "pretrained", "--data-dir", str(cifar_dir)]) == 0
    printed = capsys.readouterr().out
    reported = float(re.search(r"top-1 accuracy ([0-9.]+)%", printed).group(1)) / 100
    # The same images classified here, by the exported network itself.
    data = load_cifar("cifar10", cifar_dir, download=False)
    shipped.eval()
    predicted = shipped(normalize(data.test_images, data.mean, data.std)).argmax(axis=1)
    assert "weights.npz" in printed and f"({len(data.test_labels)} images)" in printed
    assert reported == pytest.approx(np.mean(predicted == data.test_labels), abs=5e-5)


def shipped_run_accuracy(config):
    """The test accuracy the shipped run (its weights file's ``config``) measured for the weights it ships: the
    average's (swa.json) where it averaged weights (--swa-start), else the last epoch's (metrics.jsonl)."""
    folder = SHIPPED_WEIGHTS.parent
    if config.get("swa_start") is not None:
        return json.loads((folder / "swa.json").read_text())["test_acc"]
    return read_metrics(folder)[-1]["test_acc"]


def test_the_weights_ship_with_their_model_card_and_no_training_checkpoint():
    folder = SHIPPED_WEIGHTS.parent
    assert SHIPPED_WEIGHTS.is_file(), f"{SHIPPED_WEIGHTS} is missing: git checkout -- scratchnet/models/weights"
    assert not any((folder / name).exists() for name in ("checkpoint.npz", "best.npz", "swa.npz"))
    config = load_checkpoint(SHIPPED_WEIGHTS)["config"]
    run = read_metrics(folder)
    assert config["out"] is None and config["data_dir"] == RunConfig.data_dir     # nothing of the training machine
    assert [row["epoch"] for row in run] == list(range(1, config["epochs"] + 1))   # every epoch of a finished run
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"**{shipped_run_accuracy(config):.2%} top-1 accuracy**" in card    # the headline: the run's own figure
    assert "JPEG" in card and "python -m scratchnet.train" in card


def test_the_shipped_network_classifies_the_real_cifar10_test_set(real_cifar10_dir, capsys):
    model = densenet_cifar(40, 12, pretrained=True, memory_efficient=True).eval()
    data = load_cifar("cifar10", real_cifar10_dir, download=False)
    predicted = np.concatenate([model(normalize(data.test_images[start:start + 500], data.mean, data.std))
                                .argmax(axis=1) for start in range(0, len(data.test_labels), 500)])
    accuracy = np.mean(predicted == data.test_labels)
    assert len(data.test_labels) == 10_000 and accuracy >= 0.90
    # The weights are the run's result: its own test accuracy, measured when it was trained, within a few images
    # (the JPEG copy decoded again, perhaps by another Pillow, may flip one or two borderline images).
    assert accuracy == pytest.approx(shipped_run_accuracy(load_checkpoint(SHIPPED_WEIGHTS)["config"]), abs=0.003)
    # The command line reaches the same weights and counts the same images right.
    capsys.readouterr()
    assert train_module.main(["--eval-only", "pretrained", "--data-dir", str(real_cifar10_dir)]) == 0
    printed = capsys.readouterr().out
    assert "weights.npz" in printed and "(10000 images)" in printed
    assert float(re.search(r"top-1 accuracy ([0-9.]+)%", printed).group(1)) / 100 == pytest.approx(accuracy, abs=5e-5)
    # Printed last: the capsys reads above would swallow it; pytest -rP shows it.
    print(f"top-1 accuracy of the shipped network on the 10,000 test images: {accuracy:.2%}")
