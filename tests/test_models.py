"""DenseNet: published parameter counts, torchvision's state-dict names, and the whole
network against a PyTorch DenseNet in float64 (logits, every gradient, running statistics),
for the textbook DenseNet and the memory-efficient one alike."""
import re

import numpy as np
import pytest

from pytorch_parity import WITH_REFERENCE, network_against_pytorch
from scratchnet import ops
from scratchnet.backend import to_device
from scratchnet.gradcheck import check_module_directional, norm_rel_error
from scratchnet.models import densenet121, densenet169, densenet201, densenet_cifar


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "memory-efficient"])
@pytest.mark.parametrize("build, expected", [
    (lambda **kw: densenet_cifar(40, 12, bc=False, **kw), 1_019_722),          # DenseNet (L=40, k=12)
    (lambda **kw: densenet_cifar(100, 12, **kw), 769_162),                     # DenseNet-BC (L=100, k=12), C10
    (lambda **kw: densenet_cifar(100, 12, num_classes=100, **kw), 800_032),    # the same on C100
    (lambda **kw: densenet_cifar(250, 24, **kw), 15_324_406),                  # DenseNet-BC (L=250, k=24)
    (lambda **kw: densenet_cifar(190, 40, **kw), 25_624_430),                  # DenseNet-BC (L=190, k=40)
    (densenet121, 7_978_856),
    (densenet169, 14_149_480),
    (densenet201, 20_013_928),
], ids=["DenseNet-40-12", "BC-100-12", "BC-100-12-C100", "BC-250-24", "BC-190-40", "121", "169", "201"])
def test_parameter_counts_are_the_published_ones(build, expected, memory_efficient):
    assert build(memory_efficient=memory_efficient).num_parameters() == expected


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


def test_the_memory_efficient_model_has_the_textbook_names_with_relu_fused_into_norm():
    textbook, efficient = densenet_cifar(16, 6, dropout=0.2), densenet_cifar(16, 6, dropout=0.2, memory_efficient=True)
    assert list(efficient.state_dict()) == list(textbook.state_dict())
    assert list(efficient.features.denseblock1.denselayer1._modules) == [
        "norm1", "conv1", "drop1", "norm2", "conv2", "drop2"]
    assert list(efficient.features.transition1._modules) == ["norm", "conv", "drop", "pool"]


def test_initialisation_is_torchvisions():
    model = densenet_cifar(40, 12, seed=3)
    conv = model.features.denseblock3.denselayer6.conv2.weight.data   # fan_in = 48 * 9
    assert abs(conv.std() / np.sqrt(2 / (48 * 9)) - 1) < 0.05
    norm = model.features.transition2.norm
    assert (norm.weight.data == 1).all() and (norm.bias.data == 0).all() and (model.classifier.bias.data == 0).all()
    bound = 1 / np.sqrt(model.num_features)
    assert np.abs(model.classifier.weight.data).max() <= bound


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "memory-efficient"])
@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_whole_network_matches_pytorch_in_train_then_eval_mode(name, memory_efficient, device, torch):
    # Measured at each tensor's scale: through dozens of layers (and batch norm over
    # few values) float64 rounding grows to ~1e-10 of the largest entry, which is a
    # large part of an entry a million times smaller.
    triples = network_against_pytorch(name, device, memory_efficient)
    assert any("num_batches_tracked" in what for what, _, _ in triples)     # compared too: exactly 1, then 1
    for what, ours, theirs in triples:
        error = norm_rel_error(ours, theirs)
        assert error < 1e-9, f"{what}: relative error {error:.2e}"


def compare(ours, theirs, what, tolerance=1e-9):
    error = norm_rel_error(ours, theirs.detach().numpy())
    assert error < tolerance, f"{what}: relative error {error:.2e}"


def test_state_dict_round_trips_into_pytorch(torch):
    from scratchnet.bench.torch_reference import torch_densenet_cifar
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
    before = {name: value.copy() for name, value in state.items()}
    for value in state.values():
        value += 1                          # every value a loaded model would differ in
    missing = dict(state)
    del missing["features.norm5.running_var"]
    with pytest.raises(ValueError, match=r"1 missing key\(s\): features.norm5.running_var"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\): features.norm0.weight"):
        model.load_state_dict({**state, "features.norm0.weight": np.ones(8)})
    wrong = {**state, "classifier.weight": np.zeros((10, 5))}
    with pytest.raises(ValueError, match=re.escape("classifier.weight has shape (10, 5) but the model expects (10, 9)")):
        model.load_state_dict(wrong)
    for name, value in model.state_dict().items():                 # nothing half-loaded
        assert np.array_equal(value, before[name]), name


def test_load_state_dict_copies_values_in_place_and_keeps_dtype():
    model = densenet_cifar(10, 4)
    weight = model.classifier.weight.data
    state = {name: np.full(np.shape(value), 0.5, dtype=np.float64) for name, value in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.classifier.weight.data is weight and weight.dtype == np.float32 and (weight == 0.5).all()


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "memory-efficient"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_directional_gradient_check_of_the_whole_network(dropout, memory_efficient, device):
    model = densenet_cifar(10, 4, dropout=dropout, dtype=np.float64, seed=1, memory_efficient=memory_efficient)
    model.to(device)
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
