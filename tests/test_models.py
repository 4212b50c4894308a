"""DenseNet: published parameter counts, torchvision's state-dict names, and the whole
network against a PyTorch DenseNet in float64 (logits, every gradient, running statistics)."""
import re

import numpy as np
import pytest

from scratchnet import ops
from scratchnet.backend import to_device, to_numpy
from scratchnet.gradcheck import check_module_directional, norm_rel_error
from scratchnet.models import densenet121, densenet169, densenet201, densenet_cifar

torch = pytest.importorskip("torch")
from scratchnet.torch_reference import torch_densenet121, torch_densenet_cifar  # noqa: E402


@pytest.mark.parametrize("build, expected", [
    (lambda: densenet_cifar(40, 12, bc=False), 1_019_722),              # DenseNet (L=40, k=12)
    (lambda: densenet_cifar(100, 12), 769_162),                         # DenseNet-BC (L=100, k=12), C10
    (lambda: densenet_cifar(100, 12, num_classes=100), 800_032),        # the same on C100
    (lambda: densenet_cifar(250, 24), 15_324_406),                      # DenseNet-BC (L=250, k=24)
    (lambda: densenet_cifar(190, 40), 25_624_430),                      # DenseNet-BC (L=190, k=40)
    (densenet121, 7_978_856),
    (densenet169, 14_149_480),
    (densenet201, 20_013_928),
], ids=["DenseNet-40-12", "BC-100-12", "BC-100-12-C100", "BC-250-24", "BC-190-40", "121", "169", "201"])
def test_parameter_counts_are_the_published_ones(build, expected):
    assert build().num_parameters() == expected


def test_a_depth_that_does_not_fit_names_the_nearest_valid_ones():
    with pytest.raises(ValueError, match=re.escape("depth 41 does not fit DenseNet-BC: (depth - 4) must be a "
                                                   "positive multiple of 6; the nearest valid depths are 40 or 46")):
        densenet_cifar(41)
    with pytest.raises(ValueError, match="the nearest valid depths are 37 or 40"):
        densenet_cifar(39, bc=False)
    with pytest.raises(ValueError, match="the nearest valid depths are 10 or 16"):
        densenet_cifar(4)


def test_structure_of_a_bc_layer_and_of_a_basic_layer():
    bc = densenet_cifar(40, 12)
    layer = bc.features.denseblock2.denselayer3
    assert list(layer._modules) == ["norm1", "relu1", "conv1", "norm2", "relu2", "conv2"]
    # Block 2 starts with floor(0.5 * (24 + 6 * 12)) = 48 channels; layer 3 sees 48 + 2k.
    assert layer.conv1.weight.shape == (48, 72, 1, 1) and layer.conv2.weight.shape == (12, 48, 3, 3)
    basic = densenet_cifar(40, 12, bc=False)
    assert list(basic.features.denseblock1.denselayer1._modules) == ["norm1", "relu1", "conv1"]
    assert basic.features.denseblock1.denselayer1.conv1.weight.shape == (12, 16, 3, 3)
    dropped = densenet_cifar(40, 12, dropout=0.2)
    assert list(dropped.features.denseblock1.denselayer1._modules) == [
        "norm1", "relu1", "conv1", "drop1", "norm2", "relu2", "conv2", "drop2"]
    assert list(dropped.features.transition1._modules) == ["norm", "relu", "conv", "drop", "pool"]


def test_initialisation_is_torchvisions():
    model = densenet_cifar(40, 12, seed=3)
    conv = model.features.denseblock3.denselayer6.conv2.weight.data   # fan_in = 48 * 9
    assert abs(conv.std() / np.sqrt(2 / (48 * 9)) - 1) < 0.05
    norm = model.features.transition2.norm
    assert (norm.weight.data == 1).all() and (norm.bias.data == 0).all() and (model.classifier.bias.data == 0).all()
    bound = 1 / np.sqrt(model.num_features)
    assert np.abs(model.classifier.weight.data).max() <= bound


def pairs(ours, theirs):
    return [(name, ours[name], value) for name, value in theirs.items()]


def copy_from_torch(model, reference):
    """Load a PyTorch model's state dict as torchvision users would: arrays from .numpy()."""
    model.load_state_dict({name: value.detach().numpy() for name, value in reference.state_dict().items()})


