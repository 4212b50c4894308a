"""Checks for lecture 08 (vanishing gradients, measured)."""
import functools
import math

import numpy as np

from scratchnet import ops
from scratchnet.gradcheck import numerical_gradient, rel_error
from scratchnet.models import densenet_cifar, resnet_cifar
from scratchnet.monitor import TrainingMonitor
from scratchnet.nn import Conv2d, Linear, Module, Sequential
from scratchnet.optim import SGD

from . import ExerciseFailed, exercise, require


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _chain_output(x, depth, w):
    h = x
    for _ in range(depth):
        h = _sigmoid(w * h)
    return h


# (x, depth, w): weight 1 as in the lecture, a weight above 4 (where a layer can amplify), a negative one
CHAIN_CASES = [(0.3, 1, 1.0), (-1.0, 3, 1.0), (2.0, 8, 1.0), (0.5, 5, 2.5), (-0.4, 6, -0.7), (1.0, 4, 6.0)]


@exercise("Exercise 1, the derivative of a sigmoid chain")
def check_sigmoid_chain_derivative(sigmoid_chain_derivative):
    """sigmoid_chain_derivative(x, depth, w) -> d h_depth / d x for h_0 = x, h_l = sigmoid(w * h_{l-1}),
    checked against central differences, and against the bound (|w| / 4) ** depth."""
    for x, depth, w in CHAIN_CASES:
        got = sigmoid_chain_derivative(x, depth, w)
        case = f"x = {x}, depth {depth}, w = {w}"
        require(np.ndim(got) == 0, f"{case}: return one number (the derivative), got shape {np.shape(got)}")
        point = np.array([x], dtype=np.float64)
        want = float(numerical_gradient(lambda p: _chain_output(p, depth, w).sum(), point, h=1e-4)[0])
        if rel_error(np.array(got, dtype=np.float64), np.array(want)) > 1e-6:
            hint = ""
            if math.isclose(float(got), (abs(w) / 4) ** depth, rel_tol=1e-9):
                hint = " That is the bound (|w|/4)^depth, which only holds with equality where every z_l = 0."
            raise ExerciseFailed(f"{case}: got {float(got):.6g}, finite differences give {want:.6g}.{hint} "
                                 "Each layer contributes w * sigmoid'(z_l), with z_l = w * h_{l-1} its "
                                 "pre-activation and sigmoid'(z) = sigmoid(z) * (1 - sigmoid(z)) = h_l * (1 - h_l)")
        require(abs(float(got)) <= (abs(w) / 4) ** depth * (1 + 1e-12),
                f"{case}: |{float(got):.6g}| is above the bound (|w|/4)^depth = {(abs(w) / 4) ** depth:.6g}")
    # deep, where finite differences are too small to resolve: the limit of the per-layer factor (w = 1)
    deep = float(sigmoid_chain_derivative(0.0, 40, 1.0))
    fixed = 0.5
    for _ in range(200):                                    # h* = sigmoid(h*), by iteration
        fixed = _sigmoid(fixed)
    factor = fixed * (1 - fixed)
    ratio = deep / float(sigmoid_chain_derivative(0.0, 39, 1.0))
    require(math.isclose(ratio, factor, rel_tol=1e-6),
            f"depth 40 / depth 39 = {ratio:.6g}, but deep in the chain each layer should multiply by "
            f"sigmoid'(z*) = h*(1 - h*) = {factor:.6g} at the fixed point h* = sigmoid(h*) = {fixed:.4f}")
    return (f"matches central differences in {len(CHAIN_CASES)} cases and stays below (|w|/4)^depth; deep in a "
            f"w = 1 chain each layer multiplies by h*(1 - h*) = {factor:.4f} (h* = {fixed:.4f}), not 0.25: "
            f"at depth 40 the derivative is {deep:.3g}, against 0.25^40 = {0.25 ** 40:.3g}")


def _convolutions(model):
    """The model's convolutions, input to output (their registration order, which is the forward order for the
    plain nets and DenseNets used here)."""
    return [module for _, module in model.named_modules() if isinstance(module, Conv2d)]


