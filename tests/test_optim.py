"""SGD against torch.optim.SGD over several steps, and the schedules against torch's schedulers."""
import numpy as np
import pytest

from scratchnet.backend import to_device, to_numpy
from scratchnet.nn import Parameter
from scratchnet.optim import SGD, cosine_lr, restart_cycles, step_lr

SETTINGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "paper (nesterov, weight decay)": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "dampening and decay": dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=5e-3),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_sgd_follows_torch_optim_sgd(name, dtype, torch):
    settings = SETTINGS[name]
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 3, 3), (7,), (2, 5)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [Parameter(a.copy()) for a in start]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    sgd, torch_sgd = SGD(ours, **settings), torch.optim.SGD(theirs, **settings)
    for step in range(6):
        if step == 3:   # a schedule changing the learning rate mid-way
            sgd.lr = settings["lr"] / 10
            for group in torch_sgd.param_groups:
                group["lr"] = settings["lr"] / 10
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        sgd.zero_grad()
        torch_sgd.zero_grad()
        for param, tensor, grad in zip(ours, theirs, grads):
            param.accumulate_grad(grad.copy())
            tensor.grad = torch.tensor(grad)
        sgd.step()
        torch_sgd.step()
        for param, tensor in zip(ours, theirs):
            expected = tensor.detach().numpy()
            assert param.data.dtype == expected.dtype
            tolerance = 1e-14 if dtype == "float64" else 1e-6
            assert np.allclose(param.data, expected, rtol=tolerance, atol=tolerance), f"step {step}"


def test_parameters_without_a_gradient_are_left_alone():
    frozen, trained = Parameter(np.ones(3)), Parameter(np.ones(3))
    trained.accumulate_grad(np.ones(3))
    SGD([frozen, trained], lr=0.5, weight_decay=0.1).step()
    assert (frozen.data == 1).all() and np.allclose(trained.data, 1 - 0.5 * (1 + 0.1))


@pytest.mark.parametrize("saved_on_host", [True, False], ids=["as saved to disk", "as it is"])
def test_state_dict_round_trip_continues_identically(device, saved_on_host):
    rng = np.random.default_rng(1)
    grads = [to_device(rng.standard_normal(5), device) for _ in range(4)]

    def run(steps, sgd, param):
        for grad in steps:
            param.grad = None
            param.accumulate_grad(grad.copy())
            sgd.step()

    straight = Parameter(to_device(np.zeros(5), device))
    sgd = SGD([straight], lr=0.1, momentum=0.9, nesterov=True)
    run(grads, sgd, straight)

    first = Parameter(to_device(np.zeros(5), device))
    sgd_first = SGD([first], lr=0.1, momentum=0.9, nesterov=True)
    run(grads[:2], sgd_first, first)
    state = sgd_first.state_dict()
    if saved_on_host:                    # what a checkpoint holds: NumPy arrays
        state = {key: to_numpy(value) for key, value in state.items()}
    resumed = Parameter(first.data.copy())
    sgd_resumed = SGD([resumed], lr=0.5, momentum=0.9, nesterov=True)
    sgd_resumed.load_state_dict(state)
    run(grads[2:], sgd_resumed, resumed)
    assert np.array_equal(to_numpy(resumed.data), to_numpy(straight.data))


