"""Trained weights that come with the package: nothing is downloaded, the wheel carries them.

One network so far, DenseNet-BC (L=40, k=12) trained on C10+ (CIFAR-10 with the paper's crops and
flips) by ``python -m scratchnet.train``; its model card, ``weights/<name>/MODEL_CARD.md``, says how it
was trained and how well it does.

    model = densenet_cifar(40, 12, pretrained=True)          # in Python
    python -m scratchnet.train --eval-only pretrained        # its test accuracy, from the command line

The weights file is a scratchnet checkpoint without the optimiser: the run's config and the model's
state dict (torchvision's names), so ``--eval-only`` reads it like any other checkpoint.
"""
from importlib import resources
from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint

WEIGHTS_FILE = "weights.npz"
# Each shipped network: its folder under weights/, and the densenet_cifar settings it was trained with.
PRETRAINED = {
    "densenet-bc-L40-k12-cifar10": {"depth": 40, "k": 12, "bc": True, "theta": 0.5, "dropout": 0.0,
                                    "num_classes": 10, "preactivation": True},
}


class PretrainedError(ValueError):
    """Weights asked for that scratchnet does not ship, or that this installation lacks."""


def _describe(settings):
    return ", ".join(f"{key}={value!r}" for key, value in settings.items())


def pretrained_name(settings):
    """The shipped network trained with exactly these densenet_cifar settings, or a PretrainedError naming them.

    settings: depth, k, bc, theta (None: the default compression), dropout, num_classes, preactivation.
    """
    settings = dict(settings)
    if settings.get("theta") is None:
        settings["theta"] = 0.5 if settings.get("bc", True) else 1.0
    for name, trained in PRETRAINED.items():
        if all(settings.get(key) == value for key, value in trained.items()):
            return name
    name, trained = next(iter(PRETRAINED.items()))
    differing = {key: settings.get(key) for key, value in trained.items() if settings.get(key) != value}
    raise PretrainedError(
        f"pretrained=True: scratchnet ships trained weights only for {name} ({_describe(trained)}), "
        f"and this model asks for {_describe(differing)}; build it with those settings, or leave pretrained "
        "off and train it yourself (python -m scratchnet.train --help)")


def weights_folder():
    """The folder of the shipped networks, one subfolder each (inside the installed package)."""
    return Path(str(resources.files(__package__).joinpath("weights")))


def pretrained_path(name="densenet-bc-L40-k12-cifar10"):
    """The path of a shipped network's weights file; a PretrainedError if this installation lacks it."""
    if name not in PRETRAINED:
        raise PretrainedError(f"no shipped weights are called {name!r}; there are: {', '.join(PRETRAINED)}")
    path = weights_folder() / name / WEIGHTS_FILE
    if not path.is_file():
        raise PretrainedError(f"the weights of {name} are not in this installation ({path} is missing); "
                              "reinstall scratchnet (pip install --force-reinstall scratchnet), or from a checkout, "
                              "git checkout -- scratchnet/models/weights")
    return path


def load_pretrained(model, name):
    """Load the shipped weights ``name`` into ``model`` (built with its settings), in place; returns model.

    The values are converted to the model's dtype and device. A damaged file is a CheckpointError
    naming it.
    """
    path = pretrained_path(name)
    checkpoint = load_checkpoint(path)
    try:
        model.load_state_dict(checkpoint["model"])
    except ValueError as e:
        raise CheckpointError(f"{path} does not hold the weights of {name} ({e})") from None
    return model
