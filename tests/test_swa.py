"""Stochastic weight averaging against torch.optim.swa_utils: the running mean of the weights, then the
batch-norm statistics made again for it, on both tiers of DenseNet-BC."""
import numpy as np
import pytest

from scratchnet.gradcheck import norm_rel_error
from scratchnet.models import densenet_cifar
from scratchnet.swa import WeightAverage, batch_norm_layers, update_bn


def compare(ours, theirs, what, tolerance=1e-12):
    error = norm_rel_error(ours, theirs.detach().numpy() if hasattr(theirs, "detach") else theirs)
    assert error < tolerance, f"{what}: relative error {error:.2e}"


def twins(torch, memory_efficient, seed=3):
    """A small float64 DenseNet-BC and its PyTorch reference, holding the same weights."""
    from scratchnet.bench.torch_reference import torch_densenet_cifar
    model = densenet_cifar(16, 6, dtype=np.float64, seed=seed, memory_efficient=memory_efficient)
    reference = torch_densenet_cifar(16, 6, True).double()
    reference.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in model.state_dict().items()})
    return model, reference


def snapshots(model, count, rng):
    """``count`` made-up points along a run: each parameter moved by noise, one state dict after another."""
    names = [name for name, _ in model.named_parameters()]
    state = {name: np.array(value) for name, value in model.state_dict().items()}
    points = []
    for _ in range(count):
        for name in names:
            state[name] = state[name] + 0.1 * rng.standard_normal(state[name].shape)
        points.append({name: value.copy() for name, value in state.items()})
    return points


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "fast"])
def test_weight_average_is_averaged_models_mean(torch, memory_efficient):
    from torch.optim.swa_utils import AveragedModel
    model, reference = twins(torch, memory_efficient)
    average, theirs = WeightAverage(model), AveragedModel(reference)
    points = snapshots(model, 4, np.random.default_rng(0))
    for point in points:
        model.load_state_dict(point)
        reference.load_state_dict({name: torch.from_numpy(value) for name, value in point.items()})
        average.update(model)
        theirs.update_parameters(reference)
    assert average.n == int(theirs.n_averaged) == 4
    averaged = dict(theirs.module.named_parameters())
    for name, mean in average.mean.items():
        compare(mean, averaged[name], name)
        # and, independently of PyTorch, the plain mean of the four points
        compare(mean, np.mean([point[name] for point in points], axis=0), f"{name} (np.mean)")


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["textbook", "fast"])
def test_update_bn_matches_swa_utils(torch, memory_efficient):
    from torch.optim.swa_utils import update_bn as torch_update_bn
    model, reference = twins(torch, memory_efficient)
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((n, 3, 16, 16)) for n in (5, 3, 4)]   # unequal sizes: a mean of batch means
    model.eval()
    assert update_bn(model, batches) == 3
    torch_update_bn([torch.from_numpy(x) for x in batches], reference)
    buffers = dict(reference.named_buffers())
    for name, value in model.named_buffers():
        compare(value, buffers[name], name)
    assert all(int(layer.num_batches_tracked) == 3 for layer in batch_norm_layers(model))
    assert all(layer.momentum == 0.1 for layer in batch_norm_layers(model)), "momentum restored"
    assert not model.training, "the mode it was in restored"
    reference.eval()
    x = rng.standard_normal((2, 3, 16, 16))
    compare(model(x), reference(torch.from_numpy(x)), "logits with the new statistics", 1e-10)


def test_update_bn_takes_the_plain_mean_of_batch_statistics():
    """Independently of PyTorch: the first layer's norm1 sees the stem convolution's output, whose batch mean
    and unbiased variance, averaged over the batches, are what update_bn must leave in that norm."""
    model = densenet_cifar(16, 6, dtype=np.float64, seed=0)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((n, 3, 8, 8)) for n in (4, 6)]
    update_bn(model, batches)
    conv0 = [model.features.conv0(x) for x in batches]
    norm = model.features.denseblock1.denselayer1.norm1
    compare(norm.running_mean, np.mean([c.mean(axis=(0, 2, 3)) for c in conv0], axis=0), "mean")
    compare(norm.running_var, np.mean([c.var(axis=(0, 2, 3), ddof=1) for c in conv0], axis=0),
            "var")


def test_weight_average_round_trips_and_refuses_an_empty_copy():
    model = densenet_cifar(16, 6, seed=0)
    average = WeightAverage(model)
    with pytest.raises(ValueError, match="no snapshot"):
        average.copy_to(model)
    average.update(model)
    average.update(densenet_cifar(16, 6, seed=1))
    again = WeightAverage(model)
    again.load_state_dict(average.state_dict())
    assert again.n == 2 and all(np.array_equal(again.mean[name], average.mean[name]) for name in average.mean)
    with pytest.raises(ValueError, match="lacks"):
        again.load_state_dict({"n_averaged": np.asarray(1)})
    again.copy_to(model)
    assert np.array_equal(model.features.conv0.weight.data, average.mean["features.conv0.weight"])