def _watched_steps(model, seed):
    """Two steps of model, watched by a TrainingMonitor (steps 0 and 1, an SGD update between them) ->
    (records, {step: |grad first conv| / |grad last conv|} computed from .grad)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3, 16, 16))
    y = rng.integers(0, 10, 4)
    monitor = TrainingMonitor(model, every=1)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    direct = {}
    for step in (0, 1):
        with monitor.step(step):
            _, dlogits = ops.softmax_cross_entropy(model(x), y)
            model.zero_grad()
            model.backward(dlogits)
            convs = _convolutions(model)
            direct[step] = (float(np.linalg.norm(convs[0].weight.grad))
                            / float(np.linalg.norm(convs[-1].weight.grad)))
            optimizer.step()
    return monitor.records, direct


@exercise("Exercise 2, the first/last convolution gradient ratio from monitor records")
def check_first_last_conv_ratio(first_last_conv_ratio):
    """first_last_conv_ratio(records, step) -> |grad of the first conv's weight| / |grad of the last conv's
    weight| at ``step``, from TrainingMonitor records; checked against the same ratio computed from ``.grad``
    directly, for two recorded steps of a plain net and of a DenseNet-BC (memory-efficient: fast-tier
    convolutions)."""
    models = {"plain-8": resnet_cifar(8, preactivation=False, shortcut=False, dtype=np.float64, seed=1),
              "DenseNet-BC (L=10, k=4)": densenet_cifar(10, 4, dtype=np.float64, memory_efficient=True, seed=1)}
    shown = []
    for seed, (name, model) in enumerate(models.items()):
        records, direct = _watched_steps(model, seed)
        for step in (0, 1):
            got = first_last_conv_ratio(records, step)
            want = direct[step]
            require(np.ndim(got) == 0, f"{name}, step {step}: return one number, got shape {np.shape(got)}")
            if not math.isclose(float(got), want, rel_tol=1e-9):
                hint = (" That is last/first: the ratio asked for is first/last." if math.isclose(float(got),
                        1 / want, rel_tol=1e-9) else
                        " Use each row's weight_grad_norm (the gradient of the weight), only rows whose type ends "
                        "in Conv2d (not the Linear classifier), only the rows of the asked step, in forward "
                        "order (the row's index).")
                raise ExerciseFailed(f"{name}, step {step}: got {float(got):.6g}, the weights' .grad give "
                                     f"{want:.6g}.{hint}")
        shown.append(f"{name} {direct[0]:.3g} then {direct[1]:.3g}")
    return "equals the ratio computed from .grad at steps 0 and 1: " + "; ".join(shown)


class _Sigmoid(Module):
    def forward(self, x):
        self._out = _sigmoid(x)
        return self._out

    def backward(self, dout):
        out, self._out = self._out, None
        return dout * out * (1 - out)


MLP_WIDTH = 256
THRESHOLDS = (1e-3, 1e-6, 1e-9)
SIGMOID_FACTOR = 0.25 / math.sqrt(3)        # the lecture's prediction per layer: sigma' <= 1/4, weights 1/sqrt(3)


def _sigmoid_mlp_ratio(depth, seed=0, width=MLP_WIDTH, batch=64, in_features=64):
    """|grad received by the first Linear's output| / |grad of the logits| for a sigmoid MLP of ``depth`` Linear
    layers (PyTorch's default initialisation), float64, random inputs."""
    rng = np.random.default_rng(seed)
    layers, fan_in = [], in_features
    for i in range(depth):
        out = 10 if i == depth - 1 else width
        layers.append(Linear(fan_in, out, dtype=np.float64, rng=rng))
        if i < depth - 1:
            layers.append(_Sigmoid())
        fan_in = out
    net = Sequential(*layers)
    x, y = rng.standard_normal((batch, in_features)), rng.integers(0, 10, batch)
    _, dlogits = ops.softmax_cross_entropy(net(x), y)
    dout, received = dlogits, None
    for module in reversed(layers):                 # the backward pass by hand, to see what each Linear receives
        if isinstance(module, Linear):
            received = dout                         # ends as what the first Linear's output received
        dout = module.backward(dout)
    return float(np.linalg.norm(received) / np.linalg.norm(dlogits))


@functools.lru_cache(maxsize=None)
def measured_vanishing_depths(seeds=(0, 1, 2)):
    """{threshold: the depths, over the seeds' random draws, at which the ratio first falls below it}."""
    found = {threshold: set() for threshold in THRESHOLDS}
    for seed in seeds:
        pending, depth = sorted(THRESHOLDS, reverse=True), 1
        while pending:
            depth += 1
            ratio = _sigmoid_mlp_ratio(depth, seed)
            while pending and ratio < pending[0]:
                found[pending.pop(0)].add(depth)
    return found


@exercise("Exercise 3, the depth at which a sigmoid MLP's first gradient falls below a threshold")
def check_vanishing_depth(vanishing_depth):
    """vanishing_depth(factor, threshold) -> the smallest number of Linear layers L for which a gradient multiplied
    by ``factor`` per layer, from the logits back to the first layer's output, ends below ``threshold`` times
    its start. Called with the lecture's predicted factor for a sigmoid MLP, 0.25 / sqrt(3), and checked against
    sigmoid MLPs (width 256, PyTorch's default initialisation) built and measured: three random draws each."""
    answers = {threshold: vanishing_depth(SIGMOID_FACTOR, threshold) for threshold in THRESHOLDS}
    measured = measured_vanishing_depths()          # deterministic: measured once per session
    lines = []
    for threshold, got in answers.items():
        require(isinstance(got, (int, np.integer)) and not isinstance(got, bool),
                f"vanishing_depth(0.25 / sqrt(3), {threshold:g}) returned {got!r}: give a whole number of layers")
        depths = sorted(measured[threshold])
        if got not in depths:
            bound = 1 + math.ceil(math.log(threshold) / math.log(0.25))
            hint = (f" {got} is what the bound 0.25 per layer alone gives: the weights multiply by about "
                    "1/sqrt(3) more per layer (PyTorch's default initialisation)." if got == bound else
                    " Between the first and the last Linear layer lie depth - 1 factors: the smallest L with "
                    "factor ** (L - 1) < threshold.")
            raise ExerciseFailed(f"threshold {threshold:g}: your depth is {got}, but in sigmoid MLPs the ratio first "
                                 f"falls below it at {' or '.join(map(str, depths))} layers (measured, three random "
                                 f"draws).{hint}")
        lines.append(f"{threshold:g}: {got} layers (measured {'/'.join(map(str, depths))})")
    return "matches the measured MLPs — " + "; ".join(lines)
