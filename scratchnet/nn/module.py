"""Parameter, Module and Sequential: the PyTorch-style containers the layers are built from.

A Module keeps three kinds of state, registered by assignment as in PyTorch:

- parameters (``self.weight = Parameter(...)``): trained, each with ``.data`` and ``.grad``;
- buffers (``self.register_buffer("running_mean", ...)``): saved but not trained;
- sub-modules (``self.conv1 = Conv2d(...)``): whose state is named ``conv1.<name>``.

Unlike PyTorch there is no autograd: every module writes its own ``backward(dout)``,
which returns the gradient of its input and adds its parameters' gradients to ``.grad``.

Hooks (``register_forward_hook``, ``register_backward_hook``) let code watch a module without
changing it, as PyTorch's do: the training monitor (``scratchnet.monitor``) records activation and
gradient statistics with them, and finds the first module whose numbers stopped being finite.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ..backend import device_of, get_array_module, to_device

# What load_state_dict returns, as PyTorch's does (torch.nn.modules.module._IncompatibleKeys):
# the model's keys the state dict lacked, and the state dict's keys the model lacks.
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter:
    """A trainable array and the gradient accumulated for it.

    data: the array (NumPy or CuPy); grad: an array shaped like data, or None
    before the first backward and after ``zero_grad()``. grad_buffer: where an optimiser wants the
    gradient (``optim.SGD`` gives each parameter a view of its flat gradient array), or None; ops that
    can write their result where they are told get it from ``grad_destination()``.
    """

    def __init__(self, data):
        self.data = data
        self.grad = None
        self.grad_buffer = None     # an optimiser's array for the gradient (SGD's flat one), if it gave one

    @property
    def shape(self):
        return self.data.shape

    def accumulate_grad(self, grad):
        """Add ``grad`` to ``.grad``. The first time, ``.grad`` becomes ``grad_buffer`` holding ``grad`` (copied
        in, unless the op wrote it there already), or, without a buffer, ``grad`` itself (a fresh array)."""
        if grad.shape != self.data.shape:
            raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter of shape {tuple(self.data.shape)}")
        if self.grad is not None:
            self.grad += grad
        elif self.grad_buffer is not None and get_array_module(grad) is get_array_module(self.grad_buffer):
            if grad is not self.grad_buffer:
                self.grad_buffer[...] = grad
            self.grad = self.grad_buffer
        else:
            self.grad = grad

    def grad_destination(self):
        """Where an op may write this parameter's next gradient itself (``out=``), saving the copy that
        ``accumulate_grad`` would make: ``grad_buffer`` while no gradient is held yet, else None."""
        if self.grad is None and self.grad_buffer is not None and \
                get_array_module(self.grad_buffer) is get_array_module(self.data):
            return self.grad_buffer
        return None

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name}")
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name, array):
        """Register state that is saved in the state dict but not trained (e.g. running_mean)."""
        self._buffers[name] = array

    def add_module(self, name, module):
        self._modules[name] = module

    # -- walking the tree ---------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        """Yield (name, module) for this module and every module below it."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self):
        return iter(self._modules.values())

    def named_children(self):
        """Yield (name, module) for the direct sub-modules, in the order they were added."""
        return iter(self._modules.items())

    def named_parameters(self):
        """Yield (name, Parameter), names as in PyTorch: ``features.conv0.weight``."""
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self):
        return [param for _, param in self.named_parameters()]

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name, buffer in module._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), buffer

    def num_parameters(self):
        """How many trainable numbers the module has."""
        return sum(int(param.data.size) for param in self.parameters())

    # -- modes, gradients, devices ------------------------------------------------------------------
    def train(self, mode=True):
        """Training mode: batch norm uses batch statistics, dropout drops. Returns self."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Evaluation mode: batch norm uses running statistics, dropout is the identity."""
        return self.train(False)

    def zero_grad(self):
        """Forget all accumulated gradients (``.grad = None``, as PyTorch does by default)."""
        for param in self.parameters():
            param.grad = None

    def to(self, device):
        """Move every parameter, gradient and buffer to ``device`` ("cpu" or "gpu"). Returns self."""
        for _, module in self.named_modules():
            for param in module._parameters.values():
                param.data = to_device(param.data, device)
                param.grad = to_device(param.grad, device)
            for name, buffer in module._buffers.items():
                module._buffers[name] = to_device(buffer, device)
        return self

    # -- saving and loading -------------------------------------------------------------------------
    def state_dict(self):
        """Every parameter and buffer by its dotted name (the arrays themselves, not copies)."""
        state = OrderedDict((name, param.data) for name, param in self.named_parameters())
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters and buffers, in place, after checking every key and shape.

        Accepts anything array-like (NumPy, CuPy, or PyTorch tensors' ``.numpy()``): a
        state dict of torchvision's DenseNet loads as it is. Values are converted to
        each parameter's dtype and device.
        strict: True, every key must match (ValueError otherwise); False, the keys in both are loaded.
        Either way a shape mismatch of a key to be loaded is a ValueError (as in PyTorch), and
        nothing is loaded when it raises.
        Returns IncompatibleKeys(missing_keys, unexpected_keys), lists of names, as PyTorch does.
        """
        own = self.state_dict()
        missing = [key for key in own if key not in state]
        unexpected = [key for key in state if key not in own]
        if strict and (missing or unexpected):
            raise ValueError(_describe_key_mismatch(missing, unexpected))
        loaded = [key for key in own if key in state]
        for key in loaded:
            if tuple(np.shape(state[key])) != tuple(own[key].shape):
                raise ValueError(f"load_state_dict: {key} has shape {tuple(np.shape(state[key]))} "
                                 f"but the model expects {tuple(own[key].shape)}")
        for key in loaded:
            target = own[key]
            value = state[key] if _is_array(state[key]) else np.asarray(state[key])   # e.g. a torch tensor
            target[...] = to_device(value, device_of(target)).astype(target.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- hooks --------------------------------------------------------------------------------------
    def register_forward_hook(self, hook):
        """Call ``hook(module, args, output)`` after every forward of this module, however it is called
        (``module(x)`` or ``module.forward(x)``). Returns a handle whose ``remove()`` takes the hook off.

        A module without hooks runs exactly as if hooks did not exist: the first hook puts a wrapper
        around this module's ``forward``, the last one removed takes it away again.
        """
        return self._add_hook("forward", ("forward",), hook)

    def register_backward_hook(self, hook):
        """Call ``hook(module, grad_output, grad_input)`` after every backward of this module: the gradient
        it received and the one it returned (an array, or what the fast tier's ``backward_parts``
        returns). Its parameters' ``.grad`` are up to date when the hook runs. Returns a handle."""
        methods = tuple(name for name in ("backward", "backward_parts") if hasattr(type(self), name))
        return self._add_hook("backward", methods, hook)

    def _add_hook(self, kind, methods, hook):
        hooks = self.__dict__.setdefault("_hooks", {}).setdefault(kind, {})
        if not hooks:
            for method in methods:
                object.__setattr__(self, method, _hooked(self, method, hooks))
        key = object()
        hooks[key] = hook
        return HookHandle(self, kind, methods, key)

    # -- running ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            lines.append(f"  ({name}): " + "\n  ".join(child_lines))
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


def _hooked(module, method, hooks):
    """``module.method`` (looked up on its class, so a wrapper never wraps a wrapper), then each hook."""
    unhooked = getattr(type(module), method)

    def run(*args, **kwargs):
        result = unhooked(module, *args, **kwargs)
        for hook in list(hooks.values()):
            hook(module, args[0] if method != "forward" else args, result)
        return result

    run.__name__ = run.__qualname__ = f"{type(module).__name__}.{method} (hooked)"
    return run


class HookHandle:
    """What ``register_*_hook`` returns: ``remove()`` takes the hook off (a second call does nothing)."""

    def __init__(self, module, kind, methods, key):
        self.module, self.kind, self.methods, self.key = module, kind, methods, key

    def remove(self):
        hooks = self.module.__dict__.get("_hooks", {}).get(self.kind, {})
        if hooks.pop(self.key, None) is not None and not hooks:
            for method in self.methods:          # the class's own method shows through again
                self.module.__dict__.pop(method, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype") and type(value).__module__.split(".")[0] in ("numpy", "cupy")


def _describe_key_mismatch(missing, unexpected, shown=5):
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
            parts.append(f"{len(keys)} {label} key(s): {', '.join(keys[:shown])}{more}")
    return "load_state_dict: " + "; ".join(parts)


class Sequential(Module):
    """Modules run one after another; backward runs them in reverse.

    ``Sequential(a, b)`` names them "0", "1"; ``Sequential(OrderedDict(conv0=a, ...))`` by the keys.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def forward(self, x):
        for module in self:
            x = module(x)
        return x

    def backward(self, dout):
        for module in reversed(list(self)):
            dout = module.backward(dout)
        return dout
