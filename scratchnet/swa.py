"""Stochastic weight averaging (Izmailov et al., UAI 2018): the mean of the weights a run passes through.

SGD at a learning rate that stays up keeps bouncing around a wide valley of the loss; the average
of the points it visits lies nearer the valley's middle than any one of them, and generalises
better. Two steps, as ``torch.optim.swa_utils``:

- ``WeightAverage``: the running mean of a model's parameters, one ``update(model)`` per snapshot
  (``AveragedModel``'s default average, ``use_buffers=False``);
- ``update_bn(model, batches)``: the batch-norm running statistics made again for the averaged
  weights. Those of the last snapshot belong to other weights: each layer's input distribution
  changes when the weights before it are averaged. ``update_bn`` forgets them and, over the
  batches given, takes the plain mean of the batch means and of the (unbiased) batch variances
  (``torch.optim.swa_utils.update_bn``, which sets ``momentum=None``: a cumulative average).
"""
from .backend import get_array_module
from .nn import BatchNorm2d


class WeightAverage:
    """The running mean of a model's parameters: after n updates, (w_1 + ... + w_n) / n, name by name.

    Only the parameters are averaged (not the batch-norm buffers: ``update_bn`` makes those).
    mean: {name: array} shaped as the parameters; n: how many snapshots it holds.
    """

    def __init__(self, model):
        self.mean = {name: param.data.copy() for name, param in model.named_parameters()}
        self.n = 0

    def update(self, model):
        """Add the model's current parameters: mean += (w - mean) / (n + 1), as AveragedModel's default avg_fn."""
        for name, param in model.named_parameters():
            if self.n == 0:
                self.mean[name][...] = param.data
            else:
                self.mean[name] += (param.data - self.mean[name]) / (self.n + 1)
        self.n += 1

    def copy_to(self, model):
        """Write the average into the model's parameters (its buffers are left as they are)."""
        if self.n == 0:
            raise ValueError("WeightAverage.copy_to: no snapshot averaged yet (call update(model) first)")
        model.load_state_dict(self.mean, strict=False)

    def state_dict(self):
        return {**self.mean, "n_averaged": get_array_module(*self.mean.values()).asarray(self.n)}

    def load_state_dict(self, state):
        missing = sorted(set(self.mean) - set(state))
        if missing or "n_averaged" not in state:
            raise ValueError(f"WeightAverage.load_state_dict: the saved average lacks "
                             f"{', '.join(missing[:3]) or 'n_averaged'}{' ...' if len(missing) > 3 else ''}")
        for name, mean in self.mean.items():
            mean[...] = get_array_module(mean).asarray(state[name])     # a saved (NumPy) mean onto the device
        self.n = int(state["n_averaged"])


def batch_norm_layers(model):
    """Every batch-norm layer of the model (BatchNorm2d, and the fast tier's fused BatchNormReLU2d)."""
    return [module for _, module in model.named_modules() if isinstance(module, BatchNorm2d)]


def update_bn(model, batches):
    """Make the batch-norm running statistics again, as the mean over ``batches`` of the batch statistics.

    batches: an iterable of model inputs (N, 3, H, W). The model runs forward in training mode
    (no backward); before batch t (from 1) every layer's momentum is 1 / t, so that after T batches
    running_mean = (mean_1 + ... + mean_T) / T, and running_var likewise of the unbiased batch
    variances. The buffers are reset in place first (the fast tier's layers share flat arrays);
    afterwards momentum and the training mode are what they were. Returns the number of batches.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta, training = [layer.momentum for layer in layers], model.training
    for layer in layers:
        layer.running_mean[...] = 0
        layer.running_var[...] = 1
        layer.num_batches_tracked[...] = 0
    model.train()
    t = 0
    try:
        for x in batches:
            t += 1
            for layer in layers:
                layer.momentum = 1.0 / t
            model(x)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(training)
    return t
