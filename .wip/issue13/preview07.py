"""Lecture 07's measurements (cells 7, 18, 20, 22) on a checkpoint, without evaluation: python preview07.py CKPT"""
import json, sys, matplotlib
matplotlib.use("Agg")
cells = json.load(open("notebooks/07_what_the_network_learned.ipynb"))["cells"]
code = lambda i: "".join(cells[i]["source"])
g = {}
exec(code(1).replace("%matplotlib inline", ""), g)
exec(code(3), g); exec(code(7), g)
g["sys"] = sys
exec("""
checkpoint = load_checkpoint(Path(sys.argv[1])); config = checkpoint["config"]
def model_from_config(config):
    return densenet_cifar(config["depth"], config["k"], bc=config["bc"], theta=config["theta"], dropout=config["dropout"],
                          num_classes=10, seed=config["seed"], memory_efficient=True)
trained = model_from_config(config); trained.load_state_dict(checkpoint["model"]); untrained = model_from_config(config)
trained_on = "preview, epoch " + str(checkpoint["progress"].get("epoch"))
print(trained_on)
""", g)
for i in (12, 14, 18, 20, 22):
    exec(code(i), g)
import matplotlib.pyplot as plt
for n in plt.get_fignums():
    plt.figure(n).savefig(f"/tmp/preview07_fig{n}.png", dpi=80)
