"""The run's headline figures from metrics.jsonl (the per-epoch tables are finalize_text.py's)."""
import json
folder = "scratchnet/models/weights/densenet-bc-L40-k12-cifar10"
run = [json.loads(l) for l in open(f"{folder}/metrics.jsonl")]
s = sum(m["seconds"] for m in run)
print(f"epochs {len(run)}; last test {run[-1]['test_acc']:.2%} top5 {run[-1]['test_top5']:.2%} train {run[-1]['train_acc']:.2%} "
      f"test loss {run[-1]['test_loss']:.4f}; best {max(m['test_acc'] for m in run):.2%} at {max(run, key=lambda m: m['test_acc'])['epoch']}")
print(f"sum seconds {s:.0f} = {s/3600:.2f} h; whole epochs 1-13 (Xeon; epoch 14 split at step 593) {sum(m['seconds'] for m in run[:13])/3600:.2f} h, 14-19 (AVX2; 20 split at step 475) {sum(m['seconds'] for m in run[13:19])/3600:.2f} h, 20- {sum(m['seconds'] for m in run[19:])/3600:.2f} h")
swa = json.load(open(f"{folder}/swa.json"))
averaged = run[280:]
print(f"SWA: average of epochs {swa['epochs']} ({swa['n_averaged']}): test {swa['test_acc']:.2%} top5 {swa['test_top5']:.2%} "
      f"loss {swa['test_loss']:.4f}; bn+test {swa['seconds']:.0f} s; single epochs 281-400 "
      f"{min(m['test_acc'] for m in averaged):.2%}..{max(m['test_acc'] for m in averaged):.2%}, "
      f"120 epochs {sum(m['seconds'] for m in averaged) / 3600:.2f} h")
