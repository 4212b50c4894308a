"""How much weaker (or stronger) the first convolution's gradient is than the last one's, at initialisation.

    python tools/gradient_ratios.py --data-dir /tmp/cifar10 [--batch 64] [--plot gradient_ratios.png]

For plain nets, ResNets and DenseNet-BCs: one forward and backward pass of one batch of real CIFAR-10
training images (normalised, float64, training mode), watched by ``scratchnet.monitor.TrainingMonitor``;
prints |grad| of the first and the last convolution's weight and their ratio, and plots every
convolution's gradient norm against depth. Nothing is trained.
"""
import argparse

import numpy as np

from scratchnet import ops
from scratchnet.data import load_cifar, normalize
from scratchnet.models import densenet_cifar, resnet_cifar
from scratchnet.monitor import TrainingMonitor, weight_rows

MODELS = {
    "plain-20": lambda: resnet_cifar(20, preactivation=False, shortcut=False, dtype=np.float64),
    "plain-56": lambda: resnet_cifar(56, preactivation=False, shortcut=False, dtype=np.float64),
    "ResNet-56": lambda: resnet_cifar(56, preactivation=False, dtype=np.float64),
    "pre-act ResNet-56": lambda: resnet_cifar(56, dtype=np.float64),
    "DenseNet-BC L=40": lambda: densenet_cifar(40, 12, dtype=np.float64),
    "DenseNet-BC L=100": lambda: densenet_cifar(100, 12, dtype=np.float64),
}


def convolution_gradients(model, x, y):
    """[(name, |grad weight|)] of every convolution, input to output, after one backward pass."""
    monitor = TrainingMonitor(model, every=1)
    with monitor.step(0):
        _, dlogits = ops.softmax_cross_entropy(model(x), y)
        model.backward(dlogits)
    return [(row["module"], row["weight_grad_norm"]) for row in weight_rows(monitor.records, 0)
            if row["type"].endswith("Conv2d")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--plot", default=None, help="save gradient norm against depth to this file")
    args = parser.parse_args()
    data = load_cifar("cifar10", args.data_dir)
    x = normalize(data.train_images[:args.batch], data.mean, data.std).astype(np.float64)
    y = data.train_labels[:args.batch]
    curves = {}
    print(f"{'model':18s} {'first conv':>12s} {'last conv':>12s} {'first / last':>12s}")
    for name, build in MODELS.items():
        curves[name] = [norm for _, norm in convolution_gradients(build(), x, y)]
        first, last = curves[name][0], curves[name][-1]
        print(f"{name:18s} {first:12.4g} {last:12.4g} {first / last:12.4g}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name, norms in curves.items():
            depth = np.linspace(0, 1, len(norms))
            ax.plot(depth, norms, label=f"{name} ({len(norms)} convs)")
        ax.set_yscale("log")
        ax.set_xlabel("relative depth of the convolution (0: first, 1: last)")
        ax.set_ylabel("|gradient of its weight|")
        ax.set_title(f"at initialisation, one batch of {args.batch} CIFAR-10 images")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
