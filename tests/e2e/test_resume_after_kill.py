"""A trainer process killed with SIGKILL resumes from its checkpoint on restart and
ends with weights bit-identical to an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import trainer.models.wide_deep  # noqa: F401  (registers WideAndDeep for loading)
from tests.trainer import wide_deep_testing as wdt

HOURS = "2026-01-01T00:2026-01-01T01"
EPOCHS, CHECKPOINT_EVERY = 12, 7
STEPS = EPOCHS * 512 // 32
TIMEOUT_S = 240


def _command(logs: str, stats: str, out: str) -> list[str]:
    return [sys.executable, "-m", "trainer.task"] + wdt.task_args(
        logs,
        HOURS,
        stats,
        out,
        f"training.epochs={EPOCHS}",
        f"training.checkpoint_every={CHECKPOINT_EVERY}",
    )


ENV = {
    **os.environ,
    "TF_DETERMINISTIC_OPS": "1",
    "PYTHONUNBUFFERED": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": str(wdt.REPO),
}


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=wdt.REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


@pytest.mark.e2e
def test_sigkilled_run_resumes_to_the_uninterrupted_weights(tmp_path):
    logs = str(tmp_path / "logs")
    wdt.write_tiny_stream(logs, hours=2)
    stats = wdt.tiny_stats(logs, HOURS, str(tmp_path / "stats"))
    killed_out, ref_out = str(tmp_path / "killed"), str(tmp_path / "reference")
    reference = _start(_command(logs, stats, ref_out))  # runs alongside
    victim = _start(_command(logs, stats, killed_out))
    ckpt_dir = os.path.join(killed_out, "checkpoints")
    try:
        deadline, seen = time.monotonic() + TIMEOUT_S, []
        for line in victim.stdout:
            seen.append(line)
            if (
                line.startswith("step ")
                and int(line.split()[1].split("/")[0]) >= 3 * CHECKPOINT_EVERY
            ):
                break
            assert time.monotonic() < deadline, "".join(seen[-50:])
        else:
            pytest.fail(
                "the run ended before it could be killed:\n" + "".join(seen[-50:])
            )
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        assert not os.path.exists(os.path.join(killed_out, "metadata.json"))
        resume_at = int(tf.train.latest_checkpoint(ckpt_dir).rsplit("-", 1)[1])
        assert (
            CHECKPOINT_EVERY <= resume_at < STEPS and resume_at % CHECKPOINT_EVERY == 0
        )
        restarted = subprocess.run(
            _command(logs, stats, killed_out),
            cwd=wdt.REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert restarted.returncode == 0, (
            restarted.stdout[-4000:] + restarted.stderr[-4000:]
        )
        ref_stdout = reference.communicate(timeout=TIMEOUT_S)[0]
        assert reference.returncode == 0, ref_stdout[-4000:]
    finally:
        for p in (victim, reference):
            if p.poll() is None:
                p.kill()
                p.wait()
    summary = json.loads(restarted.stdout.strip().splitlines()[-1])
    assert (summary["resumed_from"], summary["steps"]) == (resume_at, STEPS)
    assert json.loads(ref_stdout.strip().splitlines()[-1])["resumed_from"] == 0
    a = keras.saving.load_model(os.path.join(killed_out, "model.keras"))
    b = keras.saving.load_model(os.path.join(ref_out, "model.keras"))
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)
