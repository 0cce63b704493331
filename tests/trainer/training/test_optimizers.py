"""Tests for trainer.training.optimizers: row sparsity, Keras parity, tf.function, ckpts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.training import optimizers

ROWS, DIM, SEED = 12, 3, 7
# Rows 1, 2, 4, 9 are touched; row 4 at every step, row 2 only at the last.
BATCHES = [[1, 4, 4, 9], [4, 9, 9, 9], [1, 2, 4]]
TOUCHED = sorted({i for batch in BATCHES for i in batch})

FACTORIES: dict[str, Callable[[], optimizers.RowSparseOptimizer]] = {
    "adagrad": lambda: optimizers.SparseAdagrad(learning_rate=0.1),
    "ftrl": lambda: optimizers.SparseFtrl(
        learning_rate=0.2,
        l1_regularization_strength=0.01,
        l2_regularization_strength=0.1,
    ),
    "lazy_adam": lambda: optimizers.LazyAdam(learning_rate=0.05),
}
KERAS_TWINS: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
    "adagrad": lambda: keras.optimizers.Adagrad(
        learning_rate=0.1, initial_accumulator_value=0.1, epsilon=1e-7
    ),
    "ftrl": lambda: keras.optimizers.Ftrl(
        learning_rate=0.2,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.01,
        l2_regularization_strength=0.1,
    ),
    "lazy_adam": lambda: keras.optimizers.Adam(learning_rate=0.05, epsilon=1e-7),
}


def _initial_table(seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(ROWS, DIM)).astype(np.float32)


def _sparse_grad(table: tf.Variable, ids: list[int], step: int) -> tf.IndexedSlices:
    """Gradient of a per-position weighted squared loss over the gathered rows."""
    weights = tf.constant(np.arange(1, len(ids) + 1, dtype=np.float32)[:, None] + step)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weights * tf.square(tf.gather(table, ids) - 0.5))
    grad = tape.gradient(loss, table)
    assert isinstance(grad, tf.IndexedSlices)
    return grad


def _run_sparse(
    opt: optimizers.RowSparseOptimizer, table: tf.Variable, batches=BATCHES
) -> None:
    for step, ids in enumerate(batches):
        opt.apply_gradients([(_sparse_grad(table, ids, step), table)])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_only_touched_rows_and_slots_change(name: str) -> None:
    init = _initial_table()
    table = tf.Variable(init, name="table")
    opt = FACTORIES[name]()
    _run_sparse(opt, table)
    untouched = [r for r in range(ROWS) if r not in TOUCHED]
    np.testing.assert_array_equal(table.numpy()[untouched], init[untouched])
    assert np.all(np.abs(table.numpy()[TOUCHED] - init[TOUCHED]) > 0)
    for slot_name, slot in opt.slots(table).items():
        start = np.float32(opt.slot_initial_values()[slot_name])
        np.testing.assert_array_equal(slot.numpy()[untouched], start)
        assert np.all(slot.numpy()[TOUCHED] != start), slot_name
    assert int(opt.iterations.numpy()) == len(BATCHES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_duplicate_indices_are_summed(name: str) -> None:
    values = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [4.0, 4.0, 4.0]], np.float32)
    dup = tf.Variable(_initial_table(), name="dup")
    summed = tf.Variable(_initial_table(), name="summed")
    opt_dup, opt_sum = FACTORIES[name](), FACTORIES[name]()
    opt_dup.apply_gradients(
        [(tf.IndexedSlices(tf.constant(values), tf.constant([5, 2, 5])), dup)]
    )
    dense = np.zeros((ROWS, DIM), np.float32)
    dense[5], dense[2] = values[0] + values[2], values[1]
    opt_sum.apply_gradients([(tf.constant(dense), summed)])
    np.testing.assert_allclose(dup.numpy()[[2, 5]], summed.numpy()[[2, 5]], atol=1e-6)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_dense_path_matches_keras(name: str) -> None:
    rng = np.random.default_rng(SEED)
    ours = tf.Variable(_initial_table(), name="ours")
    theirs = keras.Variable(_initial_table(), name="theirs")
    opt, twin = FACTORIES[name](), KERAS_TWINS[name]()
    for _ in range(5):
        grad = tf.constant(rng.normal(size=(ROWS, DIM)).astype(np.float32))
        opt.apply_gradients([(grad, ours)])
        twin.apply_gradients([(grad, theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_sparse_path_matches_keras_on_touched_rows(name: str) -> None:
    # A zero gradient leaves an Adagrad row alone, so every touched row matches. Dense
    # FTRL resets never-touched rows to 0 (z = 0), so rows match once touched from the
    # first step; lazy Adam matches dense Adam only for rows touched at every step.
    rows = {"adagrad": TOUCHED, "ftrl": sorted(set(BATCHES[0])), "lazy_adam": [4]}[name]
    ours = tf.Variable(_initial_table(), name="ours")
    theirs = keras.Variable(_initial_table(), name="theirs")
    opt, twin = FACTORIES[name](), KERAS_TWINS[name]()
    for step, ids in enumerate(BATCHES):
        opt.apply_gradients([(_sparse_grad(ours, ids, step), ours)])
        dense = tf.convert_to_tensor(_sparse_grad(theirs.value, ids, step))
        twin.apply_gradients([(dense, theirs)])
    np.testing.assert_allclose(ours.numpy()[rows], theirs.numpy()[rows], atol=1e-6)


def test_sparse_ftrl_matches_raw_sparse_apply_ftrl() -> None:
    init = _initial_table()
    ours = tf.Variable(init, name="ours")
    opt = FACTORIES["ftrl"]()
    ref = tf.Variable(init)
    accum = tf.Variable(tf.fill((ROWS, DIM), 0.1))
    linear = tf.Variable(tf.zeros((ROWS, DIM)))
    for step, ids in enumerate(BATCHES):
        grad = _sparse_grad(ours, ids, step)
        opt.apply_gradients([(grad, ours)])
        ids_u, values = optimizers.dedupe_indexed_slices(_sparse_grad(ref, ids, step))
        tf.raw_ops.ResourceSparseApplyFtrl(
            var=ref.handle, accum=accum.handle, linear=linear.handle, grad=values,
            indices=ids_u, lr=0.2, l1=0.01, l2=0.1, lr_power=-0.5,
        )  # fmt: skip
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-6)
    slots = opt.slots(ours)
    np.testing.assert_allclose(slots["linear"].numpy(), linear.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        opt.slots(ours)["accumulator"].numpy(), accum.numpy(), rtol=1e-6
    )


def test_keras_embedding_gives_indexed_slices_and_keras_variables_work() -> None:
    keras.utils.set_random_seed(SEED)
    layer = keras.layers.Embedding(ROWS, DIM)
    layer.build((None,))
    before = keras.ops.convert_to_numpy(layer.embeddings)
    opt = optimizers.SparseAdagrad(learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant([[3, 3], [8, 1]])))
    grad = tape.gradient(loss, layer.trainable_variables)[0]
    assert isinstance(grad, tf.IndexedSlices)
    opt.apply_gradients([(grad, layer.embeddings)])
    after = keras.ops.convert_to_numpy(layer.embeddings)
    changed = np.flatnonzero(np.any(after != before, axis=1))
    np.testing.assert_array_equal(changed, [1, 3, 8])
    slots = opt.slots(layer.embeddings)
    assert slots["accumulator"] is opt.slots(layer.embeddings.value)["accumulator"]
    np.testing.assert_allclose(slots["accumulator"].numpy()[3], 0.1 + 2.0**2)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_tf_function_matches_eager(name: str) -> None:
    eager = tf.Variable(_initial_table(), name="eager")
    graph = tf.Variable(_initial_table(), name="graph")
    opt_eager, opt_graph = FACTORIES[name](), FACTORIES[name]()
    _run_sparse(opt_eager, eager)

    @tf.function
    def step(ids: tf.Tensor, step: tf.Tensor) -> None:
        weights = tf.cast(tf.range(1, tf.size(ids) + 1), tf.float32)[:, None]
        weights += tf.cast(step, tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(weights * tf.square(tf.gather(graph, ids) - 0.5))
        opt_graph.apply_gradients([(tape.gradient(loss, graph), graph)])

    for i, ids in enumerate(BATCHES):  # slots are created lazily during the first trace
        step(tf.constant(ids), tf.constant(i))
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), atol=1e-6)
    assert int(opt_graph.iterations.numpy()) == len(BATCHES)


@pytest.mark.parametrize("restore_before_slots_exist", [True, False])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_checkpoint_round_trip_reproduces_next_step(
    tmp_path, name: str, restore_before_slots_exist: bool
) -> None:
    table = tf.Variable(_initial_table(), name="table")
    opt = FACTORIES[name]()
    _run_sparse(opt, table, BATCHES[:2])
    path = tf.train.Checkpoint(model=table, optimizer=opt).save(str(tmp_path / "ckpt"))
    _run_sparse(opt, table, BATCHES[2:])

    fresh_table = tf.Variable(tf.zeros((ROWS, DIM)), name="table")
    fresh = FACTORIES[name]()
    if not restore_before_slots_exist:
        fresh.build([fresh_table])
    status = tf.train.Checkpoint(model=fresh_table, optimizer=fresh).restore(path)
    assert int(fresh.iterations.numpy()) == 2
    grad = _sparse_grad(fresh_table, BATCHES[2], 0)  # step index as in _run_sparse
    fresh.apply_gradients([(grad, fresh_table)])
    status.assert_consumed()
    np.testing.assert_array_equal(fresh_table.numpy(), table.numpy())
    for slot_name, slot in opt.slots(table).items():
        np.testing.assert_array_equal(
            fresh.slots(fresh_table)[slot_name].numpy(), slot.numpy()
        )


def test_learning_rate_schedule_matches_keras() -> None:
    def schedule() -> keras.optimizers.schedules.LearningRateSchedule:
        return keras.optimizers.schedules.InverseTimeDecay(0.1, 1, 0.5)

    ours = tf.Variable(_initial_table(), name="ours")
    theirs = keras.Variable(_initial_table(), name="theirs")
    opt, twin = optimizers.LazyAdam(schedule()), keras.optimizers.Adam(schedule())
    for grad in np.random.default_rng(SEED).normal(size=(3, ROWS, DIM)):
        opt.apply_gradients([(tf.constant(grad, tf.float32), ours)])
        twin.apply_gradients([(tf.constant(grad, tf.float32), theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)


def test_invalid_arguments_and_name_clash() -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SparseAdagrad(learning_rate=0.0)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optimizers.SparseFtrl(initial_accumulator_value=0.0)
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.LazyAdam(beta_1=1.0)
    opt = optimizers.SparseAdagrad()
    with pytest.raises(ValueError, match="share the name"):
        opt.build([tf.Variable([1.0], name="same"), tf.Variable([2.0], name="same")])


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer.training import optimizers

    ids = tf.constant([[1, 1, 3], [3, 2, 7]])  # one row of ids per replica
    init = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)

    def loss_fn(table, batch):
        return tf.reduce_sum(tf.square(tf.gather(table, batch) - 1.0))

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        table = tf.Variable(init)
        opt = optimizers.SparseFtrl(0.1, l1_regularization_strength=0.01)
    dataset = tf.data.Dataset.from_tensor_slices(ids).batch(2)
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(batch):
        def replica_fn(batch):
            with tf.GradientTape() as tape:
                loss = loss_fn(table, batch)
            opt.apply_gradients([(tape.gradient(loss, table), table)])
        strategy.run(replica_fn, args=(batch,))

    for _ in range(3):
        for batch in dist:
            step(batch)
    ref = tf.Variable(init)
    ref_opt = optimizers.SparseFtrl(0.1, l1_regularization_strength=0.01)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = loss_fn(ref, tf.reshape(ids, [-1]))
        ref_opt.apply_gradients([(tape.gradient(loss, ref), ref)])
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "iterations": int(opt.iterations.numpy()),
        "max_diff": max(float(np.abs(v.numpy() - ref.numpy()).max())
                        for v in table.values),
        "changed_rows": np.flatnonzero(
            np.any(table.values[1].numpy() != init, axis=1)).tolist(),
    }))
    """
)


