"""Print each op's worst relative error against PyTorch over the test cases: `python tests/parity_report.py`.

`python tests/parity_report.py --device gpu` runs scratchnet's side on CuPy (PyTorch stays on the CPU, in float64).

Runs exactly the comparisons of tests/test_ops_torch.py and tests/test_models.py (tests/pytorch_parity.py)
and reports, per op, the largest error over its cases, its output and all its gradients: float64
element-wise (``rel_error``) and float32 at the tensors' scale (``norm_rel_error``); per network, the
largest error at the tensors' scale over logits, gradients and buffers, in train and eval mode.
"""
import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from op_cases import CASES  # noqa: E402
from pytorch_parity import (MEASURE, WITH_MEMORY_EFFICIENT_TWIN, WITH_REFERENCE,  # noqa: E402
                            network_against_pytorch, op_against_pytorch)
from scratchnet.backend import to_device  # noqa: E402
from scratchnet.gradcheck import check_gradients, norm_rel_error  # noqa: E402


def inputs_rng():
    # The tests' seed. Not 0: check_gradients draws its random dout from seed 0, and a dout
    # equal to the input's own draws is no random direction (for batch norm its dx is ~0).
    return np.random.default_rng(1234)


def worst(triples, measure):
    return max(measure(ours, theirs) for _, ours, theirs in triples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where scratchnet runs (default: cpu)")
    device = parser.parse_args().device
    rows = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for case in CASES:
        row = rows[case.id.split("-")[0]]
        row[0] = max(row[0], worst(op_against_pytorch(case, "float64", inputs_rng(), device), MEASURE["float64"]))
        row[1] = max(row[1], worst(op_against_pytorch(case, "float32", inputs_rng(), device), MEASURE["float32"]))
        row[2] = max(row[2], *check_gradients(case.forward, case.backward,
                                              [to_device(a, device) for a in case.inputs(inputs_rng())]))
        row[3] += 1
    print(f"torch {torch.__version__}, numpy {np.__version__}, scratchnet on {device}")
    print("| op | cases | vs PyTorch, float64 (element-wise) | vs PyTorch, float32 (scale) | vs finite differences, float64 |")
    print("| --- | --- | --- | --- | --- |")
    for op, (f64, f32, fd, count) in rows.items():
        print(f"| {op} | {count} | {f64:.1e} | {f32:.1e} | {fd:.1e} |")
    print()
    print("| whole network, float64, train and eval (scale) | textbook | memory-efficient |")
    print("| --- | --- | --- |")
    for name in WITH_REFERENCE:
        textbook = worst(network_against_pytorch(name, device), norm_rel_error)
        efficient = (f"{worst(network_against_pytorch(name, device, memory_efficient=True), norm_rel_error):.1e}"
                     if name in WITH_MEMORY_EFFICIENT_TWIN else "-")       # ResNets, post-activation: one tier
        print(f"| {name} | {textbook:.1e} | {efficient} |")


if __name__ == "__main__":
    main()
