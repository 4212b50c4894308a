"""The training monitor: module hooks, per-layer statistics checked against direct computation, and the
search for the first non-finite module (scratchnet.monitor)."""
import contextlib

import numpy as np
import pytest

from scratchnet import ops
from scratchnet.models import densenet_cifar, resnet_cifar
from scratchnet.monitor import TrainingMonitor, find_non_finite, format_table, leaf_modules, read_layer_stats
from scratchnet.nn import (BatchNorm2d, BatchNormReLU2d, Conv2d, GlobalAvgPool2d, Linear, Module, ReLU,
                           Sequential)
from scratchnet.optim import SGD


def batch(n=8, size=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, size, size)).astype(dtype), rng.integers(0, 10, n)


def small_net(dtype=np.float64):
    """conv -> BN -> ReLU -> global pool -> linear: a network whose every output the test can compute by hand."""
    rng = np.random.default_rng(1)
    return Sequential(Conv2d(3, 6, 3, padding=1, bias=False, dtype=dtype, rng=rng), BatchNorm2d(6, dtype=dtype),
                      ReLU(), GlobalAvgPool2d(), Linear(6, 10, dtype=dtype, rng=rng))


def train_step(model, optimizer, x, y):
    logits = model(x)
    loss, dlogits = ops.softmax_cross_entropy(logits, y)
    model.zero_grad()
    model.backward(dlogits)
    optimizer.step()
    return logits, dlogits


def hooked_methods(model):
    return [(name, key) for name, module in model.named_modules() for key in ("forward", "backward", "backward_parts")
            if key in module.__dict__]


# -- hooks ---------------------------------------------------------------------------------------------------------
def test_a_forward_hook_sees_the_input_and_output_and_removing_it_restores_the_class_method():
    x, _ = batch()
    conv = small_net()[0]
    seen = []
    handle = conv.register_forward_hook(lambda module, args, out: seen.append((module, args[0], out)))
    out = conv(x)
    conv.forward(x)                                  # called directly, as the fast tier's blocks do
    assert len(seen) == 2 and seen[0][0] is conv and seen[0][1] is x and seen[0][2] is out
    handle.remove()
    handle.remove()                                  # a second remove does nothing
    assert "forward" not in conv.__dict__
    conv(x)
    assert len(seen) == 2


def test_two_hooks_run_in_order_and_the_wrapper_stays_until_the_last_is_removed():
    x, _ = batch()
    relu = ReLU()
    calls = []
    first = relu.register_forward_hook(lambda *a: calls.append("first"))
    second = relu.register_forward_hook(lambda *a: calls.append("second"))
    relu(x)
    first.remove()
    relu(x)
    assert calls == ["first", "second", "second"] and "forward" in relu.__dict__
    second.remove()
    assert "forward" not in relu.__dict__


def test_a_backward_hook_gets_the_gradient_received_and_returned_with_the_parameter_gradients_ready():
    x, _ = batch()
    conv = small_net()[0]
    dout = np.random.default_rng(2).standard_normal(conv(x).shape)
    seen = {}

    def hook(module, grad_output, grad_input):
        seen.update(grad_output=grad_output, grad_input=grad_input, weight_grad=module.weight.grad.copy())

    with conv.register_backward_hook(hook):
        dx = conv.backward(dout)
    assert seen["grad_output"] is dout and seen["grad_input"] is dx
    np.testing.assert_array_equal(seen["weight_grad"], conv.weight.grad)
    assert "backward" not in conv.__dict__


def test_the_fast_tiers_gradient_parts_reach_a_backward_hook():
    x = np.random.default_rng(3).standard_normal((4, 8, 5, 5))
    norm = BatchNormReLU2d(4, dtype=np.float64)
    y = norm(x)
    seen = []
    with norm.register_backward_hook(lambda module, dout, parts: seen.append(parts)):
        parts = norm.backward_parts(np.ones_like(y))
    assert seen == [parts] and hasattr(parts, "x_coef")


