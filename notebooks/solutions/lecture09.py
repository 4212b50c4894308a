"""Reference solutions of lecture 09's exercises (checked by tests/test_exercises.py)."""
from scratchnet import ops


def residual_unit_backward(dy, cache):
    """Backward of y = x + conv3x3(relu(x), w): dy (N, C, H, W) -> (dx, dw)."""
    relu_cache, conv_cache, add_cache = cache
    dshortcut, dresidual = ops.add_backward(dy, add_cache)      # both are dy: addition copies the gradient
    dh, dw, _ = ops.conv2d_backward(dresidual, conv_cache)
    dx = dshortcut + ops.relu_backward(dh, relu_cache)          # x fed both paths: their gradients add
    return dx, dw


def dense_layer_inputs(depth, k, block, layer):
    """The channels dense layer ``layer`` of block ``block`` (from 1) of DenseNet-BC (L=depth, k) reads."""
    n = (depth - 4) // 6                  # layers per block
    channels = 2 * k                      # the stem's output: block 1's input
    for _ in range(block - 1):
        channels = (channels + n * k) // 2    # through a block (n layers of k maps) and a transition (theta 0.5)
    return channels + (layer - 1) * k


def densenet_bc_parameters(depth, k, num_classes=10):
    """Trainable parameters of DenseNet-BC (L=depth, k, theta = 0.5) for CIFAR, counted in closed form."""
    n = (depth - 4) // 6
    channels = 2 * k
    total = 3 * 3 * 3 * channels                                  # the stem: 3x3 conv, 3 -> 2k
    for b in range(3):
        for l in range(n):
            c = channels + l * k
            total += 2 * c + c * 4 * k                            # BN, 1x1 conv to 4k
            total += 2 * 4 * k + 4 * k * k * 9                    # BN, 3x3 conv to k
        channels += n * k
        if b < 2:
            total += 2 * channels + channels * (channels // 2)    # transition: BN, 1x1 conv to floor(c / 2)
            channels //= 2
    return total + 2 * channels + channels * num_classes + num_classes   # final BN, classifier


def _residual_unit_backward_no_shortcut(dy, cache):
    """The common mistake: only the gradient through F, as if the block were plain."""
    relu_cache, conv_cache, _ = cache
    dh, dw, _ = ops.conv2d_backward(dy, conv_cache)
    return ops.relu_backward(dh, relu_cache), dw


def _residual_unit_backward_split(dy, cache):
    """Splitting dy between the two inputs as if the addition were an average."""
    relu_cache, conv_cache, _ = cache
    dh, dw, _ = ops.conv2d_backward(dy / 2, conv_cache)
    return dy / 2 + ops.relu_backward(dh, relu_cache), dw


def _dense_layer_inputs_no_compression(depth, k, block, layer):
    n = (depth - 4) // 6
    return 2 * k + (block - 1) * n * k + (layer - 1) * k


def _dense_layer_inputs_off_by_one(depth, k, block, layer):
    return dense_layer_inputs(depth, k, block, layer) + k      # counts layer l's own maps too


def _densenet_bc_parameters_no_batch_norm(depth, k, num_classes=10):
    n = (depth - 4) // 6
    channels, total = 2 * k, 27 * 2 * k
    for b in range(3):
        for l in range(n):
            total += (channels + l * k) * 4 * k + 36 * k * k
        channels += n * k
        if b < 2:
            total += channels * (channels // 2)
            channels //= 2
    return total + channels * num_classes + num_classes


def _densenet_bc_parameters_rounded_up(depth, k, num_classes=10):
    # ceil instead of floor in the transitions: right for the paper's models, wrong where a block ends odd
    n = (depth - 4) // 6
    channels, total = 2 * k, 27 * 2 * k
    for b in range(3):
        for l in range(n):
            c = channels + l * k
            total += 2 * c + c * 4 * k + 8 * k + 36 * k * k
        channels += n * k
        if b < 2:
            total += 2 * channels + channels * -(-channels // 2)
            channels = -(-channels // 2)
    return total + 2 * channels + channels * num_classes + num_classes


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {
    "residual_unit_backward": [_residual_unit_backward_no_shortcut, _residual_unit_backward_split],
    "dense_layer_inputs": [_dense_layer_inputs_no_compression, _dense_layer_inputs_off_by_one],
    "densenet_bc_parameters": [_densenet_bc_parameters_no_batch_norm, _densenet_bc_parameters_rounded_up],
}
