"""Softmax followed by cross-entropy, fused: the gradient is simply softmax - one_hot."""
from ._checks import array_module, check_float, check_ndim


def softmax_cross_entropy(logits, labels, check_labels=True):
    """Mean cross-entropy of softmax(logits) against integer class labels.

    logits: (N, K), labels: (N,) integers in [0, K)
    check_labels: False skips checking that the labels lie in [0, K), which reads two numbers back
    from the labels' device (on a GPU, a wait for all queued work): for labels checked on the host
    before they were copied over, as the trainer's are (the data loaders check them).
    -> loss: 0-d array (``float(loss)`` for a number), dlogits: (N, K), the gradient of loss.
    """
    op = "softmax_cross_entropy"
    xp = array_module(op, logits, labels)
    check_ndim(op, "logits", logits, 2, "(N, K)")
    check_float(op, logits=logits)
    N, K = logits.shape
    if labels.ndim != 1 or labels.shape[0] != N:
        raise ValueError(f"{op}: labels must have shape ({N},) for logits of shape {(N, K)}, got {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{op}: labels must be integers (class indices), got dtype {labels.dtype}")
    if N == 0:
        raise ValueError(f"{op}: got an empty batch")
    low, high = (int(labels.min()), int(labels.max())) if check_labels else (0, 0)
    if low < 0 or high >= K:
        bad = low if low < 0 else high
        raise ValueError(f"{op}: label {bad} is out of range for {K} classes; labels must lie in [0, {K - 1}]")

    # Subtracting the row maximum keeps exp() from overflowing and does not change softmax.
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum_exp = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_sum_exp
    rows = xp.arange(N)
    loss = -log_probs[rows, labels].mean()

    dlogits = xp.exp(log_probs)
    dlogits[rows, labels] -= 1
    dlogits /= N
    return loss, dlogits
