"""Reference solutions of lecture 07's exercises (checked by tests/test_exercises.py)."""
import numpy as np

from scratchnet.models import Transition


def _channels(s, k0, k):
    """The input channels of a dense-block reader that hold source s (the lecture's source_columns)."""
    return slice(0, k0) if s == 0 else slice(k0 + k * (s - 1), k0 + k * s)


def _block_and_weight(model, block, target):
    """(the dense block, the weight target reads with: a layer's conv1, or the transition's or classifier's)."""
    dense_block = getattr(model.features, f"denseblock{block}")
    layers = list(dense_block.children())
    if target <= len(layers):
        return dense_block, layers[target - 1].conv1.weight
    after = getattr(model.features, f"transition{block}", None)
    return dense_block, after.conv.weight if isinstance(after, Transition) else model.classifier.weight


def reuse_entry(model, block, source, target):
    dense_block, weight = _block_and_weight(model, block, target)
    columns = _channels(source, dense_block.num_input_features, dense_block.growth_rate)
    return float(np.abs(weight.data[:, columns]).mean())


def logit_change(model, x, block, source, target):
    dense_block, weight = _block_and_weight(model, block, target)
    columns = _channels(source, dense_block.num_input_features, dense_block.growth_rate)
    logits = model(x)
    kept = weight.data[:, columns].copy()
    weight.data[:, columns] = 0
    try:
        cut = model(x)
    finally:
        weight.data[:, columns] = kept                 # the model as it was, even if the forward failed
    return float(np.linalg.norm(cut - logits) / np.linalg.norm(logits))


def _reuse_entry_summed(model, block, source, target):
    """Sums the source's weights: not normalised by the number of its maps (k0 for the input, k for a layer)."""
    dense_block, weight = _block_and_weight(model, block, target)
    return float(np.abs(weight.data[:, _channels(source, dense_block.num_input_features,
                                                 dense_block.growth_rate)]).sum())


def _reuse_entry_off_by_one(model, block, source, target):
    """Counts layer s's maps from k0 + k*s: every layer's columns shifted by one source."""
    dense_block, weight = _block_and_weight(model, block, target)
    k0, k = dense_block.num_input_features, dense_block.growth_rate
    columns = slice(0, k0) if source == 0 else slice(k0 + k * source, k0 + k * (source + 1))
    return float(np.abs(weight.data[:, columns]).mean())


def _logit_change_not_restored(model, x, block, source, target):
    """Zeroes the columns and leaves them zero."""
    dense_block, weight = _block_and_weight(model, block, target)
    logits = model(x)
    weight.data[:, _channels(source, dense_block.num_input_features, dense_block.growth_rate)] = 0
    return float(np.linalg.norm(model(x) - logits) / np.linalg.norm(logits))


def _logit_change_rows(model, x, block, source, target):
    """Zeroes rows (output channels) instead of the columns (input channels) that read the source."""
    dense_block, weight = _block_and_weight(model, block, target)
    rows = _channels(source, dense_block.num_input_features, dense_block.growth_rate)
    logits = model(x)
    kept = weight.data[rows].copy()
    weight.data[rows] = 0
    cut = model(x)
    weight.data[rows] = kept
    return float(np.linalg.norm(cut - logits) / np.linalg.norm(logits))


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"reuse_entry": [_reuse_entry_summed, _reuse_entry_off_by_one],
         "logit_change": [_logit_change_not_restored, _logit_change_rows]}
