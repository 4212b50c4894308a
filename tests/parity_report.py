"""Print each op's worst relative error against PyTorch over the test cases: `python tests/parity_report.py`.

Runs the same case table as tests/test_ops_torch.py and reports, per op, the
largest error over its cases, its output and all its gradients: float64
element-wise (``rel_error``) and float32 at the tensors' scale (``norm_rel_error``).
"""
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from op_cases import CASES  # noqa: E402
from scratchnet.gradcheck import check_gradients, norm_rel_error, rel_error  # noqa: E402


def errors_against_pytorch(case, dtype, rng):
    arrays = [a.astype(dtype) for a in case.inputs(rng)]
    out, cache = case.forward(*arrays)
    dout = np.asarray(rng.standard_normal(np.shape(out)), dtype=dtype)
    grads = case.backward(dout, cache)
    grads = grads if isinstance(grads, (tuple, list)) else [grads]
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = case.reference(*tensors)
    expected.backward(torch.tensor(dout))
    measure = rel_error if dtype == "float64" else norm_rel_error
    pairs = [(out, expected.detach().numpy())] + [(g, t.grad.numpy()) for g, t in zip(grads, tensors)]
    return max(measure(a, b) for a, b in pairs)


def inputs_rng():
    # Not seed 0: check_gradients draws its random dout from seed 0, and a dout
    # equal to the input's own draws is no random direction (for batch norm its dx is ~0).
    return np.random.default_rng(1234)


def main():
    worst = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for case in CASES:
        op = case.id.split("-")[0]
        row = worst[op]
        row[0] = max(row[0], errors_against_pytorch(case, "float64", inputs_rng()))
        row[1] = max(row[1], errors_against_pytorch(case, "float32", inputs_rng()))
        row[2] = max(row[2], *check_gradients(case.forward, case.backward, case.inputs(inputs_rng())))
        row[3] += 1
    print(f"torch {torch.__version__}, numpy {np.__version__}")
    print("| op | cases | vs PyTorch, float64 (element-wise) | vs PyTorch, float32 (scale) | vs finite differences, float64 |")
    print("| --- | --- | --- | --- | --- |")
    for op, (f64, f32, fd, count) in worst.items():
        print(f"| {op} | {count} | {f64:.1e} | {f32:.1e} | {fd:.1e} |")


if __name__ == "__main__":
    main()
