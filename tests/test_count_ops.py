"""bench --count-ops: what counts as one array operation, and the count of a training step.

The rules are checked one by one on small arrays against counts worked out by hand; the step's count is
checked to be stable (the same twice, and for any batch size) and to move by exactly what an added
operation or host read adds.
"""
import numpy as np
import pytest

from scratchnet import backend
from scratchnet import trainer
from scratchnet.bench import main as bench_main
from scratchnet.bench.count_ops import (CountedArray, Tally, _active, count_training_step, counting_backend,
                                       format_tally)
from scratchnet.nn import Parameter
from scratchnet.optim import SGD

SMALL = dict(depth=10, k=4, batch_size=4)        # DenseNet-BC with one layer per block


def counted(*arrays):
    return [np.asarray(a, dtype=np.float64).view(CountedArray) for a in arrays]


def tally_of(action):
    """The Tally of ``action()``, run with the backend handing out CountedArrays."""
    tally = Tally()
    with counting_backend():
        _active.append(tally)
        try:
            action()
        finally:
            _active.remove(tally)
    return tally


@pytest.mark.parametrize("expression, ops, syncs", [
    (lambda a, b: a * b + 1, 2, 0),                                  # two ufuncs
    (lambda a, b: a[1:].reshape(-1, 1).T, 0, 0),                     # views only
    (lambda a, b: a[[0, 2]], 1, 0),                                  # a gather
    (lambda a, b: a.sum() + a.max(axis=0).mean(), 4, 0),             # reductions; a mean is one
    (lambda a, b: float(a.sum()), 1, 1),                             # a read on the host
    (lambda a, b: bool((a > 0).all()), 2, 1),
    (lambda a, b: np.concatenate([a, b]), 1, 0),
    (lambda a, b: a.copy().astype(np.float64, copy=False), 1, 0),    # astype to its own dtype need not copy
    (lambda a, b: a.astype(np.float32), 1, 0),
    (lambda a, b: np.einsum("ij,ij->i", a, b), 1, 0),
    (lambda a, b: a.T.reshape(12), 1, 0),                            # a reshape the strides cannot express
    (lambda a, b: backend.get_array_module(a).ascontiguousarray(a.T), 1, 0),
    (lambda a, b: backend.get_array_module(a).ascontiguousarray(a[1:]), 0, 0),   # contiguous already
])
def test_each_kind_of_operation_counts_as_cupy_would_launch_it(expression, ops, syncs):
    a, b = counted(np.arange(12.0).reshape(4, 3), np.ones((4, 3)))
    tally = tally_of(lambda: expression(a, b))
    assert (tally.total, sum(tally.syncs.values())) == (ops, syncs)


def test_an_in_place_update_of_a_slice_is_one_operation_and_array_making_is_counted_through_xp():
    a, b = counted(np.zeros((4, 3)), np.ones((2, 3)))

    def work():
        xp = backend.get_array_module(a)
        a[1:3] += b                              # the add; assigning the view onto itself moves nothing
        a[:2] = b                                # a copy
        xp.empty(5)                              # allocation only
        xp.zeros(5)                              # a fill
        a[:0] = 0                                # an empty target: nothing launched
        np.zeros(5)                              # host numpy: not device work
        backend.to_numpy(a)                      # a read on the host

    tally = tally_of(work)
    assert tally.total == 3 and sum(tally.syncs.values()) == 1
    assert np.array_equal(a.view(np.ndarray), [[1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0]])   # the work was done


def test_a_step_count_is_the_same_twice_and_for_any_batch_size():
    first = count_training_step(trainer.RunConfig(**SMALL))
    again = count_training_step(trainer.RunConfig(**SMALL))
    other_batch = count_training_step(trainer.RunConfig(**{**SMALL, "batch_size": 6}))
    assert first.ops == again.ops == other_batch.ops
    assert first.total > 100 and set(first.by_family()) >= {"batch norm + ReLU", "convolution", "SGD", "loss"}


def test_an_added_operation_or_host_read_changes_the_count_by_exactly_that(monkeypatch):
    base = count_training_step(trainer.RunConfig(**SMALL))
    read_numbers = trainer.read_numbers

    def with_one_more(*values):
        float(values[1] * 2)                     # one multiply, one read on the host
        return read_numbers(*values)

    monkeypatch.setattr(trainer, "read_numbers", with_one_more)
    more = count_training_step(trainer.RunConfig(**SMALL))
    assert more.total == base.total + 1
    assert sum(more.syncs.values()) == sum(base.syncs.values()) + 1


@pytest.mark.parametrize("memory_efficient", [True, False], ids=["memory-efficient", "textbook"])
def test_the_training_loop_reads_from_the_device_once_a_step(memory_efficient):
    tally = count_training_step(trainer.RunConfig(**SMALL, memory_efficient=memory_efficient))
    assert sum(tally.syncs.values()) == 1


def test_a_memory_efficient_densenet_bc_40_step_issues_at_most_2000_operations_and_one_host_read():
    # Issue 14's bound (4,297 before it, counted with this counter on commit 91ccc77). Batch 2: the count
    # does not depend on the batch size (test above), only the time to run it does.
    tally = count_training_step(trainer.RunConfig(depth=40, k=12, batch_size=2, memory_efficient=True))
    assert tally.total <= 2000, format_tally(tally, "BC L=40, k=12, memory-efficient")
    assert sum(tally.syncs.values()) == 1
    assert tally.by_family()["SGD"] <= 20                # one update for all 119 parameters
    # Only the classifier's two gradients are copied into SGD's flat array: the fast layers write theirs there.
    assert tally.ops[("scratchnet.nn.module.Parameter.accumulate_grad", "setitem")] == 2


def test_one_sgd_step_costs_the_same_operations_for_any_number_of_parameters():
    def step_count(n):
        params = [Parameter(np.ones(3).view(CountedArray)) for _ in range(n)]
        sgd = SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)

        def backward_and_step():
            for param in params:
                param.accumulate_grad(np.full(3, 0.5).view(CountedArray))
            sgd.step()

        tally_of(backward_and_step)                     # the first step fills the momentum buffers
        tally = tally_of(backward_and_step)
        return tally.total - n                          # less the copy of each gradient into the flat one

    assert step_count(3) == step_count(30) <= 10


def test_bench_count_ops_prints_the_count_by_family_and_function(capsys):
    assert bench_main(["--count-ops", "--depth", "10", "--k", "4", "--batch", "4"]) == 0
    printed = capsys.readouterr().out
    total = count_training_step(trainer.RunConfig(**SMALL)).total
    assert f"DenseNet-BC (L=10, k=4), efficient, batch 4: one step of the training loop: {total:,} array " \
           "operations, 1 host synchronisations" in printed
    assert "by family:" in printed and "scratchnet.optim.SGD" in printed and "read_numbers" in printed
