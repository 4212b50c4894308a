"""SGD with momentum, Nesterov momentum and weight decay, exactly as ``torch.optim.SGD`` updates,
and the learning-rate schedules of the DenseNet paper (step) and of SGDR (cosine).

For each parameter p with gradient g, one step is (PyTorch's formula, term by term):

    g = g + weight_decay * p                     weight decay, added to the gradient
    b = g                        on the first step,
    b = momentum * b + (1 - dampening) * g       afterwards       (the momentum buffer)
    g = g + momentum * b         with Nesterov,   g = b   without
    p = p - lr * g
"""
import math

import numpy as np

from .backend import device_of, to_device


class SGD:
    """Stochastic gradient descent over a list of Parameters (``model.parameters()``)."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        self.params = list(params)
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0 (as in PyTorch)")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self):
        for param in self.params:
            param.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for i, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            if self.momentum != 0:
                buffer = self.momentum_buffers[i]
                if buffer is None:
                    buffer = self.momentum_buffers[i] = grad.copy()
                else:
                    buffer *= self.momentum
                    buffer += (1 - self.dampening) * grad
                grad = grad + self.momentum * buffer if self.nesterov else buffer
            param.data -= self.lr * grad

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
        buffers = [None] * len(self.params)
        for i, param in enumerate(self.params):
            buffer = state.get(f"momentum_buffer.{i}")
            if buffer is None:
                continue
            if tuple(buffer.shape) != tuple(param.shape):
                raise ValueError(f"SGD.load_state_dict: momentum_buffer.{i} has shape {tuple(buffer.shape)} "
                                 f"but parameter {i} has {tuple(param.shape)}")
            buffers[i] = to_device(buffer, device_of(param.data)).astype(param.data.dtype)   # NumPy or CuPy buffers
        self.momentum_buffers = buffers
        self.lr = float(state["lr"])


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


def cosine_lr(t, base_lr, total):
    """Cosine annealing from base_lr towards 0 over ``total`` steps or epochs (``CosineAnnealingLR``, T_max=total)."""
    return base_lr * (1 + math.cos(math.pi * t / total)) / 2


SCHEDULES = {"step": step_lr, "cosine": cosine_lr}
