"""Checks for lecture 07 (what the network learned: the feature-reuse heat map)."""
import numpy as np

from scratchnet.models import densenet_cifar

from . import ExerciseFailed, exercise, require

# A small DenseNet-BC (3 layers per block, k = 4) whose weights are made to differ from source to source:
# in every reader, the columns of source s are multiplied by 1 + s, so reading the wrong columns gives a wrong value.
SMALL = dict(depth=22, k=4, memory_efficient=True, seed=3)


def _call(answer, *args):
    """answer(*args), with any error other than NotImplementedError reported as a failed exercise."""
    try:
        return answer(*args)
    except NotImplementedError:
        raise
    except Exception as error:
        raise ExerciseFailed(f"calling it with {args[1:]} raised {type(error).__name__}: {error}") from error


def _readers(state, block):
    """From the state dict's torchvision names alone: (k0, k, weights of targets 1..n, then the block's reader)."""
    prefix = f"features.denseblock{block}."
    n = sum(1 for name in state if name.startswith(prefix) and name.endswith(".conv1.weight"))
    weights = [state[f"{prefix}denselayer{t}.conv1.weight"] for t in range(1, n + 1)]
    reader = f"features.transition{block}.conv.weight"
    weights.append(state[reader] if reader in state else state["classifier.weight"])
    k0 = weights[0].shape[1]                                     # layer 1 reads the block's input only
    k = state[f"{prefix}denselayer1.conv2.weight"].shape[0]      # each layer adds k maps
    return k0, k, weights


def _channels(s, k0, k):
    return slice(0, k0) if s == 0 else slice(k0 + k * (s - 1), k0 + k * s)


def _marked_model():
    model = densenet_cifar(**SMALL).eval()
    state = model.state_dict()
    for block in (1, 2, 3):
        k0, k, weights = _readers(state, block)
        for t, weight in enumerate(weights, start=1):
            for s in range(t):
                weight[:, _channels(s, k0, k)] *= 1 + s         # in place: the model's own arrays
    return model


@exercise("Exercise 1, one entry of the heat map")
def check_reuse_entry(reuse_entry):
    """reuse_entry(model, block, source, target) -> the mean |weight| that target (1..n: layer; n + 1: the block's
    reader) of dense block `block` (1, 2, 3) gives to source (0: the block's input; s >= 1: layer s's maps)."""
    model = _marked_model()
    state = {name: value.copy() for name, value in model.state_dict().items()}
    checked = 0
    for block in (1, 2, 3):
        k0, k, weights = _readers(state, block)
        for target, weight in enumerate(weights, start=1):
            for source in range(target):
                expected = float(np.abs(weight[:, _channels(source, k0, k)]).mean())
                got = _call(reuse_entry, model, block, source, target)
                case = f"block {block}, source {source}, target {target}"
                require(np.ndim(got) == 0, f"{case}: expected one number, got an array of shape {np.shape(got)}")
                if not np.isclose(float(got), expected, rtol=1e-5):
                    ratio = float(got) / expected
                    hint = (f" It is {ratio:.0f} times too large: a sum, not a mean over the source's weights?"
                            if ratio > 1.5 and np.isclose(ratio, round(ratio)) else
                            " Which input channels hold this source (k0 for the block's input, k for each layer),"
                            " and which convolution is the target's first?")
                    raise ExerciseFailed(f"{case}: got {float(got):.6g}, expected {expected:.6g}.{hint}")
                checked += 1
    require(all(np.array_equal(state[name], value) for name, value in model.state_dict().items()),
            "reading the heat map changed the model's weights")
    return f"all {checked} connected (source, target) pairs of a DenseNet-BC (L=22, k=4) match"


# (block, source, target): a layer reading the block's input, one reading an earlier layer, in other blocks too
ABLATIONS = [(1, 0, 2), (1, 1, 3), (2, 2, 3), (3, 0, 1)]


def _logit_change_reference(state, x, block, source, target):
    """The same cut made on a second model built from the state dict, by its torchvision names."""
    copy = densenet_cifar(**SMALL)
    cut = {name: value.copy() for name, value in state.items()}
    k0, k, weights = _readers(cut, block)
    weights[target - 1][:, _channels(source, k0, k)] = 0
    copy.load_state_dict(cut)
    copy.eval()
    before = densenet_cifar(**SMALL)
    before.load_state_dict(state)
    before.eval()
    z, z_cut = before(x), copy(x)
    return float(np.linalg.norm(z_cut - z) / np.linalg.norm(z))


@exercise("Exercise 2, cut one source and measure the change")
def check_logit_change(logit_change):
    """logit_change(model, x, block, source, target) -> ||z_cut - z|| / ||z|| for the logits z = model(x) (eval
    mode), z_cut with target layer's conv1 columns for source set to zero; the model is left as it was."""
    model = _marked_model()
    state = {name: value.copy() for name, value in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)   # (N, 3, H, W)
    results = []
    for block, source, target in ABLATIONS:
        case = f"block {block}, source {source}, target layer {target}"
        got = _call(logit_change, model, x, block, source, target)
        unchanged = all(np.array_equal(state[name], value) for name, value in model.state_dict().items())
        require(unchanged, f"{case}: after the call the model's weights differ from before: put the zeroed columns "
                           "back (keep a copy of the weight before you zero it), or every later measurement "
                           "starts from a damaged network")
        require(not model.training, f"{case}: the model was left in training mode; it came in eval mode")
        expected = _logit_change_reference(state, x, block, source, target)
        require(np.ndim(got) == 0, f"{case}: expected one number, got an array of shape {np.shape(got)}")
        if not np.isclose(float(got), expected, rtol=1e-3):
            raise ExerciseFailed(f"{case}: got {float(got):.5g}, expected {expected:.5g}. Zero the columns "
                                 "(weight[:, channels], the input channels that hold the source), not rows, and "
                                 "divide the change of the logits by the size of the logits")
        results.append(f"{expected:.3f}")
    return f"{len(ABLATIONS)} cuts measured right and undone (relative changes {', '.join(results)})"