# -- statistics ----------------------------------------------------------------------------------------------------
def test_the_recorded_statistics_are_those_of_the_layers_outputs_gradients_and_update():
    x, y = batch()
    model, reference = small_net(), small_net()              # the same weights: the same seed
    lr = 0.5
    monitor = TrainingMonitor(model, every=1)
    with monitor.step(0):
        train_step(model, SGD(model.parameters(), lr=lr), x, y)
    rows = {row["module"]: row for row in monitor.records}
    assert [rows[str(i)]["index"] for i in range(5)] == [0, 1, 2, 3, 4]
    # The same forward pass by hand, layer by layer, and the same backward.
    outputs = [x]
    for layer in reference:
        outputs.append(layer(outputs[-1]))
    logits = outputs[-1]
    _, dlogits = ops.softmax_cross_entropy(logits, y)
    grads = [dlogits]
    for layer in reversed(list(reference)):
        grads.append(layer.backward(grads[-1]))
    grads = grads[::-1][1:]                      # grads[i]: the gradient of layer i's output
    for i, layer in enumerate(reference):
        row, out = rows[str(i)], outputs[i + 1]
        assert row["mean"] == pytest.approx(out.mean(), rel=1e-12, abs=1e-14)
        assert row["std"] == pytest.approx(out.std(), rel=1e-12)
        assert row["zeros"] == pytest.approx(np.mean(out == 0))
        assert row["grad_norm"] == pytest.approx(np.linalg.norm(grads[i]), rel=1e-12)
        for name, param in layer._parameters.items():
            grad_norm = np.linalg.norm(param.grad)
            assert row[f"{name}_grad_norm"] == pytest.approx(grad_norm, rel=1e-12)
            # plain SGD: the update is lr * grad
            weight_norm = np.linalg.norm(param.data)
            if weight_norm > 0:
                assert row[f"{name}_update_ratio"] == pytest.approx(lr * grad_norm / weight_norm, rel=1e-9)
            else:
                assert row[f"{name}_update_ratio"] is None      # the BN shift starts at zero
    assert rows["2"]["zeros"] > 0.2                  # ReLU's zeros are counted
    assert rows["2"].get("weight_norm") is None      # ReLU has no parameters


def test_only_every_nth_step_is_recorded_and_unrecorded_steps_run_without_hooks():
    x, y = batch()
    model = densenet_cifar(10, 4, dtype=np.float64, memory_efficient=True)
    monitor = TrainingMonitor(model, every=3)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    during = []
    for step in range(7):
        with monitor.step(step) as recorded:
            during.append((recorded, bool(hooked_methods(model))))
            train_step(model, optimizer, x, y)
        assert hooked_methods(model) == []
    assert during == [(step % 3 == 0,) * 2 for step in range(7)]
    assert monitor.steps() == [0, 3, 6]
    assert len(monitor.records) == 3 * len(leaf_modules(model))


def test_watching_does_not_change_training():
    x, y = batch(dtype=np.float32)
    models = [resnet_cifar(8, dtype=np.float32), resnet_cifar(8, dtype=np.float32)]
    monitor = TrainingMonitor(models[0], every=1)
    for i, model in enumerate(models):
        optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        for step in range(3):
            with monitor.step(step) if i == 0 else contextlib.nullcontext():
                train_step(model, optimizer, x, y)
    for (name, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_two_tiers_give_the_same_statistics():
    """The fast tier fuses BN and ReLU into normX: its output is the textbook's reluX output."""
    x, y = batch(size=16)
    records = {}
    for efficient in (False, True):
        model = densenet_cifar(10, 4, dtype=np.float64, memory_efficient=efficient)
        monitor = TrainingMonitor(model, every=1)
        with monitor.step(0):
            train_step(model, SGD(model.parameters(), lr=0.1, momentum=0.9), x, y)
        records[efficient] = {row["module"]: row for row in monitor.records}
    textbook, fast = records[False], records[True]
    layer = "features.denseblock2.denselayer1"
    for fast_name, textbook_name in ((f"{layer}.norm1", f"{layer}.relu1"), (f"{layer}.conv2", f"{layer}.conv2"),
                                     ("features.conv0", "features.conv0"), ("classifier", "classifier")):
        for key in ("mean", "std", "zeros", "grad_norm"):
            assert fast[fast_name][key] == pytest.approx(textbook[textbook_name][key], rel=1e-9, abs=1e-12), key
    for name in (f"{layer}.norm1", f"{layer}.conv1", "classifier"):
        for key in ("weight_grad_norm", "weight_update_ratio"):
            assert fast[name][key] == pytest.approx(textbook[name][key], rel=1e-9), (name, key)


def test_the_json_lines_file_holds_every_row_and_a_torn_last_line_is_dropped(tmp_path):
    x, y = batch()
    model = small_net()
    path = tmp_path / "layer_stats.jsonl"
    monitor = TrainingMonitor(model, every=2, path=path)
    optimizer = SGD(model.parameters(), lr=0.1)
    for step in range(4):
        with monitor.step(step):
            train_step(model, optimizer, x, y)
    assert read_layer_stats(path) == monitor.records and len(monitor.records) == 2 * 5
    with open(path, "a") as f:
        f.write('{"step": 4, "ind')
    with pytest.warns(UserWarning, match="last line is incomplete"):
        assert read_layer_stats(path) == monitor.records
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="line 2, is not a JSON record"):
        read_layer_stats(path)


