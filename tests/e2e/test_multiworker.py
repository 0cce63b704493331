"""Two-worker data-parallel training on localhost (MultiWorkerMirroredStrategy).

Two ``python -m trainer.task`` processes get a ``TF_CONFIG`` naming both as workers of
one cluster; ``trainer.training.loop.make_strategy()`` turns that into a
MultiWorkerMirroredStrategy, each global batch is split across the workers and the
gradients are all-reduced, so both must end with the same weights.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import trainer.models.wide_deep  # noqa: F401  (registers WideAndDeep for loading)
from tests.trainer import wide_deep_testing as wdt

HOURS = "2026-01-01T00:2026-01-01T01"
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(stdout: str) -> list[float]:
    return [float(x) for x in re.findall(r"^step \d+/\d+ loss (\S+)", stdout, re.M)]


@pytest.mark.e2e
def test_two_workers_train_identical_weights(tmp_path):
    logs = str(tmp_path / "logs")
    wdt.write_tiny_stream(logs, hours=2)
    stats = wdt.tiny_stats(logs, HOURS, str(tmp_path / "stats"))
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(wdt.REPO),
        }
        out = str(tmp_path / f"worker{index}")
        cmd = [sys.executable, "-m", "trainer.task"]
        cmd += wdt.task_args(
            logs,
            HOURS,
            stats,
            out,
            "training.epochs=2",
            "training.checkpoint_every=10",
        )
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=wdt.REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for index, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"worker {index} failed:\n{out[-4000:]}"
    summaries = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert [s["steps"] for s in summaries] == [32, 32]  # 512 events x 2 epochs / 32
    losses = [_losses(out) for out in outputs]
    assert len(losses[0]) == 32 and losses[0] == losses[1]  # the all-reduced loss
    assert np.mean(losses[0][-8:]) < losses[0][0] - 0.1, losses[0]
    models = [
        keras.saving.load_model(tmp_path / f"worker{i}" / "model.keras")
        for i in range(2)
    ]
    for a, b in zip(models[0].weights, models[1].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # The chief checkpoints in checkpoints/, the other worker beside it.
    assert (tmp_path / "worker0" / "checkpoints" / "ckpt-32.index").is_file()
    assert (
        tmp_path / "worker1" / "checkpoints" / "worker-1" / "ckpt-32.index"
    ).is_file()
