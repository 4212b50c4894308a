"""Reference solutions of lecture 05's exercises (checked by tests/test_exercises.py)."""
from scratchnet.ops import softmax_cross_entropy
from scratchnet.optim import SGD


def lr_at_step(t, base_lr, total_steps):
    drops = (t >= total_steps // 2) + (t >= total_steps * 3 // 4)     # 0, 1 or 2 divisions by 10 so far
    return base_lr * 0.1 ** drops


def memorise(model, images, labels, steps):
    """Full-batch SGD, no augmentation, no weight decay: the quickest way to fit 64 images exactly."""
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(steps):
        loss, dlogits = softmax_cross_entropy(model(images), labels)
        model.zero_grad()
        model.backward(dlogits)
        optimizer.step()


def _lr_at_step_after_half(t, base_lr, total_steps):
    """Drops one step late: `>` where the first step of the second half already has the lower rate."""
    return base_lr * 0.1 ** ((t > total_steps // 2) + (t > total_steps * 3 // 4))


def _lr_at_step_float_half(t, base_lr, total_steps):
    """Compares with total_steps / 2: for an odd number of steps the drop comes one step later than step_lr's."""
    return base_lr * 0.1 ** ((t >= total_steps / 2) + (t >= total_steps * 3 / 4))


def _memorise_without_zero_grad(model, images, labels, steps):
    """Forgets zero_grad(): every backward adds to the gradients of all the steps before."""
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(steps):
        loss, dlogits = softmax_cross_entropy(model(images), labels)
        model.backward(dlogits)
        optimizer.step()


def _memorise_timid(model, images, labels, steps):
    """A learning rate far too small for a budget of a few dozen steps."""
    optimizer = SGD(model.parameters(), lr=0.001, momentum=0.9, nesterov=True)
    for _ in range(steps):
        loss, dlogits = softmax_cross_entropy(model(images), labels)
        model.zero_grad()
        model.backward(dlogits)
        optimizer.step()


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"lr_at_step": [_lr_at_step_after_half, _lr_at_step_float_half],
         "memorise": [_memorise_without_zero_grad, _memorise_timid]}