def test_the_table_shows_one_step_in_forward_order():
    x, y = batch()
    model = small_net()
    monitor = TrainingMonitor(model, every=1)
    optimizer = SGD(model.parameters(), lr=0.1)
    for step in range(2):
        with monitor.step(step):
            train_step(model, optimizer, x, y)
    table = monitor.table()
    lines = table.splitlines()
    assert lines[0] == "step 1" and "update/weight" in lines[1]
    assert [line.split()[1] for line in lines[2:]] == ["0", "1", "2", "3", "4"]
    relu = next(row for row in monitor.records if row["step"] == 1 and row["module"] == "2")
    assert f"{relu['zeros']:.0%}" in lines[4]
    assert monitor.table(0).splitlines()[0] == "step 0"
    with pytest.raises(ValueError, match="step 5 was not recorded"):
        format_table(monitor.records, 5)


def test_the_plot_draws_one_line_per_recorded_step_against_depth(tmp_path):
    x, y = batch()
    model = resnet_cifar(8, dtype=np.float64)
    monitor = TrainingMonitor(model, every=1)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        with monitor.step(step):
            train_step(model, optimizer, x, y)
    fig = monitor.plot(tmp_path / "stats.png", title="ResNet-8")
    assert (tmp_path / "stats.png").stat().st_size > 10_000
    weights = [name for name, module in leaf_modules(model) if isinstance(module, (Conv2d, Linear))]
    for ax in fig.axes:
        assert ax.get_yscale() == "log" and len(ax.lines) == 3
        assert all(len(line.get_xdata()) == len(weights) for line in ax.lines)
    first = next(row for row in monitor.records if row["step"] == 0 and row["module"] == weights[0])
    assert fig.axes[0].lines[0].get_ydata()[0] == pytest.approx(first["weight_grad_norm"])


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "10"])
def test_a_bad_interval_is_refused(every):
    with pytest.raises(ValueError, match="every must be a whole number"):
        TrainingMonitor(small_net(), every=every)


# -- the first non-finite module ----------------------------------------------------------------------------------
class Blowup(Module):
    """The identity, except that it multiplies by infinity in its forward or its backward pass."""

    def __init__(self, where):
        super().__init__()
        self.where = where

    def forward(self, x):
        return np.full_like(x, np.inf) if self.where == "forward" else x

    def backward(self, dout):
        return np.full_like(dout, np.inf) if self.where == "backward" else dout


def blowup_net(where):
    rng = np.random.default_rng(0)
    return Sequential(Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=rng), ReLU(), Blowup(where),
                      GlobalAvgPool2d(), Linear(4, 10, dtype=np.float64, rng=rng))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")     # inf - inf, inf * 0 after it
def test_a_module_that_makes_infinity_in_its_forward_pass_is_named():
    x, y = batch()
    report = find_non_finite(blowup_net("forward"), x, y)
    assert (report.phase, report.module) == ("forward", "2")
    assert str(report).startswith("first non-finite: 2 (Blowup), its output in the forward pass")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_module_that_makes_infinity_in_its_backward_pass_is_named_not_the_ones_before_it():
    x, y = batch()
    report = find_non_finite(blowup_net("backward"), x, y)
    assert (report.phase, report.module) == ("backward", "2")
    assert "the gradient it passes back" in str(report)


def test_non_finite_inputs_and_weights_are_named_before_anything_runs():
    x, y = batch()
    model = blowup_net(None)
    assert find_non_finite(model, x, y).phase is None
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    assert find_non_finite(model, bad, y).phase == "input"
    model[4].weight.data[0, 0] = np.inf
    report = find_non_finite(model, x, y)
    assert (report.phase, report.module) == ("weights", "4") and "4.weight" in str(report)


@pytest.mark.parametrize("efficient", [False, True])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_an_overflowing_first_convolution_is_named_by_its_state_dict_name(efficient):
    x, y = batch(size=16, dtype=np.float32)
    model = densenet_cifar(10, 4, memory_efficient=efficient)
    model.features.conv0.weight.data *= np.float32(1e37)
    report = find_non_finite(model, x * np.float32(10), y)
    assert (report.phase, report.module) == ("forward", "features.conv0")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_batch_statistics_that_overflow_behind_a_finite_output_are_named():
    """A huge residual branch overflows the final norm's variance: its output is then its shift, finite, and so
    are the loss and the gradients: only the statistics show that the network went wrong."""
    x, y = batch(size=16, dtype=np.float32)
    model = resnet_cifar(8)
    model.layer3[0].conv2.weight.data *= np.float32(1e30)
    report = find_non_finite(model, x, y)
    assert (report.phase, report.module) == ("forward", "bn")
    assert str(report) == "first non-finite: bn (BatchNorm2d), its batch statistics in the forward pass"
