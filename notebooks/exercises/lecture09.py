"""Checks for lecture 09 (addition against concatenation)."""
import numpy as np

from scratchnet import ops
from scratchnet.gradcheck import check_gradients, rel_error
from scratchnet.models import densenet_cifar

from . import ExerciseFailed, exercise, require


def residual_unit_forward(x, w):
    """y = x + conv3x3(relu(x), w): a residual unit without batch norm (the shortcut is the identity).

    x: (N, C, H, W), w: (C, C, 3, 3) -> y: (N, C, H, W), cache: (relu_cache, conv_cache, add_cache).
    """
    h, relu_cache = ops.relu_forward(x)
    f, conv_cache = ops.conv2d_forward(h, w, None, stride=1, pad=1)
    y, add_cache = ops.add_forward(x, f)
    return y, (relu_cache, conv_cache, add_cache)


def _away_from_kinks(x, margin=0.01):
    # Finite differences across ReLU's kink at 0 match no gradient: keep every input at least margin from it.
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin * 2, x)


@exercise("Exercise 1, the backward of a residual unit")
def check_residual_unit_backward(residual_unit_backward):
    """residual_unit_backward(dy, cache) -> (dx, dw) for residual_unit_forward, checked element by element
    against central differences (float64, random upstream gradient)."""
    rng = np.random.default_rng(0)
    cases = [((2, 3, 5, 5), 0), ((1, 4, 4, 6), 1)]
    for x_shape, seed in cases:
        C = x_shape[1]
        x = _away_from_kinks(rng.standard_normal(x_shape))
        w = rng.standard_normal((C, C, 3, 3)) * 0.3
        y, cache = residual_unit_forward(x, w)
        dy = np.random.default_rng(seed).standard_normal(y.shape)
        grads = residual_unit_backward(dy, cache)
        require(isinstance(grads, (tuple, list)) and len(grads) == 2, "return a pair (dx, dw)")
        dx, dw = grads
        require(np.shape(dx) == x_shape and np.shape(dw) == w.shape,
                f"x {x_shape}: dx has shape {np.shape(dx)} (want {x_shape}), dw {np.shape(dw)} (want {w.shape})")
        # the residual path alone: what dx would be without the shortcut
        relu_cache, conv_cache, _ = cache
        through_f = ops.relu_backward(ops.conv2d_backward(dy, conv_cache)[0], relu_cache)
        if rel_error(dx, through_f) < 1e-8:
            raise ExerciseFailed(f"x {x_shape}: dx is only the gradient through F(x). The addition y = x + F(x) "
                                 "also sends dy straight to x (add_backward returns dy to both inputs): "
                                 "dx = dy + (the gradient through F)")
        if rel_error(dx, (dy + through_f) / 2) < 1e-8:
            raise ExerciseFailed(f"x {x_shape}: dx is half of the right answer. Addition copies the gradient to "
                                 "both inputs unchanged; it is concatenation that splits it")
        errors = check_gradients(residual_unit_forward, residual_unit_backward, [x, w], seed=seed)
        names = ("dx", "dw")
        for name, error in zip(names, errors):
            require(error is not None and error < 1e-7,
                    f"x {x_shape}: {name} disagrees with finite differences (relative error {error}); "
                    "walk the forward backwards: add, then the conv, then the ReLU, and add the shortcut's dy "
                    "to dx")
    return f"dx and dw match central differences (relative errors < 1e-7) for {len(cases)} shapes"


# (depth, k) of DenseNet-BC (theta = 0.5): the paper's, and small ones where the compression has to round down
DENSE_CASES = [(40, 12), (100, 12), (22, 5), (34, 7)]


@exercise("Exercise 2, the input channels of dense layer l of block b")
def check_dense_layer_inputs(dense_layer_inputs):
    """dense_layer_inputs(depth, k, block, layer) -> the channels dense layer ``layer`` of dense block
    ``block`` (both from 1) of densenet_cifar(depth, k) reads: its first convolution's in_channels."""
    checked = 0
    for depth, k in DENSE_CASES:
        model = densenet_cifar(depth, k)
        for b in (1, 2, 3):
            block = getattr(model.features, f"denseblock{b}")
            for l, layer in enumerate(block.children(), start=1):
                want = layer.conv1.in_channels
                got = dense_layer_inputs(depth, k, b, l)
                if got != want:
                    hint = ""
                    if isinstance(got, (int, np.integer)) and got - want == k:
                        hint = " (one growth rate too many: layer l does not read its own k maps)"
                    elif b == 1 and l == 1:
                        hint = " (DenseNet-BC's stem makes 2k channels)"
                    elif l == 1:
                        hint = (" (a block's first layer reads only the transition's output, which keeps "
                                "floor(theta * channels), theta = 0.5)")
                    raise ExerciseFailed(f"DenseNet-BC (L={depth}, k={k}), block {b}, layer {l}: {got!r} "
                                         f"channels, but the model's conv1 reads {want}{hint}. Layer l reads the "
                                         "block's input and the k maps of each of the l - 1 layers before it")
                checked += 1
    return f"all {checked} dense layers of {len(DENSE_CASES)} DenseNet-BCs agree with their conv1.in_channels"


# (depth, k): the paper's L=100 and L=250 models, L=40, and small ones with odd channel counts
PARAMETER_CASES = [(40, 12), (100, 12), (250, 24), (22, 5), (16, 3)]


@exercise("Exercise 3, DenseNet-BC's parameter count in closed form")
def check_densenet_bc_parameters(densenet_bc_parameters):
    """densenet_bc_parameters(depth, k) -> the trainable parameters of densenet_cifar(depth, k) (10 classes),
    compared with the built model's num_parameters()."""
    counts = []
    for depth, k in PARAMETER_CASES:
        want = densenet_cifar(depth, k).num_parameters()
        counts.append(want)
        got = densenet_bc_parameters(depth, k)
        require(isinstance(got, (int, np.integer)) and not isinstance(got, bool),
                f"(L={depth}, k={k}): return a whole number of parameters (an int), got {got!r}")
        if got != want:
            raise ExerciseFailed(f"DenseNet-BC (L={depth}, k={k}): {got:,} parameters, but the model has "
                                 f"{want:,} (off by {got - want:+,}). Count every convolution (no biases), "
                                 "every batch norm (a weight and a bias per channel), the final batch norm "
                                 "and the classifier (weights and biases); a transition keeps "
                                 "floor(channels / 2)")
    return (f"equal to num_parameters() for {len(PARAMETER_CASES)} DenseNet-BCs, from {min(counts):,} to "
            f"{max(counts):,} parameters")
