"""DenseNet: published parameter counts, torchvision's state-dict names (and the old ones of its
published checkpoints), load_state_dict strict and not, and the whole network against a PyTorch
DenseNet in float64 (logits, every gradient, running statistics), for the textbook DenseNet and
the memory-efficient one alike."""
import re
from collections import OrderedDict

import numpy as np
import pytest

from pytorch_parity import WITH_MEMORY_EFFICIENT_TWIN, WITH_REFERENCE, network_against_pytorch, randomised_batch_norms
from scratchnet import ops
from scratchnet.backend import to_device
from scratchnet.gradcheck import check_module_directional, norm_rel_error
from scratchnet.models import densenet121, densenet161, densenet169, densenet201, densenet_cifar, resnet_cifar
from scratchnet.optim import SGD


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
    (densenet161, 28_681_000),      # torchvision's figure, and TorchDenseNet(48, (6, 12, 36, 24), 96, ...)'s count
], ids=["DenseNet-40-12", "BC-100-12", "BC-100-12-C100", "BC-250-24", "BC-190-40", "121", "169", "201", "161"])
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


# Every network with a reference, textbook; and memory-efficient, where it has that tier (the DenseNets).
PARITY_RUNS = [pytest.param(name, False, id=f"{name}-textbook") for name in WITH_REFERENCE] + [
    pytest.param(name, True, id=f"{name}-memory-efficient") for name in WITH_REFERENCE
    if name in WITH_MEMORY_EFFICIENT_TWIN]


@pytest.mark.parametrize("name, memory_efficient", PARITY_RUNS)
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
    expected = "classifier.weight has shape (10, 5) but the model expects (10, 9)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        model.load_state_dict(wrong)
    for name, value in model.state_dict().items():                 # nothing half-loaded
        assert np.array_equal(value, before[name]), name


def test_load_state_dict_copies_values_in_place_and_keeps_dtype():
    model = densenet_cifar(10, 4)
    weight = model.classifier.weight.data
    state = {name: np.full(np.shape(value), 0.5, dtype=np.float64) for name, value in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.classifier.weight.data is weight and weight.dtype == np.float32 and (weight == 0.5).all()


def random_state(model, seed=0):
    """The model's state dict with every value random: normal floats, counts from 1 to 99."""
    rng = np.random.default_rng(seed)
    return {name: np.asarray(rng.integers(1, 100, value.shape) if value.dtype.kind == "i"
                             else rng.standard_normal(value.shape))
            for name, value in model.state_dict().items()}


def copy_of_state(model):
    return {name: np.array(value) for name, value in model.state_dict().items()}


def test_strict_false_loads_the_keys_in_both_and_reports_the_rest_as_pytorch_does(torch):
    from scratchnet.bench.torch_reference import torch_densenet_cifar
    model, reference = densenet_cifar(16, 6, dtype=np.float64), torch_densenet_cifar(16, 6, True).double()
    before, state = copy_of_state(model), random_state(model)
    assert model.load_state_dict(state) == ([], []) and model.load_state_dict(state).missing_keys == []
    model.load_state_dict(before)
    partial = {key: value for key, value in state.items() if "denseblock2" not in key and key != "classifier.bias"}
    partial.update({"features.norm0.weight": np.ones(12), "head.weight": np.ones(3)})   # no such modules
    with pytest.raises(ValueError, match=r"25 missing key\(s\).*; 2 unexpected key\(s\)"):
        model.load_state_dict(partial)
    assert all(np.array_equal(value, before[key]) for key, value in model.state_dict().items())

    ours = model.load_state_dict(partial, strict=False)
    tensors = OrderedDict((key, torch.from_numpy(value)) for key, value in partial.items())
    # With PyTorch's version metadata, as its own state dicts carry: without it, PyTorch's batch norm
    # fills in an absent num_batches_tracked instead of reporting it.
    tensors._metadata = reference.state_dict()._metadata
    theirs = reference.load_state_dict(tensors, strict=False)
    assert sorted(ours.missing_keys) == sorted(theirs.missing_keys) and len(ours.missing_keys) == 25
    assert sorted(ours.unexpected_keys) == sorted(theirs.unexpected_keys) == ["features.norm0.weight", "head.weight"]
    reference_state = reference.state_dict()
    for key, value in model.state_dict().items():
        assert np.array_equal(value, partial[key] if key in partial else before[key]), key
        if key in partial:
            assert np.array_equal(value, reference_state[key].numpy()), key

    # A shape mismatch is an error even with strict=False, in PyTorch too; here nothing is loaded.
    loaded = copy_of_state(model)
    wrong = {**state, "classifier.weight": np.zeros((10, 5))}
    message = "classifier.weight has shape (10, 5) but the model expects (10, 24)"
    with pytest.raises(ValueError, match=re.escape(message)):
        model.load_state_dict(wrong, strict=False)
    with pytest.raises(RuntimeError, match="size mismatch for classifier.weight"):
        reference.load_state_dict({key: torch.from_numpy(value) for key, value in wrong.items()}, strict=False)
    assert all(np.array_equal(value, loaded[key]) for key, value in model.state_dict().items())


def legacy_torchvision_names(state):
    """The state dict spelled as torchvision's published checkpoints are: ``denselayer1.norm.1.weight``
    for ``denselayer1.norm1.weight`` (a dot before the layer's 1 or 2), and no num_batches_tracked."""
    return {re.sub(r"(\.denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value
            for key, value in state.items() if not key.endswith(".num_batches_tracked")}


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "memory-efficient"])
@pytest.mark.parametrize("bc", [True, False], ids=["BC", "basic"])
def test_the_old_names_of_torchvisions_checkpoints_load_each_value_into_its_place(bc, memory_efficient):
    model = densenet_cifar(16 if bc else 10, 4, bc=bc, dtype=np.float64, memory_efficient=memory_efficient)
    for key, count in model.named_buffers():
        if key.endswith(".num_batches_tracked"):
            count[...] = 5                  # the checkpoint has no counts: each batch norm keeps its own
    before, state = copy_of_state(model), random_state(model)
    legacy = legacy_torchvision_names(state)
    keys = list(legacy)
    assert "features.denseblock1.denselayer2.norm.1.running_var" in legacy
    assert "features.transition1.norm.weight" in legacy and "features.norm5.weight" in legacy    # not renamed
    assert model.load_state_dict(legacy) == ([], [])
    assert list(legacy) == keys                                     # the caller's dict is left as it was
    for key, value in model.state_dict().items():
        expected = before[key] if key.endswith(".num_batches_tracked") else state[key]
        assert np.array_equal(value, expected), key


