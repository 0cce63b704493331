"""End to end, as a user runs it: ``trainer.task`` trains a GMF with MGQE on a tiny
interactions file, ``trainer.serving.export`` exports it, ``trainer.serving.scoring``
scores given candidates in the file's raw ids. Three real subprocesses."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.trainer.models import planted_pairs
from trainer.serving import checks, export, ranking_export

REPO = pathlib.Path(__file__).resolve().parents[3]
SPEC = REPO / "specs" / "experiments" / "gmf_mgqe.yaml"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.e2e
def test_task_trains_gmf_mgqe_export_scores_raw_candidates(tmp_path):
    users, items = planted_pairs(num_users=60, num_items=40, per_user=6)
    users, items = users + 5000, items * 3 + 100  # raw ids are not rows
    data = tmp_path / "interactions.txt"
    data.write_text("".join(f"{u} {i}\n" for u, i in zip(users, items, strict=True)))
    model_dir, out = tmp_path / "model", tmp_path / "export"
    overrides = {
        "model.embedding.dim": 8,
        "model.embedding.num_subspaces": 4,
        "model.embedding.num_centroids": "[16, 4]",
        "training.epochs": 1,
        "training.max_steps": 8,
        "training.batch_size": 64,
    }
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    trained = _run(
        "trainer.task", "--spec", str(SPEC), "--interactions", str(data),
        "--out", str(model_dir), *sets,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    exported = _run(
        "trainer.serving.export", "--model", str(model_dir), "--out", str(out)
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    summary = json.loads(exported.stdout[exported.stdout.index("{") :])
    assert summary["check"]["max_abs_logit_diff"] <= checks.TOLERANCE
    assert summary["serving_bits"] < summary["full_embedding_bits"]

    cands = {5001: [103, 106, 109, 221], 5002: [112, 100], 9999: [103]}
    path = tmp_path / "candidates.tsv"
    path.write_text(
        "".join(f"{u}\t{' '.join(map(str, c))}\n" for u, c in cands.items())
    )
    scored = _run(
        "trainer.serving.scoring", "--export", str(out), "--candidates", str(path)
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    rows = [line.split("\t") for line in scored.stdout.splitlines()]
    assert [(int(u), int(i)) for u, i, _ in rows] == [
        (u, i) for u, c in cands.items() for i in c
    ]
    by_pair = {(int(u), int(i)): float(s) for u, i, s in rows}
    assert np.isnan(by_pair[(9999, 103)]) and np.isnan(by_pair[(5001, 221)])

    model, meta = export.load_trained(str(model_dir))
    ids = ranking_export.load_ids(str(model_dir), meta, model)
    for user, items_ in ((5001, [103, 106, 109]), (5002, [112, 100])):
        want = checks.reference_logits(
            model, ids, np.asarray([user]), np.asarray([items_])
        )[0]
        got = [by_pair[(user, i)] for i in items_]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=checks.TOLERANCE)
