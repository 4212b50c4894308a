"""Reference solutions of lecture 04's exercises (checked by tests/test_exercises.py)."""
import math


def block_parameters(k0, k, n, bn_size=4):
    """Closed form: layer l reads c_l = k0 + k(l-1) channels; S(n) is the sum of the c_l."""
    S = n * k0 + k * n * (n - 1) // 2
    if not bn_size:                                   # BN (2 c_l) and a 3x3 conv c_l -> k (9k c_l)
        return (2 + 9 * k) * S
    b = bn_size * k                                   # the bottleneck's width
    return (2 + b) * S + n * (2 * b + 9 * b * k)      # BN, 1x1 conv c_l -> b; BN on b, 3x3 conv b -> k


def _block_parameters_four_k(k0, k, n, bn_size=4):
    """The lecture's formula, with the bottleneck width 4k written in: right only for bn_size = 4."""
    S = n * k0 + k * n * (n - 1) // 2
    return (2 + 4 * k) * S + n * (8 * k + 36 * k * k) if bn_size else (2 + 9 * k) * S


def _block_parameters_with_running_statistics(k0, k, n, bn_size=4):
    """Counts a BN's running mean and variance as parameters (4 per channel): they are buffers, not trained."""
    S = n * k0 + k * n * (n - 1) // 2
    if not bn_size:
        return (4 + 9 * k) * S
    b = bn_size * k
    return (4 + b) * S + n * (4 * b + 9 * b * k)


def dense_block_widths(block_config, k=32, num_init_features=64):
    """[(channels into block b, channels out of it)]: each block adds n*k, each transition halves (floor)."""
    widths, C = [], num_init_features
    for b, n in enumerate(block_config):
        widths.append((C, C + n * k))
        C = math.floor(0.5 * (C + n * k))
    return widths


def _dense_block_widths_uncompressed(block_config, k=32, num_init_features=64):
    """Forgets compression: the transitions keep every channel."""
    widths, C = [], num_init_features
    for n in block_config:
        widths.append((C, C + n * k))
        C += n * k
    return widths


def _dense_block_widths_from_k(block_config, k=32, num_init_features=64):
    """Starts block 1 from k channels (as if the stem made k maps) instead of num_init_features."""
    return dense_block_widths(block_config, k, k)


def densenet_parameters(block_config, k=32, num_init_features=64, num_classes=1000, bn_size=4):
    """torchvision's ImageNet DenseNet: 7x7 stem conv + BN, blocks, transitions (theta = 1/2), final BN, linear."""
    C = num_init_features
    total = 3 * 7 * 7 * C + 2 * C                      # conv0 (no bias), norm0
    for b, n in enumerate(block_config):
        total += block_parameters(C, k, n, bn_size)
        C += n * k
        if b < len(block_config) - 1:                  # transition: BN on C, 1x1 conv C -> floor(C / 2)
            kept = math.floor(0.5 * C)
            total += 2 * C + C * kept
            C = kept
    return total + 2 * C + C * num_classes + num_classes   # norm5, classifier


def _densenet_parameters_cifar_stem(block_config, k=32, num_init_features=64, num_classes=1000):
    """Lecture 4's CIFAR count carried over: a 3x3 stem conv and no BN after it."""
    return densenet_parameters(block_config, k, num_init_features, num_classes) - 3 * 40 * num_init_features - \
        2 * num_init_features


def _densenet_parameters_no_final_bn(block_config, k=32, num_init_features=64, num_classes=1000):
    """Forgets norm5, the BN after the last block."""
    C = num_init_features
    for b, n in enumerate(block_config):
        C += n * k
        C = math.floor(0.5 * C) if b < len(block_config) - 1 else C
    return densenet_parameters(block_config, k, num_init_features, num_classes) - 2 * C


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"block_parameters": [_block_parameters_four_k, _block_parameters_with_running_statistics],
         "dense_block_widths": [_dense_block_widths_uncompressed, _dense_block_widths_from_k],
         "densenet_parameters": [_densenet_parameters_cifar_stem, _densenet_parameters_no_final_bn]}
