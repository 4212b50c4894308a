"""Put training runs side by side: their metrics.jsonl files as a table and one plot.

    python tools/compare_runs.py scratchnet=scratchnet/models/weights/densenet-bc-L40-k12-cifar10/metrics.jsonl \
        pytorch=docs/logs/pytorch-reference-cosine40.jsonl --epochs 40 --every 5 --out docs/img/scratchnet-vs-pytorch-cosine40.png

Each run is NAME=PATH (a metrics.jsonl of ``python -m scratchnet.train`` or ``tools/torch_reference_run.py``);
--epochs keeps the first N epochs of each. Prints a Markdown table of the test accuracy and the training loss
every --every epochs and at the last one, and plots test accuracy and training loss per epoch.
"""
import argparse
import math
import sys
from pathlib import Path

from scratchnet.trainer import read_metrics


def read_run(spec, epochs):
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        sys.exit(f"a run is NAME=PATH (a metrics.jsonl), got {spec!r}")
    if not Path(path).is_file():
        sys.exit(f"{name}: no file {path}")
    return name, read_metrics(Path(path), math.inf if epochs is None else epochs + 1)


def table(runs, every):
    last = max(row["epoch"] for _, rows in runs for row in rows)
    shown = sorted({e for e in range(every, last + 1, every)} | {last})
    names = [name for name, _ in runs]
    by_epoch = [{row["epoch"]: row for row in rows} for _, rows in runs]
    lines = ["| epoch | " + " | ".join(f"{n} test acc" for n in names) + " | "
             + " | ".join(f"{n} train loss" for n in names) + " |",
             "| --- |" + " --- |" * (2 * len(runs))]
    for epoch in shown:
        found = [rows.get(epoch) for rows in by_epoch]
        accs = [f"{100 * r['test_acc']:.2f} %" if r else "" for r in found]
        losses = [f"{r['train_loss']:.4f}" if r else "" for r in found]
        lines.append(f"| {epoch} | " + " | ".join(accs + losses) + " |")
    return "\n".join(lines)


def plot(runs, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in runs:
        epochs = [row["epoch"] for row in rows]
        left.plot(epochs, [100 * row["test_acc"] for row in rows], marker=".", label=name)
        right.plot(epochs, [row["train_loss"] for row in rows], marker=".", label=name)
    left.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    right.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss", yscale="log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=PATH of a metrics.jsonl")
    parser.add_argument("--epochs", type=int, default=None, help="the first N epochs of each run only")
    parser.add_argument("--every", type=int, default=5, help="the table's epoch spacing")
    parser.add_argument("--out", default=None, help="the plot's PNG")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    runs = [read_run(spec, args.epochs) for spec in args.runs]
    empty = [name for name, rows in runs if not rows]
    if empty:
        sys.exit(f"no epochs in: {', '.join(empty)}")
    print(table(runs, args.every))
    if args.out:
        plot(runs, args.out, args.title)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