def compare(ours, theirs, what, tolerance=1e-9):
    # Measured at each tensor's scale: through dozens of layers (and batch norm over
    # few values) float64 rounding grows to ~1e-10 of the largest entry, which is a
    # large part of an entry a million times smaller.
    error = norm_rel_error(to_numpy(ours), theirs.detach().numpy())
    assert error < tolerance, f"{what}: relative error {error:.2e}"


CONFIGS = {
    "BC-16-6": (lambda: densenet_cifar(16, 6, dtype=np.float64), lambda: torch_densenet_cifar(16, 6, True), 16),
    "DenseNet-10-4": (lambda: densenet_cifar(10, 4, bc=False, dtype=np.float64),
                      lambda: torch_densenet_cifar(10, 4, False), 16),
    "DenseNet-121": (lambda: densenet121(num_classes=7, dtype=np.float64), lambda: torch_densenet121(7), 64),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_whole_network_matches_pytorch_in_train_then_eval_mode(name, device):
    build, build_reference, size = CONFIGS[name]
    torch.manual_seed(0)
    reference = build_reference().double()
    model = build()
    assert set(model.state_dict()) == set(reference.state_dict())
    copy_from_torch(model, reference)
    model.to(device)
    rng = np.random.default_rng(0)

    for mode in ("train", "eval"):
        model.train(mode == "train")
        reference.train(mode == "train")
        x = rng.standard_normal((3, 3, size, size))
        dlogits = rng.standard_normal((3, reference.classifier.out_features))

        model.zero_grad()
        logits = model(to_device(x, device))
        dx = model.backward(to_device(dlogits, device))
        reference.zero_grad()
        x_tensor = torch.tensor(x, requires_grad=True)
        expected = reference(x_tensor)
        expected.backward(torch.tensor(dlogits))

        compare(logits, expected, f"{mode} logits")
        compare(dx, x_tensor.grad, f"{mode} input gradient")
        params = dict(model.named_parameters())
        for pname, param in reference.named_parameters():
            compare(params[pname].grad, param.grad, f"{mode} gradient of {pname}")
        buffers = dict(model.named_buffers())
        for bname, buffer in reference.named_buffers():
            if bname.endswith("num_batches_tracked"):
                assert int(buffers[bname]) == int(buffer) == 1, bname
            else:
                compare(buffers[bname], buffer, f"{mode} {bname}")


def test_state_dict_round_trips_into_pytorch():
    model = densenet_cifar(16, 6, dtype=np.float64, seed=5)
    reference = torch_densenet_cifar(16, 6, True).double()
    reference.load_state_dict({name: torch.from_numpy(value.copy()) for name, value in model.state_dict().items()})
    model.eval()
    reference.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16))
    compare(model(x), reference(torch.tensor(x)), "logits after export")


def test_load_state_dict_rejects_bad_keys_and_shapes():
    model = densenet_cifar(10, 4)
    state = {name: np.array(value) for name, value in model.state_dict().items()}
    missing = dict(state)
    del missing["features.norm5.running_var"]
    with pytest.raises(ValueError, match=r"1 missing key\(s\): features.norm5.running_var"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\): features.norm0.weight"):
        model.load_state_dict({**state, "features.norm0.weight": np.ones(8)})
    wrong = {**state, "classifier.weight": np.zeros((10, 5))}
    with pytest.raises(ValueError, match=re.escape("classifier.weight has shape (10, 5) but the model expects (10, 9)")):
        model.load_state_dict(wrong)
    before = model.classifier.weight.data.copy()
    assert np.array_equal(model.classifier.weight.data, before)   # nothing half-loaded


def test_load_state_dict_copies_values_in_place_and_keeps_dtype():
    model = densenet_cifar(10, 4)
    weight = model.classifier.weight.data
    state = {name: np.full(np.shape(value), 0.5, dtype=np.float64) for name, value in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.classifier.weight.data is weight and weight.dtype == np.float32 and (weight == 0.5).all()


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_directional_gradient_check_of_the_whole_network(dropout, device):
    model = densenet_cifar(10, 4, dropout=dropout, dtype=np.float64, seed=1).to(device)
    x = to_device(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), device)
    error, numeric, analytic = check_module_directional(model, x)
    assert error < 1e-7, f"numerical {numeric!r} vs analytic {analytic!r}"


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    model = densenet_cifar(10, 4, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    losses = []
    for _ in range(30):
        loss, dlogits = ops.softmax_cross_entropy(model(x), y)
        model.zero_grad()
        model.backward(dlogits)
        for param in model.parameters():
            param.data -= 0.3 * param.grad
        losses.append(float(loss))
    assert losses[-1] < 0.4 * losses[0]
