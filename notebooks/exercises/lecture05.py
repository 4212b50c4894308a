"""Checks for lecture 05 (DenseNet-BC on CIFAR-10: the training loop and its schedule)."""
import numpy as np

from scratchnet.models import densenet_cifar
from scratchnet.optim import step_lr, step_milestones

from . import ExerciseFailed, exercise, require

# Run lengths in steps: the lecture's 3 x 79, odd and tiny ones (where "half" needs rounding), the CLI's 300 x 782.
SCHEDULE_TOTALS = [48, 237, 7, 10, 3, 2, 300 * 782]


@exercise("Exercise 1, the step schedule counted in steps")
def check_lr_at_step(lr_at_step):
    """lr_at_step(t, base_lr, total_steps) -> the rate of step t (0 .. total_steps - 1): base_lr, divided by 10 from
    50% of all steps and by 100 from 75%, as scratchnet.optim.step_lr (the trainer's schedule)."""
    for total in SCHEDULE_TOTALS:
        steps = range(total) if total < 1000 else sorted({0, total - 1, *step_milestones(total),
                                                          *(m - 1 for m in step_milestones(total))})
        for t in steps:
            for base_lr in (0.1, 0.05):
                got, expected = lr_at_step(t, base_lr, total), step_lr(t, base_lr, total)
                if not np.isclose(got, expected, rtol=1e-9, atol=0):
                    first, second = step_milestones(total)
                    raise ExerciseFailed(
                        f"a run of {total} steps, step {t} (counted from 0), base_lr {base_lr}: got {got!r}, expected "
                        f"{expected!r}. The rate drops to base_lr/10 at step {first} = total // 2 (the first step of "
                        f"the second half) and to base_lr/100 at step {second} = total * 3 // 4")
    return f"equals scratchnet.optim.step_lr at every step of runs of {', '.join(map(str, SCHEDULE_TOTALS))} steps"


MEMORISE = dict(depth=10, k=6, memory_efficient=True, seed=0)    # DenseNet-BC (L=10, k=6): 5,583 parameters
MEMORISE_IMAGES, MEMORISE_STEPS = 64, 100


def memorise_task():
    """(model, images, labels): a fresh tiny DenseNet-BC and 64 images of pure noise (N, 3, 4, 4) with random
    labels, so that nothing but the images themselves can be learned."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((MEMORISE_IMAGES, 3, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 10, MEMORISE_IMAGES)
    return densenet_cifar(**MEMORISE), images, labels


@exercise("Exercise 2, memorise 64 images")
def check_memorise(memorise):
    """memorise(model, images, labels, steps) trains the model in place, with at most `steps` backward passes;
    afterwards the model, in eval mode, must classify all 64 training images right."""
    model, images, labels = memorise_task()
    backward_passes = 0
    backward = model.backward

    def counted_backward(dout):
        nonlocal backward_passes
        backward_passes += 1
        return backward(dout)

    model.backward = counted_backward              # an instance attribute: counts every training step
    first = model.classifier.weight.data.copy()
    try:
        memorise(model, images, labels, MEMORISE_STEPS)
    except NotImplementedError:
        raise
    except Exception as error:
        raise ExerciseFailed(f"memorise raised {type(error).__name__}: {error}") from error
    finally:
        del model.backward
    require(backward_passes <= MEMORISE_STEPS,
            f"{backward_passes} backward passes: the budget is {MEMORISE_STEPS} steps")
    require(not np.array_equal(model.classifier.weight.data, first),
            "the weights never changed: does the loop call optimizer.step() after model.backward(...)?")
    model.eval()
    logits = model(images)
    require(np.isfinite(logits).all(), "the trained model's logits are not finite: the run diverged (learning rate?)")
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    require(accuracy == 1.0,
            f"after {backward_passes} steps the model classifies {accuracy:.0%} of the 64 images right, not 100%. "
            "Is zero_grad() called before every backward (gradients add up otherwise), is the learning rate large "
            "enough for so few steps, and does every step see all 64 images, unaugmented?")
    return (f"DenseNet-BC (L=10, k=6) classifies all {MEMORISE_IMAGES} noise images right after {backward_passes} "
            f"steps (budget {MEMORISE_STEPS})")
