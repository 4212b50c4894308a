"""Print each op's worst relative error against PyTorch over the test cases: `python tests/parity_report.py`.

`python tests/parity_report.py --device gpu` runs scratchnet's side on CuPy (PyTorch stays on the CPU, in float64).

Runs the same case table as tests/test_ops_torch.py and reports, per op, the
largest error over its cases, its output and all its gradients: float64
element-wise (``rel_error``) and float32 at the tensors' scale (``norm_rel_error``).
"""
import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from op_cases import CASES  # noqa: E402
from scratchnet.backend import to_device  # noqa: E402
from scratchnet.gradcheck import check_gradients, norm_rel_error, rel_error  # noqa: E402


def errors_against_pytorch(case, dtype, rng, device="cpu"):
    arrays = [a.astype(dtype) for a in case.inputs(rng)]
    out, cache = case.forward(*[to_device(a, device) for a in arrays])
    dout = np.asarray(rng.standard_normal(np.shape(out)), dtype=dtype)
    grads = case.backward(to_device(dout, device), cache)
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


def network_errors(build, build_reference, size, device="cpu"):
    """Worst error at the tensors' scale over logits, input and parameter gradients and buffers, train then eval."""
    torch.manual_seed(0)
    reference, model = build_reference().double(), build()
    model.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    model.to(device)
    rng, worst = np.random.default_rng(0), 0.0
    for mode in (True, False):
        model.train(mode)
        reference.train(mode)
        x = rng.standard_normal((3, 3, size, size))
        dlogits = rng.standard_normal((3, reference.classifier.out_features))
        model.zero_grad()
        reference.zero_grad()
        logits = model(to_device(x, device))
        dx = model.backward(to_device(dlogits, device))
        x_tensor = torch.tensor(x, requires_grad=True)
        expected = reference(x_tensor)
        expected.backward(torch.tensor(dlogits))
        pairs = [(logits, expected), (dx, x_tensor.grad)]
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
        pairs += [(params[n].grad, p.grad) for n, p in reference.named_parameters()]
        pairs += [(buffers[n], b) for n, b in reference.named_buffers() if "num_batches" not in n]
        worst = max([worst] + [norm_rel_error(a, b.detach().numpy()) for a, b in pairs])
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where scratchnet runs (default: cpu)")
    device = parser.parse_args().device
    worst = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for case in CASES:
        op = case.id.split("-")[0]
        row = worst[op]
        row[0] = max(row[0], errors_against_pytorch(case, "float64", inputs_rng(), device))
        row[1] = max(row[1], errors_against_pytorch(case, "float32", inputs_rng(), device))
        row[2] = max(row[2], *check_gradients(case.forward, case.backward,
                                                  [to_device(a, device) for a in case.inputs(inputs_rng())]))
        row[3] += 1
    print(f"torch {torch.__version__}, numpy {np.__version__}, scratchnet on {device}")
    print("| op | cases | vs PyTorch, float64 (element-wise) | vs PyTorch, float32 (scale) | vs finite differences, float64 |")
    print("| --- | --- | --- | --- | --- |")
    for op, (f64, f32, fd, count) in worst.items():
        print(f"| {op} | {count} | {f64:.1e} | {f32:.1e} | {fd:.1e} |")
    from scratchnet.models import densenet121, densenet_cifar
    from scratchnet.torch_reference import torch_densenet121, torch_densenet_cifar
    networks = {
        "DenseNet-BC (L=16, k=6), 16x16": (lambda **kw: densenet_cifar(16, 6, dtype=np.float64, **kw),
                                           lambda: torch_densenet_cifar(16, 6, True), 16),
        "DenseNet (L=10, k=4), 16x16": (lambda **kw: densenet_cifar(10, 4, bc=False, dtype=np.float64, **kw),
                                        lambda: torch_densenet_cifar(10, 4, False), 16),
        "DenseNet-121, 64x64": (lambda **kw: densenet121(num_classes=7, dtype=np.float64, **kw),
                                lambda: torch_densenet121(7), 64),
    }
    print()
    print("| whole network, float64, train and eval (scale) | plain | memory-efficient |")
    print("| --- | --- | --- |")
    for name, (build, build_reference, size) in networks.items():
        plain = network_errors(build, build_reference, size, device)
        efficient = network_errors(lambda: build(memory_efficient=True), build_reference, size, device)
        print(f"| {name} | {plain:.1e} | {efficient:.1e} |")


if __name__ == "__main__":
    main()