def test_a_densenet121_checkpoint_in_torchvisions_old_names_loads_as_torchvision_loads_it(torch):
    # The case: 580 keys renamed and 121 counts absent, so 701 missing and 580 unexpected before.
    from scratchnet.bench.torch_reference import torch_densenet121
    torch.manual_seed(0)
    reference = randomised_batch_norms({key: value.numpy() for key, value in torch_densenet121().state_dict().items()})
    legacy = legacy_torchvision_names(reference)
    assert len(set(reference) - set(legacy)) == 701 and len(set(legacy) - set(reference)) == 580
    model = densenet121(dtype=np.float64)
    assert model.load_state_dict(legacy) == ([], [])
    for key, value in model.state_dict().items():
        assert np.array_equal(value, reference[key]), key


def test_a_key_given_in_both_spellings_is_an_error_that_names_it():
    model = densenet_cifar(10, 4, dtype=np.float64)
    before, state = copy_of_state(model), random_state(model)
    modern, old = "features.denseblock2.denselayer1.conv2.weight", "features.denseblock2.denselayer1.conv.2.weight"
    both = {**state, old: state[modern]}
    with pytest.raises(ValueError, match=re.escape(f"load_state_dict: {modern} is given twice, also under "
                                                   f"torchvision's old name {old}")):
        model.load_state_dict(both, strict=False)
    assert all(np.array_equal(value, before[key]) for key, value in model.state_dict().items())
    mixed = {name: value for name, value in state.items() if "denseblock1" not in name}
    mixed.update(legacy_torchvision_names({name: value for name, value in state.items() if "denseblock1" in name}))
    assert model.load_state_dict(mixed) == ([], [])             # one spelling per key, either: fine
    assert all(np.array_equal(value, state[key]) for key, value in model.state_dict().items()
               if not key.endswith(".num_batches_tracked"))


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "memory-efficient"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_directional_gradient_check_of_the_whole_network(dropout, memory_efficient, device):
    model = densenet_cifar(10, 4, dropout=dropout, dtype=np.float64, seed=1, memory_efficient=memory_efficient)
    model.to(device)
    x = to_device(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), device)
    error, numeric, analytic = check_module_directional(model, x)
    assert error < 1e-7, f"numerical {numeric!r} vs analytic {analytic!r}"


@pytest.mark.parametrize("build", [
    lambda: densenet_cifar(10, 4, seed=0),
    lambda: densenet_cifar(10, 4, preactivation=False, seed=0),
    lambda: resnet_cifar(8, preactivation=False, seed=0),
    lambda: resnet_cifar(8, preactivation=True, seed=0),
    lambda: resnet_cifar(8, preactivation=True, shortcut=False, seed=0),
], ids=["densenet", "densenet-post", "resnet-original", "resnet-preactivation", "plain"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(build):
    model = build()
    optimiser = SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    losses = []
    for _ in range(30):
        loss, dlogits = ops.softmax_cross_entropy(model(x), y)
        model.zero_grad()
        model.backward(dlogits)
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.4 * losses[0], losses