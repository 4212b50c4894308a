"""SGD with momentum, Nesterov momentum and weight decay, exactly as ``torch.optim.SGD`` updates,
and the learning-rate schedules of the DenseNet paper (step) and of SGDR (cosine, with warm restarts if asked).

For each parameter p with gradient g, one step is (PyTorch's formula, term by term):

    g = g + weight_decay * p                     weight decay, added to the gradient
    b = g                        on the first step,
    b = momentum * b + (1 - dampening) * g       afterwards       (the momentum buffer)
    g = g + momentum * b         with Nesterov,   g = b   without
    p = p - lr * g
"""
import math

import numpy as np

from .backend import device_of, get_array_module, to_device


class SGD:
    """Stochastic gradient descent over a list of Parameters (``model.parameters()``).

    The parameters are gathered into one flat array per dtype and device, and each Parameter's ``.data``
    becomes a view of it (the momentum buffers are views of a second one), so that one step updates
    the whole model in a handful of array operations, however many parameters it has: PyTorch's
    "foreach" SGD, apex's multi-tensor apply. On a GPU each operation is a kernel launch, so this is
    the difference between 9 launches per step and 9 per parameter. Every number still goes through
    the formula above, term by term in the same order: the results are those of a loop over the
    parameters, bit for bit (``step`` runs that loop when some parameter has no gradient).
    Make the optimiser after moving the model to its device, as in PyTorch.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        self.params = list(params)
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0 (as in PyTorch)")
        if not self.params:
            raise ValueError("SGD: got an empty list of parameters")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.groups = [_FlatGroup(self.params, indices, momentum != 0) for indices in _same_kind(self.params)]

    def zero_grad(self):
        for param in self.params:
            param.grad = None

    def all_finite(self, *arrays):
        """A 0-d boolean array on the parameters' device: every gradient and every one of ``arrays`` (say, the
        loss) is finite. Reading it is the one wait for the device a careful training step needs; the
        gradients are gathered into the flat arrays here, so ``step`` does not copy them again."""
        xp = get_array_module(self.params[0].data)
        checks = [xp.isfinite(a).all() for a in arrays]
        for group in self.groups:
            grad = group.gather_grads()
            checks += [xp.isfinite(grad).all()] if grad is not None else [
                xp.isfinite(self.params[i].grad).all() for i in group.indices if self.params[i].grad is not None]
        return xp.stack(checks).all()

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for group in self.groups:
            group.check_views()
            grad = group.gather_grads()
            if grad is not None and group.momentum_state_is_uniform():
                self._update(group.data, grad, group.momentum, group.first_step())
                group.has_momentum[:] = [True] * len(group.indices)
                continue
            for position, i in enumerate(group.indices):       # some parameter has no gradient: one at a time
                if self.params[i].grad is not None:
                    buffer = group.momentum_views[position] if group.momentum is not None else None
                    self._update(self.params[i].data, self.params[i].grad, buffer, not group.has_momentum[position])
                    group.has_momentum[position] = True

    def _update(self, data, grad, buffer, first):
        """The formula of the module docstring on one array (a parameter, or a flat group of them), in place."""
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * data
        if self.momentum != 0:
            if first:
                buffer[...] = grad
            else:
                buffer *= self.momentum
                buffer += (1 - self.dampening) * grad
            grad = grad + self.momentum * buffer if self.nesterov else buffer
        data -= self.lr * grad

    @property
    def momentum_buffers(self):
        """Each parameter's momentum buffer (a view of its group's flat one), None before its first update."""
        buffers = [None] * len(self.params)
        for group in self.groups:
            for position, i in enumerate(group.indices):
                if group.has_momentum[position]:
                    buffers[i] = group.momentum_views[position]
        return buffers

    def state_dict(self):
        """lr and the momentum buffers (``momentum_buffer.<i>``, in the order of the parameters), as arrays."""
        state = {"lr": np.array(self.lr)}
        for i, buffer in enumerate(self.momentum_buffers):
            if buffer is not None:
                state[f"momentum_buffer.{i}"] = buffer
        return state

    def load_state_dict(self, state):
        for key in state:
            if key != "lr" and not (key.startswith("momentum_buffer.") and key[16:].isdigit()
                                    and int(key[16:]) < len(self.params)):
                raise ValueError(f"SGD.load_state_dict: unexpected key {key!r} for {len(self.params)} parameters")
        for i, param in enumerate(self.params):
            buffer = state.get(f"momentum_buffer.{i}")
            if buffer is not None and tuple(buffer.shape) != tuple(param.shape):
                raise ValueError(f"SGD.load_state_dict: momentum_buffer.{i} has shape {tuple(buffer.shape)} "
                                 f"but parameter {i} has {tuple(param.shape)}")
        for group in self.groups:
            for position, i in enumerate(group.indices):
                buffer = state.get(f"momentum_buffer.{i}")
                group.has_momentum[position] = buffer is not None and group.momentum is not None
                if group.has_momentum[position]:                 # NumPy or CuPy buffers, onto the group's device
                    group.momentum_views[position][...] = to_device(buffer, device_of(group.data))
        self.lr = float(state["lr"])


def _same_kind(params):
    """The parameters' indices, grouped by dtype and device, in order."""
    kinds = {}
    for i, param in enumerate(params):
        kinds.setdefault((param.data.dtype, device_of(param.data)), []).append(i)
    return list(kinds.values())


