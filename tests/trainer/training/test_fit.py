"""The one loop on the ranking backbones (trainer.training.fit / loop): training,
bit-identical resume (dropout's seed state included) and the NaN guard."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.models import planted_pairs, tiny_ranking_config
from trainer.config import TrainerConfig
from trainer.data import samples as ranking_samples
from trainer.data.sequences import from_pairs
from trainer.models.factory import build_ranking_model
from trainer.training import loop, losses
from trainer.training.fit import fit_ranking
from trainer.training.optimizers import make_optimizer


@pytest.fixture(scope="module", autouse=True)
def deterministic_ops():
    """Bit-equality needs deterministic kernels; restored for the other modules."""
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was:
        tf_config.disable_op_determinism()


@pytest.fixture(scope="module")
def task() -> ranking_samples.RankingTask:
    return ranking_samples.prepare_task(from_pairs(*planted_pairs()))


def _cfg(name: str, kind: str = "full", **training) -> TrainerConfig:
    return tiny_ranking_config(
        name,
        kind,
        model={"dropout": 0.2 if name == "sasrec" else 0.0},
        **{"batch_size": 256, "log_every": 1, "checkpoint_every": 3, **training},
    )


def _weights(model) -> dict[str, np.ndarray]:
    """Weights by path, then dropout's seed states by order (their paths vary)."""
    out = {v.path: np.array(v.numpy()) for v in model.weights}
    in_weights = {id(v) for v in model.weights}
    states = [v for v in model.variables if id(v) not in in_weights]
    out.update({f"rng_state/{i}": np.array(v.numpy()) for i, v in enumerate(states)})
    return out


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    "name,kind", [("gmf", "mgqe"), ("neumf", "dpq"), ("sasrec", "full")]
)
def test_each_backbone_trains_and_an_interrupted_run_resumes_bit_identically(
    task, tmp_path, name, kind
):
    cfg = _cfg(name, kind, batch_size=16 if name == "sasrec" else 256)
    epochs = []
    reference, ref = fit_ranking(
        cfg, task, str(tmp_path / "a"), on_epoch=lambda m, e: epochs.append(e)
    )
    _, per_epoch = ranking_samples.ranking_batches(cfg, task)
    assert ref.steps == 2 * per_epoch and ref.resumed_from == 0
    assert [e.epoch for e in epochs] == [1, 2] and epochs[-1].last
    assert all(e.steps == per_epoch and np.isfinite(e.loss) for e in epochs)
    assert (epochs[0].reg_loss > 0) == (kind in ("dpq", "mgqe"))
    assert epochs[1].loss < epochs[0].loss  # it learns

    stop = ref.steps // 2 + 1

    def interrupt(line: str) -> None:
        if line.startswith(f"step {stop}/"):
            raise _Interrupt(line)

    with pytest.raises(_Interrupt):
        fit_ranking(cfg, task, str(tmp_path / "b"), progress=interrupt)
    model, result = fit_ranking(cfg, task, str(tmp_path / "b"))
    assert result.resumed_from == 3 * ((stop - 1) // 3) > 0
    assert result.steps == ref.steps
    want = _weights(reference)
    got = _weights(model)
    assert set(got) == set(want)
    assert any(p.startswith("rng_state/") for p in got) == (name == "sasrec")
    for path, value in got.items():
        np.testing.assert_array_equal(value, want[path], err_msg=path)


def test_a_nan_batch_stops_the_ranking_loop_with_no_update(task, tmp_path):
    cfg = _cfg("gmf", epochs=1, checkpoint_every=100)
    batches, per_epoch = ranking_samples.ranking_batches(cfg, task)

    def poison(i, batch):
        features, labels = batch
        bad = tf.where(i == 2, tf.fill(tf.shape(labels), np.nan), labels)
        return features, bad

    batches = batches.enumerate().map(poison)
    model = build_ranking_model(cfg.model, task)
    opt = make_optimizer(cfg.optimizer)
    seen = {}

    def progress(line: str) -> None:
        seen[int(line.split()[1].split("/")[0])] = _weights(model)

    with pytest.raises(loop.NonFiniteLossError, match=r"at step 3 \(batch index 2"):
        loop.train(
            model,
            batches,
            [(opt, lambda: model.trainable_variables)],
            cfg.training,
            str(tmp_path),
            per_epoch,
            progress,
            loss_fn=losses.pointwise_bce,
        )
    assert sorted(seen) == [1, 2] and int(opt.iterations.numpy()) == 2
    for path, value in _weights(model).items():
        np.testing.assert_array_equal(value, seen[2][path], err_msg=path)


_MIRRORED_GMF = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.trainer.training.test_fit import _cfg, _weights
    from tests.trainer.models import planted_pairs, tiny_ranking_config
    from trainer.data import samples
    from trainer.data.sequences import from_pairs
    from trainer.training.fit import fit_ranking

    task = samples.prepare_task(from_pairs(*planted_pairs()))
    cfg = _cfg("gmf", "full", epochs=1, max_steps=6)
    out = {}
    for n, strategy in (
        (2, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
        (1, tf.distribute.get_strategy()),
    ):
        model, result = fit_ranking(cfg, task, sys.argv[1] + str(n), strategy)
        out[n] = (result.steps, _weights(model))
    diff = max(float(np.abs(out[2][1][k] - v).max()) for k, v in out[1][1].items())
    print(json.dumps({"steps": [out[2][0], out[1][0]], "max_diff": diff}))
    """
)


def test_mirrored_two_replicas_train_a_gmf_like_one_device(tmp_path) -> None:
    # A subprocess, because logical devices must be configured before TF initializes.
    root = pathlib.Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED_GMF, str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=600, check=False, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == [6, 6]
    assert result["max_diff"] < 1e-5
