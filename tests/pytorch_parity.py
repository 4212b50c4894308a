"""Comparisons with PyTorch that the tests assert on and tests/parity_report.py tabulates.

Each function runs scratchnet and PyTorch on the same inputs and returns what to compare,
as ``(what, ours, theirs)`` triples of host arrays; the tests require each error to be
below a tolerance, the report prints the worst.
"""
import re

import numpy as np

from scratchnet.backend import to_device, to_numpy
from scratchnet.gradcheck import norm_rel_error, rel_error
from scratchnet.models import densenet121, densenet161, densenet_cifar, resnet_cifar

# float64 agrees element by element (CS231n's rel_error); float32 at the tensors' scale,
# since element-wise float32 errors of values near zero are rounding noise.
MEASURE = {"float64": rel_error, "float32": norm_rel_error}
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def op_against_pytorch(case, dtype, rng, device="cpu"):
    """One op case (tests/op_cases.py): the output and every input gradient for a random dout."""
    import torch
    arrays = [a.astype(dtype) for a in case.inputs(rng)]
    out, cache = case.forward(*[to_device(a, device) for a in arrays])
    dout = np.asarray(rng.standard_normal(np.shape(out)), dtype=dtype)
    grads = case.backward(to_device(dout, device), cache)
    if not isinstance(grads, (tuple, list)):   # ops with one input return a bare gradient
        grads = [grads]
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = case.reference(*tensors)
    expected.backward(torch.tensor(dout))
    triples = [("output", out, expected)] + [(f"gradient of input {i}", grad, tensor.grad)
                                             for i, (grad, tensor) in enumerate(zip(grads, tensors))]
    return [(what, to_numpy(ours), theirs.detach().numpy()) for what, ours, theirs in triples]


def _torch_densenet_cifar(depth, k, bc, preactivation=True):
    from scratchnet.bench.torch_reference import torch_densenet_cifar
    return torch_densenet_cifar(depth, k, bc, preactivation=preactivation)


def _torch_densenet121(num_classes):
    from scratchnet.bench.torch_reference import torch_densenet121
    return torch_densenet121(num_classes)


def _torch_densenet161(num_classes):
    from scratchnet.bench.torch_reference import TorchDenseNet   # torchvision's densenet161 configuration
    return TorchDenseNet(48, (6, 12, 36, 24), 96, 4, 0.5, num_classes, "imagenet")


def _torch_resnet(depth, **options):
    from scratchnet.bench.torch_resnet import TorchResNet
    return TorchResNet(depth, **options)


def _resnet_entry(depth, preactivation, bottleneck=False, shortcut=True):
    options = dict(preactivation=preactivation, bottleneck=bottleneck, shortcut=shortcut)
    return (lambda: resnet_cifar(depth, dtype=np.float64, **options), lambda: _torch_resnet(depth, **options), 16)


# Every ResNet configuration: original / pre-activation x basic / bottleneck x shortcut / plain. The ResNets are
# deep enough for identity blocks after each projection (basic 14, bottleneck 20: two blocks a stage; at 11 every
# bottleneck block projects); the plain nets have no shortcut to tell apart, so one block a stage does.
RESNETS = {
    "ResNet-14": _resnet_entry(14, preactivation=False),
    "Plain-8": _resnet_entry(8, preactivation=False, shortcut=False),
    "ResNet-20-bottleneck": _resnet_entry(20, preactivation=False, bottleneck=True),
    "Plain-11-bottleneck": _resnet_entry(11, preactivation=False, bottleneck=True, shortcut=False),
    "PreAct-ResNet-14": _resnet_entry(14, preactivation=True),
    "PreAct-Plain-8": _resnet_entry(8, preactivation=True, shortcut=False),
    "PreAct-ResNet-20-bottleneck": _resnet_entry(20, preactivation=True, bottleneck=True),
    "PreAct-Plain-11-bottleneck": _resnet_entry(11, preactivation=True, bottleneck=True, shortcut=False),
}

# The DenseNets in the post-activation order (Conv-BN-ReLU, the textbook tier only).
POST_ACTIVATION = {
    "BC-16-6-post": (lambda: densenet_cifar(16, 6, preactivation=False, dtype=np.float64),
                     lambda: _torch_densenet_cifar(16, 6, True, preactivation=False), 16),
    "DenseNet-10-4-post": (lambda: densenet_cifar(10, 4, bc=False, preactivation=False, dtype=np.float64),
                           lambda: _torch_densenet_cifar(10, 4, False, preactivation=False), 16),
}