def test_mirrored_strategy_two_replicas_matches_single_device(repo_root) -> None:
    # A subprocess, because logical devices must be configured before TF initializes.
    env = {**os.environ, "PYTHONPATH": str(repo_root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["iterations"] == 3
    assert result["max_diff"] < 1e-5
    assert result["changed_rows"] == [1, 2, 3, 7]


def test_sparse_sgd_updates_only_touched_rows():
    from trainer.training.optimizers import SparseSGD

    table = tf.Variable(tf.ones((6, 2)))
    opt = SparseSGD(learning_rate=0.5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 1, 4]))
    grad = tape.gradient(loss, table)
    assert isinstance(grad, tf.IndexedSlices)
    opt.apply_gradients([(grad, table)])
    expected = np.ones((6, 2), dtype="float32")
    expected[1] -= 0.5 * 2  # index 1 appears twice: gradients are summed
    expected[4] -= 0.5
    np.testing.assert_array_equal(table.numpy(), expected)
    assert opt.slots(table) == {}


# ------------------------------------------------------------------ the one factory


def test_every_config_name_maps_to_one_class_and_adam_is_dense_adam() -> None:
    from trainer.config import OPTIMIZER_NAMES, OptimizerConfig, TrainerConfig

    assert set(OPTIMIZER_NAMES) == set(optimizers.OPTIMIZERS)
    for name in OPTIMIZER_NAMES:
        opt = optimizers.make_optimizer(OptimizerConfig(name=name, learning_rate=0.1))
        assert type(opt) is optimizers.OPTIMIZERS[name][0], name
    assert optimizers.OPTIMIZERS["adam"][0].densify
    assert not any(
        cls.densify for n, (cls, _) in optimizers.OPTIMIZERS.items() if n != "adam"
    )
    # Wide-and-deep's defaults stay row-sparse.
    defaults = TrainerConfig(name="t")
    assert (defaults.optimizer.name, defaults.wide_optimizer.name) == (
        "lazy_adam",
        "sparse_ftrl",
    )
    # The old names are refused, not silently given a new meaning.
    with pytest.raises(ValueError, match="'ftrl' is not one of"):
        optimizers.make_optimizer(types.SimpleNamespace(name="ftrl", learning_rate=1))


def test_adam_on_indexed_slices_is_dense_keras_adam_bit_for_bit() -> None:
    ours = tf.Variable(_initial_table(), name="ours")
    theirs = keras.Variable(_initial_table(), name="theirs")
    lazy = tf.Variable(_initial_table(), name="lazy")
    opt = optimizers.Adam(learning_rate=0.05)
    twin = keras.optimizers.Adam(learning_rate=0.05, epsilon=1e-7)
    lazy_opt = optimizers.LazyAdam(learning_rate=0.05)
    for step, ids in enumerate(BATCHES):
        opt.apply_gradients([(_sparse_grad(ours, ids, step), ours)])
        dense = tf.convert_to_tensor(_sparse_grad(theirs.value, ids, step))
        twin.apply_gradients([(dense, theirs)])
        lazy_opt.apply_gradients([(_sparse_grad(lazy, ids, step), lazy)])
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # Row 1 is skipped by the second batch: dense Adam still moves it, lazy Adam not.
    assert not np.allclose(ours.numpy()[1], lazy.numpy()[1])
    np.testing.assert_array_equal(ours.numpy()[4], lazy.numpy()[4])
