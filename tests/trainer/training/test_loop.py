"""Tests of trainer.training.loop: learning, non-finite losses, checkpoints, resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import wide_deep_testing as wdt
from trainer.config import OptimizerConfig, TrainingConfig
from trainer.data import examples as data
from trainer.training import loop as train_loop
from trainer.training import losses, optimizers

N = 256
BATCH = 32


@pytest.fixture(scope="module", autouse=True)
def deterministic_ops():
    """Bit-equality needs deterministic kernels; restored for the other modules."""
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was:
        tf_config.disable_op_determinism()


def _groups(model):
    return [
        (
            optimizers.make_optimizer(OptimizerConfig("sparse_ftrl", 0.1, l1=1e-4)),
            lambda: model.wide_variables,
        ),
        (
            optimizers.make_optimizer(OptimizerConfig("sparse_adagrad", 0.1)),
            lambda: model.deep_variables,
        ),
    ]


def _train(out, examples, epochs=1, progress=None, shuffle=True, **cfg):
    model = wdt.make_model(seed=7)
    groups = _groups(model)
    settings = TrainingConfig(
        batch_size=BATCH, epochs=epochs, log_every=1, seed=3, **cfg
    )
    ds = data.make_dataset(examples, "label", BATCH, settings.seed, shuffle, epochs)
    total = data.num_batches(examples, "label", BATCH, epochs)
    result = train_loop.train(model, ds, groups, settings, str(out), total, progress)
    return model, groups, result


def _mean_loss(model, examples) -> float:
    feats = {k: v for k, v in examples.items() if k != "label"}
    return float(
        tf.reduce_mean(losses.bce_with_logits(examples["label"], model(feats)))
    )


@pytest.fixture(scope="module")
def examples():
    return wdt.learnable_examples(N, seed=1)


def test_loss_decreases_on_a_learnable_problem(examples, tmp_path):
    before = _mean_loss(wdt.make_model(seed=7), examples)
    model, _, result = _train(tmp_path, examples, epochs=4)
    after = _mean_loss(model, examples)
    assert result.steps == 4 * N // BATCH and result.resumed_from == 0
    assert result.examples == 4 * N
    assert before > 0.65  # an untrained model predicts ~0.5
    assert after < min(0.55, before - 0.15), (before, after)
    assert os.listdir(tmp_path / "tensorboard")


def test_nan_batch_raises_naming_the_step_and_applies_no_update(examples, tmp_path):
    bad = {k: v.copy() for k, v in examples.items()}
    bad["label"][2 * BATCH + 5] = (
        np.nan
    )  # a corrupt label in the third batch (no shuffle)
    snapshots = {}

    def progress(line: str) -> None:
        step = int(line.split()[1].split("/")[0])
        snapshots[step] = (
            wdt.weights_by_path(holder["model"]),
            wdt.slots_by_path(holder["groups"]),
        )

    holder = {}
    model = wdt.make_model(seed=7)
    holder.update(model=model, groups=_groups(model))
    settings = TrainingConfig(batch_size=BATCH, log_every=1, checkpoint_every=100)
    ds = data.make_dataset(bad, "label", BATCH, shuffle=False)
    with pytest.raises(
        train_loop.NonFiniteLossError, match=r"at step 3 \(batch index 2"
    ):
        train_loop.train(
            model, ds, holder["groups"], settings, str(tmp_path), N // BATCH, progress
        )
    assert sorted(snapshots) == [1, 2]
    weights, slots = snapshots[2]
    for path, value in wdt.weights_by_path(model).items():
        np.testing.assert_array_equal(value, weights[path], err_msg=path)
    for path, value in wdt.slots_by_path(holder["groups"]).items():
        np.testing.assert_array_equal(value, slots[path], err_msg=path)
    assert [int(opt.iterations.numpy()) for opt, _ in holder["groups"]] == [2, 2]


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_bit_identical_weights(examples, tmp_path):
    reference, ref_groups, ref = _train(
        tmp_path / "a", examples, epochs=2, checkpoint_every=3
    )
    assert ref.steps == 16

    def stop_at_7(line: str) -> None:
        if line.startswith("step 7/"):
            raise _Interrupt(line)

    with pytest.raises(_Interrupt):
        _train(
            tmp_path / "b", examples, epochs=2, progress=stop_at_7, checkpoint_every=3
        )
    latest = tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints"))
    assert latest.endswith("ckpt-6")
    model, groups, result = _train(
        tmp_path / "b", examples, epochs=2, checkpoint_every=3
    )
    assert (result.resumed_from, result.steps) == (6, 16)
    assert result.examples == 10 * BATCH  # only the batches after step 6 were trained
    ref_weights = wdt.weights_by_path(reference)
    for path, value in wdt.weights_by_path(model).items():
        np.testing.assert_array_equal(value, ref_weights[path], err_msg=path)
    ref_slots = wdt.slots_by_path(ref_groups)
    for path, value in wdt.slots_by_path(groups).items():
        np.testing.assert_array_equal(value, ref_slots[path], err_msg=path)
    # A finished run restarted again trains nothing and keeps its weights.
    again, _, result = _train(tmp_path / "b", examples, epochs=2, checkpoint_every=3)
    assert (result.resumed_from, result.steps, result.examples) == (16, 16, 0)
    np.testing.assert_array_equal(again.get_weights()[0], reference.get_weights()[0])


def test_checkpoint_every_n_steps(examples, tmp_path):
    seen = {}
    ckpt_dir = str(tmp_path / "checkpoints")

    def progress(line: str) -> None:
        step = int(line.split()[1].split("/")[0])
        seen[step] = tf.train.latest_checkpoint(ckpt_dir)

    _train(tmp_path, examples, epochs=1, progress=progress, checkpoint_every=3)
    # The progress line of step s comes before step s's own checkpoint.
    for step, latest in seen.items():
        expected = 3 * ((step - 1) // 3)
        if expected == 0:
            assert latest is None, step
        else:
            assert latest.endswith(f"ckpt-{expected}"), (step, latest)
    state = tf.train.get_checkpoint_state(ckpt_dir)
    kept = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
    assert kept == ["ckpt-6", "ckpt-8"]  # max_to_keep=2; the last step always saves