# name -> (build(**options), build the PyTorch reference or None, image size), all float64.
# The pre-activation DenseNets' build takes memory_efficient=...; the others' nothing (they have one tier).
NETWORKS = {
    "BC-16-6": (lambda **kw: densenet_cifar(16, 6, dtype=np.float64, **kw),
                lambda: _torch_densenet_cifar(16, 6, True), 16),
    "BC-16-6-dropout": (lambda **kw: densenet_cifar(16, 6, dropout=0.2, dtype=np.float64, **kw), None, 16),
    "DenseNet-10-4": (lambda **kw: densenet_cifar(10, 4, bc=False, dtype=np.float64, **kw),
                      lambda: _torch_densenet_cifar(10, 4, False), 16),
    "DenseNet-121": (lambda **kw: densenet121(num_classes=7, dtype=np.float64, **kw), lambda: _torch_densenet121(7),
                     64),
    # 64x64, as DenseNet-121: at 32x32 the last block normalises 3 values per channel, ill-conditioned.
    "DenseNet-161": (lambda **kw: densenet161(num_classes=7, dtype=np.float64, **kw), lambda: _torch_densenet161(7),
                     64),
    **POST_ACTIVATION,
    **RESNETS,
}
WITH_REFERENCE = sorted(name for name, (_, reference, _) in NETWORKS.items() if reference is not None)
WITH_MEMORY_EFFICIENT_TWIN = sorted(name for name in NETWORKS if name not in RESNETS and name not in POST_ACTIVATION)


# DenseNet's norm, norm1, ...; ResNet's bn, bn1, ... and the original form's projection BN, downsample.1.
NORM_STATE = re.compile(r"(^|\.)(?:norm\d*|bn\d*|downsample\.1)\.(weight|bias|running_mean|running_var)$")


def randomised_batch_norms(state, seed=7):
    """A copy of a state dict (name -> NumPy array) in which every batch norm has a weight, bias and
    running statistics of its own.

    At torchvision's initialisation (weight 1, bias 0, running mean 0, variance 1) all batch norms that
    see the same feature maps compute the same function, and a network that applies the wrong one (say,
    recomputes another layer's output) still gives the right numbers. Training makes them differ at once.
    """
    rng = np.random.default_rng(seed)
    new = {}
    for name, value in state.items():
        value = np.array(value)
        match = NORM_STATE.search(name)
        if match:
            kind = match.group(2)
            if kind == "weight":
                value = 1 + 0.3 * rng.standard_normal(value.shape)
            elif kind in ("bias", "running_mean"):
                value = 0.3 * rng.standard_normal(value.shape)
            else:
                value = rng.uniform(0.5, 2.0, value.shape)
        new[name] = value
    assert any(NORM_STATE.search(name) for name in state), "no batch norm found to randomise"
    return new


def run_step(model, x, dlogits, train):
    """One forward and backward in the given mode -> logits, dx, {name: grad}, {name: buffer}, on the host."""
    model.train(train)
    model.zero_grad()
    logits = model(x)
    dx = model.backward(dlogits)
    grads = {name: to_numpy(p.grad) for name, p in model.named_parameters()}
    buffers = {name: to_numpy(b) for name, b in model.named_buffers()}
    return to_numpy(logits), to_numpy(dx), grads, buffers


def num_classes(network):
    """The classifier's outputs, of a DenseNet (``classifier``) or a ResNet (``fc``), scratchnet's or PyTorch's."""
    return (network.fc if hasattr(network, "fc") else network.classifier).out_features


def network_against_pytorch(name, device="cpu", memory_efficient=False, seed=0):
    """NETWORKS[name] with the PyTorch reference's weights (and batch norms randomised, the same in both),
    a training step then an eval step on random inputs: logits, the input gradient, every parameter gradient
    and every buffer, in each mode."""
    import torch
    build, build_reference, size = NETWORKS[name]
    torch.manual_seed(0)
    reference = build_reference().double()
    state = randomised_batch_norms({key: value.detach().numpy() for key, value in reference.state_dict().items()})
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    model = build(memory_efficient=True) if memory_efficient else build()
    model.load_state_dict(state)
    model.to(device)
    rng = np.random.default_rng(seed)
    triples = []
    for mode in ("train", "eval"):
        reference.train(mode == "train")
        x = rng.standard_normal((3, 3, size, size))
        dlogits = rng.standard_normal((3, num_classes(reference)))
        logits, dx, grads, buffers = run_step(model, to_device(x, device), to_device(dlogits, device), mode == "train")
        reference.zero_grad()
        x_tensor = torch.tensor(x, requires_grad=True)
        expected = reference(x_tensor)
        expected.backward(torch.tensor(dlogits))
        triples += [(f"{mode} logits", logits, expected.detach().numpy()),
                    (f"{mode} input gradient", dx, x_tensor.grad.numpy())]
        triples += [(f"{mode} gradient of {key}", grads[key], param.grad.numpy())
                    for key, param in reference.named_parameters()]
        triples += [(f"{mode} {key}", buffers[key], buffer.numpy()) for key, buffer in reference.named_buffers()]
    return triples