def test_load_state_dict_rejects_a_mismatch():
    sgd = SGD([Parameter(np.zeros(3))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum_buffer.0 has shape \(4,\) but parameter 0 has \(3,\)"):
        sgd.load_state_dict({"lr": np.array(0.1), "momentum_buffer.0": np.zeros(4)})
    with pytest.raises(ValueError, match="unexpected key 'momentum_buffer.1' for 1 parameters"):
        sgd.load_state_dict({"lr": np.array(0.1), "momentum_buffer.1": np.zeros(3)})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        SGD([], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="must be >= 0"):
        SGD([], lr=-1)


@pytest.mark.parametrize("epochs", [300, 40, 7])
def test_step_schedule_matches_multistep_lr(epochs, torch):
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [epochs // 2, epochs * 3 // 4], gamma=0.1)
    for epoch in range(epochs):
        assert np.isclose(step_lr(epoch, 0.1, epochs), optimizer.param_groups[0]["lr"], rtol=1e-12)
        optimizer.step()
        scheduler.step()
    assert step_lr(0, 0.1, 300) == 0.1 and np.isclose(step_lr(150, 0.1, 300), 0.01)
    assert np.isclose(step_lr(225, 0.1, 300), 0.001)


def test_cosine_schedule_matches_cosine_annealing_lr(torch):
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
    for epoch in range(20):
        assert np.isclose(cosine_lr(epoch, 0.1, 20), optimizer.param_groups[0]["lr"], rtol=1e-9, atol=1e-15)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("total, restarts", [(120, 1), (70, 2), (45, 3), (6, 0)])
def test_warm_restarts_match_cosine_annealing_warm_restarts(total, restarts, torch):
    """SGDR with T_mult = 2 against torch's scheduler, stepped once per step; the first cycle is plain cosine_lr's."""
    first = restart_cycles(total, restarts)[0]
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=first, T_mult=2)
    assert first * (2 ** (restarts + 1) - 1) == total        # whole cycles, as torch's doubling makes them
    for t in range(total):
        assert np.isclose(cosine_lr(t, 0.1, total, restarts), optimizer.param_groups[0]["lr"], rtol=1e-9, atol=1e-15)
        if t < first:
            assert cosine_lr(t, 0.1, total, restarts) == cosine_lr(t, 0.1, first)
        optimizer.step()
        scheduler.step()
    starts = np.cumsum([0] + restart_cycles(total, restarts)[:-1])
    assert [cosine_lr(int(t), 0.1, total, restarts) for t in starts] == [0.1] * (restarts + 1)


def test_one_more_restart_leaves_the_schedule_so_far_unchanged():
    """A finished SGDR run extended by a cycle twice as long keeps its past: the shipped network's run (782 steps an
    epoch) went 40 -> 120 epochs (--restarts 1) -> 280 (--restarts 2), each a --resume from the last one's end."""
    steps = 782
    for (before, r_before), (after, r_after) in [((40, 0), (120, 1)), ((120, 1), (280, 2))]:
        past = [cosine_lr(t, 0.1, before * steps, r_before) for t in range(before * steps)]
        assert past == [cosine_lr(t, 0.1, after * steps, r_after) for t in range(before * steps)]
        assert cosine_lr(before * steps, 0.1, after * steps, r_after) == 0.1       # then the restart


def test_restart_cycles_double_and_fill_the_run():
    assert restart_cycles(120, 1) == [40, 80]
    assert restart_cycles(93_840, 1) == [31_280, 62_560]           # 120 epochs of 782 steps
    assert restart_cycles(75, 2) == [10, 20, 45]                   # the last cycle takes the remainder
    assert restart_cycles(9, 0) == [9]
    assert cosine_lr(120, 0.1, 120, 1) == 0.0                      # the end of the run: annealed, not restarted
    with pytest.raises(ValueError, match="too few for 2 restarts"):
        restart_cycles(6, 2)


def reference_step(params, grads, buffers, lr, momentum, nesterov, weight_decay):
    """The module docstring's formula, one parameter at a time (NumPy arrays, in place; buffers: list of None/array)."""
    for i, (p, g) in enumerate(zip(params, grads)):
        if g is None:
            continue
        g = g + weight_decay * p
        if buffers[i] is None:
            buffers[i] = g.copy()
        else:
            buffers[i] *= momentum
            buffers[i] += 1.0 * g
        g = g + momentum * buffers[i] if nesterov else buffers[i]
        p -= lr * g


def test_the_flat_update_gives_bit_for_bit_the_per_parameter_formula_for_mixed_dtypes():
    rng = np.random.default_rng(3)
    shapes, dtypes = [(4, 3, 3, 3), (7,), (2, 5), (3,)], [np.float32, np.float64, np.float32, np.float64]
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    ours = [Parameter(a.copy()) for a in start]
    expected, buffers = [a.copy() for a in start], [None] * len(start)
    sgd = SGD(ours, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert len(sgd.groups) == 2                              # one flat array per dtype
    for step in range(5):
        sgd.lr = 0.1 if step < 3 else 0.01
        grads = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
        sgd.zero_grad()
        for param, grad in zip(ours, grads):
            param.accumulate_grad(grad.copy())
        sgd.step()
        reference_step(expected, grads, buffers, sgd.lr, 0.9, True, 1e-4)
        for param, value in zip(ours, expected):
            assert param.data.dtype == value.dtype and np.array_equal(param.data, value), f"step {step}"


def test_parameters_that_miss_a_gradient_now_and_then_follow_torch(torch):
    rng = np.random.default_rng(4)
    start = [rng.standard_normal(5) for _ in range(3)]
    ours = [Parameter(a.copy()) for a in start]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    settings = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    sgd, torch_sgd = SGD(ours, **settings), torch.optim.SGD(theirs, **settings)
    missing = [{1}, set(), {0, 2}, set(), {1}]                # which parameters have no gradient, step by step
    for step, skip in enumerate(missing):
        sgd.zero_grad()
        torch_sgd.zero_grad()
        for i, (param, tensor) in enumerate(zip(ours, theirs)):
            if i not in skip:
                grad = rng.standard_normal(5)
                param.accumulate_grad(grad.copy())
                tensor.grad = torch.tensor(grad)
        sgd.step()
        torch_sgd.step()
        for param, tensor in zip(ours, theirs):
            assert np.allclose(param.data, tensor.detach().numpy(), rtol=1e-14, atol=1e-14), f"step {step}"


def test_all_finite_sees_every_gradient_and_the_extra_arrays_and_step_uses_the_gradients_as_they_are_then():
    params = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    sgd = SGD(params, lr=0.5)
    for param in params:
        param.accumulate_grad(np.ones(param.shape))
    assert bool(sgd.all_finite(np.array(1.5)))
    assert not bool(sgd.all_finite(np.array(np.inf)))
    params[1].grad[0] = np.nan                              # the gradients are views of the flat one now
    assert not bool(sgd.all_finite())
    params[1].grad[0] = 1.0
    params[0].grad *= 2                                     # changed in place after the check (clipping, say)
    sgd.step()
    assert np.array_equal(params[0].data, [0, 0, 0]) and np.array_equal(params[1].data, [0.5, 0.5])


def test_replacing_a_parameters_array_after_making_the_optimiser_is_refused():
    param = Parameter(np.ones(3))
    sgd = SGD([param], lr=0.1)
    param.data = np.zeros(3)                                # what model.to(device) does
    param.accumulate_grad(np.ones(3))
    with pytest.raises(RuntimeError, match="make the optimiser after moving the model"):
        sgd.step()


def test_backward_writes_the_gradients_into_the_flat_buffer_with_the_values_it_returns_alone(monkeypatch):
    # The fast layers write their weight gradients straight into SGD's flat array (Parameter.grad_destination);
    # the values are those of the same network without an optimiser, also when a second backward accumulates.
    from scratchnet.models import densenet_cifar

    copied = []                                          # first gradients that had to be copied into the buffer
    accumulate = Parameter.accumulate_grad

    def watched(param, grad):
        if param.grad is None and param.grad_buffer is not None and grad is not param.grad_buffer:
            copied.append(grad.shape)
        accumulate(param, grad)

    monkeypatch.setattr(Parameter, "accumulate_grad", watched)
    rng = np.random.default_rng(0)
    x, dlogits = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((2, 10))
    alone, flat = (densenet_cifar(depth=10, k=4, dtype="float64", memory_efficient=True, seed=1) for _ in range(2))
    sgd = SGD(flat.parameters(), lr=0.1, momentum=0.9)
    for model in (alone, flat):
        for _ in range(2):                               # two backward passes add up
            model(x)
            model.backward(dlogits)
    for (name, a), b in zip(alone.named_parameters(), flat.parameters()):
        assert b.grad is b.grad_buffer, name
        assert np.array_equal(a.grad, b.grad), name
    assert not any(p.grad is p.grad_buffer for p in alone.parameters())
    assert copied == [(10, flat.classifier.in_features), (10,)]     # only the (textbook) classifier's
    assert sgd.groups[0].gather_grads() is not None
