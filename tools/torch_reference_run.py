"""Train DenseNet-BC on CIFAR-10 with PyTorch alone: the independent reference for a scratchnet run.

    python tools/torch_reference_run.py --data-dir /tmp/cifar10 --out runs/torch-ref --epochs 40
    python tools/torch_reference_run.py --data-dir /tmp/cifar10 --out runs/torch-ref --resume

scratchnet's parity tests compare single steps with PyTorch; this compares whole trainings. Same recipe as
``python -m scratchnet.train --schedule cosine --epochs 40`` — the paper's C10+ augmentation (4-pixel padding of
the normalised image with 0, the mean colour, random 32x32 crop, horizontal flip), batch 64, Nesterov SGD 0.9,
weight decay 1e-4 on every parameter, lr 0.1 annealed per step to 0 by ``CosineAnnealingLR`` — but nothing of
scratchnet's trains or reads the data here: the CIFAR batches are unpickled, normalised and augmented below, and
the network is PyTorch's (``scratchnet/bench/torch_reference.py``: torchvision's DenseNet, its module names and
its initialisation, with the CIFAR stem). Only the random numbers differ from a scratchnet run, so the two
runs' test accuracies differ by the seed-to-seed spread, not more, if the two implementations train alike.

Writes OUT/metrics.jsonl (one line per epoch, the keys of scratchnet's) and OUT/checkpoint.pt, replaced
atomically every --save-every steps and at each epoch's end; --resume continues from it.
PyTorch is a test and benchmark dependency of scratchnet, not a runtime one: pip install torch==2.13.0.
"""
import argparse
import json
import math
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"


def read_cifar10(data_dir):
    """The official "python version" batches -> uint8 images (N, 3, 32, 32) and int64 labels, train and test."""
    folder = Path(data_dir) / CIFAR10_FOLDER
    if not folder.is_dir():
        sys.exit(f"no {CIFAR10_FOLDER}/ in {data_dir}: decode the shared copy first "
                 f"(python ../shared/cifar10/make_cifar10.py {data_dir})")

    def read(names):
        images, labels = [], []
        for name in names:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)

    return read([f"data_batch_{i}" for i in range(1, 6)]), read(["test_batch"])


def augment(x, rng, padding=4):
    """x: normalised (N, 3, 32, 32) tensor -> each image zero-padded, randomly cropped, flipped with p 0.5."""
    import torch
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    out = torch.empty_like(x)
    tops = rng.integers(0, 2 * padding + 1, size=n)
    lefts = rng.integers(0, 2 * padding + 1, size=n)
    flips = rng.random(n) < 0.5
    for i in range(n):
        crop = padded[i, :, tops[i]:tops[i] + h, lefts[i]:lefts[i] + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def save_atomically(state, path):
    import torch
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--depth", type=int, default=40)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from scratchnet.bench.torch_reference import torch_densenet_cifar

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"

    (train_x, train_y), (test_x, test_y) = read_cifar10(args.data_dir)
    pixels = train_x.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (pixels.mean(1), pixels.std(1)))

    def normalise(images):
        return (torch.from_numpy(images.astype(np.float32) / 255) - mean) / std

    batch_size, steps_per_epoch = 64, math.ceil(len(train_y) / 64)
    torch.manual_seed(args.seed)
    model = torch_densenet_cifar(args.depth, args.k, bc=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps_per_epoch)
    rng = np.random.default_rng(args.seed)
    epoch, step, order, loss_sum, correct, seconds, lr_first = 0, 0, None, 0.0, 0, 0.0, None
    if args.resume:
        if not checkpoint_path.exists():
            sys.exit(f"--resume: no {checkpoint_path}")
        state = torch.load(checkpoint_path, weights_only=False)
        if state["epochs"] != args.epochs:
            sys.exit(f"{checkpoint_path} is a run of {state['epochs']} epochs, not {args.epochs}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        epoch, step, order = state["epoch"], state["step"], state["order"]
        loss_sum, correct, seconds = state["loss_sum"], state["correct"], state["seconds"]
        lr_first = state["lr_first"]
        if metrics_path.exists():   # a line written after the last checkpoint is written again
            rows = metrics_path.read_text().splitlines(keepends=True)[:epoch]
            metrics_path.write_text("".join(rows))
        print(f"resumed at epoch {epoch + 1}, step {step}", flush=True)
    elif checkpoint_path.exists() or metrics_path.exists():
        sys.exit(f"{out} holds a run already: --resume it or choose another --out")

    def checkpoint():
        save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "rng": rng.bit_generator.state,
                         "torch_rng": torch.get_rng_state(), "epoch": epoch, "step": step, "order": order,
                         "loss_sum": loss_sum, "correct": correct, "seconds": seconds, "lr_first": lr_first,
                         "epochs": args.epochs, "seed": args.seed}, checkpoint_path)

    while epoch < args.epochs:
        if order is None:
            order = rng.permutation(len(train_y))
        model.train()
        bar = tqdm(total=steps_per_epoch, initial=step, desc=f"epoch {epoch + 1}/{args.epochs}")
        while step < steps_per_epoch:
            started = time.perf_counter()
            index = order[step * batch_size:(step + 1) * batch_size]
            x = augment(normalise(train_x[index]), rng)
            y = torch.from_numpy(train_y[index])
            lr_first = lr_first or optimizer.param_groups[0]["lr"]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == y).sum())
            seconds += time.perf_counter() - started
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / min(step * batch_size, len(train_y)):.3f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.4g}")
            if step % args.save_every == 0 and step < steps_per_epoch:
                checkpoint()
        bar.close()
        started = time.perf_counter()
        model.eval()
        test_loss, test_right, test_top5 = 0.0, 0, 0
        with torch.no_grad():
            for start in range(0, len(test_y), 500):
                logits = model(normalise(test_x[start:start + 500]))
                y = torch.from_numpy(test_y[start:start + 500])
                test_loss += F.cross_entropy(logits, y, reduction="sum").item()
                test_right += int((logits.argmax(1) == y).sum())
                test_top5 += int((logits.topk(5, 1).indices == y[:, None]).any(1).sum())
        seconds += time.perf_counter() - started
        n_train, n_test = len(train_y), len(test_y)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n_train, "train_acc": correct / n_train,
               "test_loss": test_loss / n_test, "test_acc": test_right / n_test, "test_top5": test_top5 / n_test,
               "lr": optimizer.param_groups[0]["lr"], "lr_first": lr_first, "seconds": round(seconds, 3),
               "images_per_s": round(n_train / seconds, 2)}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"epoch {epoch + 1}/{args.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  "
              f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}", flush=True)
        epoch, step, order, loss_sum, correct, seconds, lr_first = epoch + 1, 0, None, 0.0, 0, 0.0, None
        checkpoint()


if __name__ == "__main__":
    main()
