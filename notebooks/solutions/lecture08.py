"""Reference solutions of lecture 08's exercises (checked by tests/test_exercises.py)."""
import math

import numpy as np


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def sigmoid_chain_derivative(x, depth, w):
    """d h_depth / d x for h_0 = x, h_l = sigmoid(w * h_{l-1}): the product of the layers' w * sigmoid'(z_l)."""
    h, derivative = x, 1.0
    for _ in range(depth):
        h = _sigmoid(w * h)
        derivative *= w * h * (1 - h)           # sigmoid'(z) = sigmoid(z) (1 - sigmoid(z)), at this layer's z
    return derivative


def first_last_conv_ratio(records, step):
    """|grad weight| of the first convolution over that of the last, at ``step``, from TrainingMonitor records."""
    rows = sorted((row for row in records if row["step"] == step and row["type"].endswith("Conv2d")
                   and row.get("weight_grad_norm") is not None), key=lambda row: row["index"])
    return rows[0]["weight_grad_norm"] / rows[-1]["weight_grad_norm"]


def vanishing_depth(factor, threshold):
    """The smallest L with factor ** (L - 1) < threshold: L - 1 factors lie between layer 1 and layer L, so
    L - 1 > log(threshold) / log(factor) (both logarithms negative)."""
    return math.floor(math.log(threshold) / math.log(factor)) + 2


def _pre_activation_derivative(x, depth, w):
    """The classic slip: sigmoid'(z) written as z (1 - z), with the pre-activation z in place of sigmoid(z)."""
    h, derivative = x, 1.0
    for _ in range(depth):
        z = w * h
        h = _sigmoid(z)
        derivative *= w * z * (1 - z)
    return derivative


def _without_weight(x, depth, w):
    """Forgets the chain rule's factor w of z = w * h."""
    h, derivative = x, 1.0
    for _ in range(depth):
        h = _sigmoid(w * h)
        derivative *= h * (1 - h)
    return derivative


def _the_bound(x, depth, w):
    """The notes' bound, not the derivative: equal only where every pre-activation is 0."""
    return (abs(w) / 4) ** depth


def _output_gradients(records, step):
    """grad_norm is the gradient the layer's *output* received, not its weight's."""
    rows = sorted((row for row in records if row["step"] == step and row["type"].endswith("Conv2d")),
                  key=lambda row: row["index"])
    return rows[0]["grad_norm"] / rows[-1]["grad_norm"]


def _classifier_included(records, step):
    """weight_rows-style filtering keeps the Linear classifier: its last row is not a convolution."""
    rows = sorted((row for row in records if row["step"] == step and row.get("weight_grad_norm") is not None
                   and row["type"].endswith(("Conv2d", "Linear"))), key=lambda row: row["index"])
    return rows[0]["weight_grad_norm"] / rows[-1]["weight_grad_norm"]


def _every_step(records, step):
    """Ignores the step: the first row of step 0 against the last row of the last step."""
    rows = [row for row in records if row["type"].endswith("Conv2d")]
    return rows[0]["weight_grad_norm"] / rows[-1]["weight_grad_norm"]


def _one_factor_too_many(factor, threshold):
    """Counts a factor per layer, L of them: the logits' own gradient is where the product starts."""
    return next(L for L in range(1, 10_000) if factor ** L < threshold)


def _the_bound_only(factor, threshold):
    """Ignores the factor it is given and uses the sigmoid's bound 0.25 alone: too deep."""
    return next(L for L in range(1, 10_000) if 0.25 ** (L - 1) < threshold)


def _last_over_first(records, step):
    return 1 / first_last_conv_ratio(records, step)


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"sigmoid_chain_derivative": [_pre_activation_derivative, _without_weight, _the_bound],
         "first_last_conv_ratio": [_output_gradients, _classifier_included, _every_step, _last_over_first],
         "vanishing_depth": [_one_factor_too_many, _the_bound_only]}
