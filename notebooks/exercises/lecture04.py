"""Checks for lecture 04 (the dense block)."""
import functools
import numbers

from scratchnet.models import DenseBlock, DenseNet, densenet121

from . import ExerciseFailed, exercise, require

# (k0, k, n, bn_size): bottlenecks of several widths (bn_size * k channels), and none (bn_size None)
BLOCK_CASES = [(24, 12, 16, 4), (64, 32, 6, 4), (5, 3, 7, 2), (8, 4, 5, 6), (10, 6, 3, 1), (16, 12, 12, None),
               (7, 5, 4, None)]


@exercise("Exercise 1, a dense block's parameters for any bottleneck width")
def check_block_parameters(block_parameters):
    """block_parameters(k0, k, n, bn_size) -> the block's parameter count, as DenseBlock's num_parameters()."""
    for k0, k, n, bn_size in BLOCK_CASES:
        answer = block_parameters(k0, k, n, bn_size)
        counted = DenseBlock(n, k0, k, bn_size=bn_size).num_parameters()
        kind = f"bottleneck of {bn_size}k channels" if bn_size else "no bottleneck"
        require(answer == counted, f"k0 = {k0}, k = {k}, n = {n}, {kind}: you count {answer}, "
                f"DenseBlock(...).num_parameters() counts {counted:,}. Per layer: a BN on c_l channels, a 1x1 conv "
                "c_l -> bn_size*k, a BN on bn_size*k channels, a 3x3 conv bn_size*k -> k (without a bottleneck: BN "
                "and one 3x3 conv c_l -> k); a BN has 2 parameters per channel (its running statistics are buffers).")
    return (f"equal to DenseBlock(...).num_parameters() for {len(BLOCK_CASES)} blocks, bottleneck widths 1k to 6k "
            "and none")


def _block_widths(model):
    """[(channels into block b, channels out of it)] read from a DenseNet's own blocks."""
    blocks = [block for _, block in model.features.named_children() if isinstance(block, DenseBlock)]
    return [(b.num_input_features, b.num_input_features + len(list(b.children())) * b.growth_rate) for b in blocks]


@functools.lru_cache(maxsize=1)
def _densenet121_widths_and_count():
    model = densenet121()
    return _block_widths(model), model.num_parameters()


# (block_config, growth rate, stem channels, classes) beside DenseNet-121's own
IMAGENET_CASES = [((2, 3), 8, 16, 10), ((3, 1, 2), 12, 24, 5), ((1, 1, 1, 1), 4, 6, 1000)]


@exercise("Exercise 2, the channel widths of DenseNet-121")
def check_dense_block_widths(dense_block_widths):
    """dense_block_widths(block_config, k, num_init_features) -> [(channels into block b, channels out of it)],
    as densenet121() and smaller DenseNet(...) configurations have them."""
    cases = [((6, 12, 24, 16), 32, 64)] + [case[:3] for case in IMAGENET_CASES]
    for block_config, k, init in cases:
        answer = [tuple(pair) for pair in dense_block_widths(block_config, k, init)]
        if block_config == (6, 12, 24, 16):
            widths, name = _densenet121_widths_and_count()[0], "densenet121()"
        else:
            widths = _block_widths(DenseNet(growth_rate=k, block_config=block_config, num_init_features=init))
            name = f"DenseNet(growth_rate={k}, block_config={block_config}, num_init_features={init})"
        require(len(answer) == len(widths), f"{name} has {len(widths)} dense blocks; you list {len(answer)}")
        for b, (yours, true) in enumerate(zip(answer, widths), start=1):
            require(yours == true, f"{name}, block {b}: you have {yours[0]} channels in and {yours[1]} out; the "
                    f"model has {true[0]} in and {true[1]} out. Block 1 reads the stem's num_init_features; a block "
                    "adds n*k channels to what it reads; a transition keeps floor(0.5 * C) of them.")
    widths = _densenet121_widths_and_count()[0]
    return f"DenseNet-121's blocks read and write {widths} (its classifier reads {widths[-1][1]}), as densenet121()"


@exercise("Exercise 3, the parameter count of an ImageNet DenseNet")
def check_densenet_parameters(densenet_parameters):
    """densenet_parameters(block_config, k, num_init_features, num_classes) -> the count of DenseNet(...,
    stem="imagenet"), checked against num_parameters() of densenet121() and of smaller configurations."""
    cases = [((6, 12, 24, 16), 32, 64, 1000)] + IMAGENET_CASES
    for block_config, k, init, classes in cases:
        answer = densenet_parameters(block_config, k, init, classes)
        if block_config == (6, 12, 24, 16):
            counted, name = _densenet121_widths_and_count()[1], "densenet121()"
        else:
            counted = DenseNet(growth_rate=k, block_config=block_config, num_init_features=init,
                               num_classes=classes).num_parameters()
            name = f"DenseNet(growth_rate={k}, block_config={block_config}, num_init_features={init})"
        if answer != counted:
            off = f" (yours is {answer - counted:+,} off)" if isinstance(answer, numbers.Integral) else ""
            raise ExerciseFailed(
                f"{name}: you count {answer}, num_parameters() counts {counted:,}{off}. The ImageNet stem is a 7x7 "
                "conv 3 -> num_init_features (no bias) and a BN; then the blocks, with a transition between two "
                "blocks (BN, 1x1 conv C -> floor(C/2)); then a final BN and the classifier (C*classes weights and "
                "classes biases).")
    return (f"DenseNet-121 has {_densenet121_widths_and_count()[1]:,} parameters, and {len(IMAGENET_CASES)} smaller "
            "configurations match too")
