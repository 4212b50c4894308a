"""Benchmark a DenseNet training step against PyTorch's, on the same model, side by side.

    python -m scratchnet.bench                                   # DenseNet-BC (L=40, k=12), batch 64, CPU
    python -m scratchnet.bench --depth 100 --mode textbook
    python -m scratchnet.bench --memory --depths 40 100 190 --plot docs/img/memory.png
    python -m scratchnet.bench --ablation                        # what each optimisation bought
    python -m scratchnet.bench --profile                         # where scratchnet's step spends its time
    python -m scratchnet.bench --count-ops                       # its array operations (GPU kernel launches)
    python -m scratchnet.bench --device gpu                      # CuPy against PyTorch on CUDA (cuDNN)

A training step is forward, loss, backward and the SGD update (Nesterov momentum,
weight decay), at float32, on the same weights (copied through the state dict) and
the same random batch. The two are timed alternately, ``--steps`` steps at a
time, ``--repeats`` times, and the medians compared: on a shared machine only
the ratio of numbers measured side by side means anything.

Peak memory is measured for each framework in a fresh process: the growth of
the process's peak resident memory during two training steps (CPU), or the
allocator's peak (GPU). Needs PyTorch (``pip install 'scratchnet[bench]'``), which
scratchnet itself never uses; ``--profile`` does without.

This package is the only place that imports torch: ``torch_reference.py`` (the PyTorch DenseNet
the tests and the benchmark compare against), imported only when a benchmark runs.
"""
from .cli import main
from .speed import ABLATION, MODES

__all__ = ["main", "ABLATION", "MODES"]