class _FlatGroup:
    """Parameters of one dtype and device as views of one flat array, with a flat gradient and momentum array.

    indices: the group's parameters (positions in the optimiser's list); data_views[p], grad_views[p] and
    momentum_views[p] are parameter indices[p]'s slices of the flat arrays; has_momentum[p] whether its
    momentum buffer holds a value yet (PyTorch starts it at the first gradient).
    """

    def __init__(self, params, indices, momentum):
        self.params, self.indices = params, indices
        first = params[indices[0]].data
        xp = get_array_module(first)
        sizes = [params[i].data.size for i in indices]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()

        def views(flat):
            return [flat[a:b].reshape(params[i].shape) for a, b, i in zip(bounds, bounds[1:], indices)]

        self.data = xp.empty(bounds[-1], dtype=first.dtype)
        self.data_views = views(self.data)
        for view, i in zip(self.data_views, indices):
            view[...] = params[i].data
            params[i].data = view
        self.grad = xp.empty_like(self.data)
        self.grad_views = views(self.grad)
        for view, i in zip(self.grad_views, indices):      # backward writes the gradients here directly
            params[i].grad_buffer = view
        self.momentum = xp.empty_like(self.data) if momentum else None
        self.momentum_views = views(self.momentum) if momentum else None
        self.has_momentum = [False] * len(indices)

    def check_views(self):
        for view, i in zip(self.data_views, self.indices):
            if self.params[i].data is not view:
                raise RuntimeError(f"SGD: parameter {i}'s array was replaced after the optimiser was made (by "
                                   "model.to(device), say); make the optimiser after moving the model, as in PyTorch")

    def gather_grads(self):
        """The flat gradient, with every parameter's ``.grad`` in it; None if some parameter has none.

        Backward puts them there already (``Parameter.grad_buffer``); a gradient assigned some other way is
        copied in, and ``.grad`` made a view of the flat array, so that changes in place reach it too."""
        if any(self.params[i].grad is None for i in self.indices):
            return None
        for view, i in zip(self.grad_views, self.indices):
            if self.params[i].grad is not view:
                view[...] = self.params[i].grad
                self.params[i].grad = view
        return self.grad

    def momentum_state_is_uniform(self):
        return all(self.has_momentum) or not any(self.has_momentum)

    def first_step(self):
        return not any(self.has_momentum)


def step_lr(t, base_lr, total):
    """The paper's schedule: base_lr, divided by 10 at 50% and again at 75% of training.

    t counts from 0 up to total - 1, in steps (as ``python -m scratchnet.train`` uses it, so that
    a 1- or 3-epoch run still spends half its steps at base_lr) or in epochs. As
    ``torch.optim.lr_scheduler.MultiStepLR`` with milestones [total // 2, total * 3 // 4] and gamma 0.1.
    """
    return base_lr * 0.1 ** sum(t >= milestone for milestone in step_milestones(total))


def step_milestones(total):
    """Where step_lr divides the learning rate by 10: the first t of each lower rate."""
    return total // 2, total * 3 // 4


def cosine_lr(t, base_lr, total, restarts=0):
    """Cosine annealing from base_lr towards 0 over ``total`` steps or epochs (``CosineAnnealingLR``, T_max=total).

    With ``restarts`` > 0, SGDR's warm restarts (Loshchilov & Hutter, ICLR 2017) with T_mult = 2: the
    rate anneals over a first cycle, jumps back to base_lr and anneals over a cycle twice as long, and
    so on, the 1 + restarts cycles filling ``total`` (``CosineAnnealingWarmRestarts(T_0, T_mult=2)``,
    T_0 = ``restart_cycles(total, restarts)[0]``). The weights and the momentum carry over a restart.
    """
    *earlier, last = restart_cycles(total, restarts)
    for length in earlier:
        if t < length:
            break
        t -= length
    else:
        length = last                  # t of the last cycle (or past the end: annealed on towards 0 and beyond)
    return base_lr * (1 + math.cos(math.pi * t / length)) / 2


def restart_cycles(total, restarts):
    """The lengths of cosine_lr's cycles: T_0, 2 T_0, 4 T_0, ..., 1 + restarts of them, summing to ``total``.

    T_0 = total // first_cycles_in(restarts); the last cycle takes what the division leaves over.
    E.g. 120 epochs with 1 restart: 40 and 80.
    """
    first = total // first_cycles_in(restarts)
    if first < 1:
        raise ValueError(f"{total} steps are too few for {restarts} restarts: the cycles double, so "
                         f"{first_cycles_in(restarts)} are needed at least")
    lengths = [first * 2 ** i for i in range(restarts + 1)]
    lengths[-1] += total - sum(lengths)
    return lengths


def first_cycles_in(restarts):
    """How many first cycles' lengths the whole run of cosine_lr lasts: 1 + 2 + 4 + ... = 2 ** (restarts + 1) - 1."""
    return 2 ** (restarts + 1) - 1


SCHEDULES = {"step": step_lr, "cosine": cosine_lr}
