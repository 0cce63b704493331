"""Tests of trainer.task: run() on hourly events, idempotency, empty hours, config
errors, the CLI, and the container that runs it (trainer/Dockerfile)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import re

import keras
import numpy as np
import pytest

from tests.trainer import wide_deep_testing as wdt
from trainer import task
from trainer.config import ConfigError

HOUR0, EMPTY_HOUR = "2026-01-01T00", "2026-01-01T02"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two hours of tiny synthetic events, an empty third hour, stats of hour 0."""
    from beam_jobs import synthetic
    from trainer.contracts import events

    root = tmp_path_factory.mktemp("task")
    logs = str(root / "logs")
    wdt.write_tiny_stream(logs, hours=2)
    empty = synthetic.SCHEMA.empty_table()
    events.write_partition(logs, dt.datetime(2026, 1, 1, 2, tzinfo=dt.UTC), empty)
    stats = wdt.tiny_stats(logs, HOUR0, str(root / "stats0"))
    return {"root": root, "logs": logs, "stats": stats}


@pytest.fixture(scope="module")
def trained(world):
    out = str(world["root"] / "model0")
    meta = task.run(wdt.tiny_config(), world["logs"], world["stats"], out, hours=HOUR0)
    return out, meta


def test_run_trains_and_writes_model_and_metadata(trained, world):
    out, meta = trained
    assert meta["examples"] == 256 and meta["steps"] == 8 and meta["resumed_from"] == 0
    assert np.isfinite(meta["final_loss"])
    assert meta["source"] == f"{world['logs']}@{HOUR0}"
    on_disk = json.loads(open(os.path.join(out, task.METADATA_FILE)).read())
    assert on_disk["steps"] == 8 and on_disk["config"]["name"] == "tiny"
    model = keras.saving.load_model(os.path.join(out, task.MODEL_FILE))
    assert model.serving_bits() == meta["serving_bits"]
    assert meta["table_rows"]["user_id"] == 4  # top_k 3 + OOV row
    # The artifact travels with the model, and MGQE tiers come from it.
    assert os.path.isfile(os.path.join(out, "artifacts", "manifest.json"))
    tiers = (
        open(os.path.join(out, "artifacts", "vocab", "item_id.tiers")).read().split()
    )
    expected = [int(t) for t in tiers] + [1]  # OOV row: last tier
    np.testing.assert_array_equal(
        model.deep_embeddings["item_id"].row_tier.numpy(), expected
    )
    assert os.path.isfile(os.path.join(out, "checkpoints", "ckpt-8.index"))


def test_rerun_is_idempotent(trained, world):
    out, meta = trained
    before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
    again = task.run(wdt.tiny_config(), world["logs"], world["stats"], out, hours=HOUR0)
    assert again == json.loads(json.dumps(meta, default=str))
    after = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
    assert after == before


def test_rerun_with_other_settings_into_the_same_out_is_refused(trained, world):
    out, meta = trained
    other = wdt.tiny_config().replace(
        training=dataclasses.replace(wdt.tiny_config().training, seed=7)
    )
    with pytest.raises(ConfigError, match=r"other settings \(config\.training\.seed\)"):
        task.run(other, world["logs"], world["stats"], out, hours=HOUR0)
    with pytest.raises(ConfigError, match=r"model0 holds a run .*\(hours\)"):
        task.run(
            wdt.tiny_config(), world["logs"], world["stats"], out, hours="2026-01-01T01"
        )
    stored = json.loads(open(os.path.join(out, task.REQUEST_FILE)).read())
    assert stored["config"]["training"]["seed"] == meta["config"]["training"]["seed"]


def test_empty_hour_is_skipped_with_a_warning(world, caplog):
    out = str(world["root"] / "empty")
    with caplog.at_level(logging.WARNING, logger="trainer.task"):
        meta = task.run(
            wdt.tiny_config(), world["logs"], world["stats"], out, hours=EMPTY_HOUR
        )
    assert meta["skipped"] is True and meta["examples"] == 0
    assert any(
        "no events" in r.getMessage() and EMPTY_HOUR in r.getMessage()
        for r in caplog.records
    )
    for name in (task.MODEL_FILE, task.METADATA_FILE, "checkpoints"):
        assert not os.path.exists(os.path.join(out, name)), name


def test_bad_config_names_the_field(world, tmp_path):
    with pytest.raises(
        ConfigError, match=r"training\.batch_size: must be a positive integer"
    ):
        wdt.tiny_config(**{"training.batch_size": 0})
    with pytest.raises(ConfigError, match=r"optimizer\.name: 'rmsprop' is not one of"):
        wdt.tiny_config(**{"optimizer.name": "rmsprop"})
    gmf = wdt.tiny_config(**{"model.name": "gmf"})
    with pytest.raises(ConfigError, match=r"^model\.name 'gmf' trains on an interac"):
        task.run(gmf, world["logs"], world["stats"], str(tmp_path / "m"), hours=HOUR0)
    assert not os.path.exists(tmp_path / "m")


def test_cli_trains_with_set_overrides(world, tmp_path, capsys):
    out = str(tmp_path / "cli")
    argv = wdt.task_args(
        world["logs"],
        HOUR0,
        world["stats"],
        out,
        "training.max_steps=3",
        "model.hidden_units=[4]",
    )
    assert task.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("step ")][-1].startswith(
        "step 3/3 loss "
    )
    summary = json.loads(lines[-1])
    assert summary["steps"] == 3 and summary["examples"] == 256
    meta = json.loads(open(os.path.join(out, task.METADATA_FILE)).read())
    assert meta["config"]["training"]["max_steps"] == 3
    assert meta["config"]["model"]["hidden_units"] == [4]


def test_cli_bad_override_exits_2_naming_the_field(world, tmp_path, capsys):
    out = str(tmp_path / "x")
    argv = wdt.task_args(
        world["logs"], HOUR0, world["stats"], out, "training.epochs=-1"
    )
    assert task.main(argv) == 2
    assert "training.epochs" in capsys.readouterr().err
    assert task.main([*argv[:-2], "--set", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


# ------------------------------------------------------------------------- container


def _dockerfile() -> tuple[list[str], str]:
    text = (wdt.REPO / "trainer" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    lines = [
        ln.strip()
        for ln in logical.splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    return lines, text


def test_dockerfile_pins_tensorflow_and_installs_with_the_constraints():
    lines, _ = _dockerfile()
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert froms == ["FROM tensorflow/tensorflow:2.21.0-gpu"]
    pinned = re.search(
        r"^tensorflow==(\S+)$",
        (wdt.REPO / "requirements" / "constraints.txt").read_text(),
        re.M,
    )
    assert pinned and froms[0].endswith(f":{pinned.group(1)}-gpu")
    installs = [ln for ln in lines if ln.startswith("RUN ") and "pip install" in ln]
    assert len(installs) == 1
    assert re.search(
        r"pip install (-c|--constraint) requirements/constraints\.txt \.", installs[0]
    )
    copies = " ".join(ln for ln in lines if ln.startswith("COPY "))
    for path in ("requirements/constraints.txt", "pyproject.toml", "trainer", "specs"):
        assert path in copies, path
        assert (wdt.REPO / path).exists(), path


def test_dockerfile_entrypoint_is_the_trainer_task():
    lines, _ = _dockerfile()
    entry = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
    assert len(entry) == 1
    assert json.loads(entry[0][len("ENTRYPOINT ") :]) == [
        "python",
        "-m",
        "trainer.task",
    ]
    # Everything the image copies must survive .dockerignore.
    text = (wdt.REPO / ".dockerignore").read_text()
    ignored = [ln.strip() for ln in text.splitlines() if ln.strip() and ln[0] != "#"]
    for kept in ("trainer", "specs", "requirements", "pyproject.toml", "beam_jobs"):
        assert kept not in ignored, kept


# ------------------------------------------------------------------ ranking models


GMF_MGQE = os.path.join(
    os.path.dirname(__file__), "..", "..", "specs", "experiments", "gmf_mgqe.yaml"
)
SMALL = (
    "model.embedding.dim=8",
    "model.embedding.num_subspaces=4",
    "model.embedding.num_centroids=[16, 4]",
    "training.epochs=2",
    "training.batch_size=256",
    "training.checkpoint_every=5",
    "training.log_every=1",
)


@pytest.fixture(scope="module")
def interactions(tmp_path_factory):
    """A tiny SASRec-format file (``user item`` lines, 40 users, 40 items)."""
    from tests.trainer.models import planted_pairs

    users, items = planted_pairs(num_users=40, num_items=40, per_user=8)
    path = tmp_path_factory.mktemp("ml") / "tiny.txt"
    path.write_text("".join(f"{u} {i}\n" for u, i in zip(users, items, strict=True)))
    return str(path)


def _ranking_args(interactions: str, out: str, *extra: str) -> list[str]:
    args = ["--spec", GMF_MGQE, "--interactions", interactions, "--out", out]
    for item in (*SMALL, *extra):
        args += ["--set", item]
    return args


def test_cli_trains_a_gmf_with_mgqe_saves_it_and_a_rerun_resumes(
    interactions, tmp_path, capsys
):
    from trainer.data.samples import prepare_task
    from trainer.data.sequences import load_sasrec

    out = str(tmp_path / "gmf")
    stop = {}

    def kill_at_7(line: str) -> None:
        if line.startswith("step 7/"):
            stop["line"] = line
            raise KeyboardInterrupt(line)

    from trainer.config import load_config

    cfg = load_config(GMF_MGQE, {k: _yaml(v) for k, v in (s.split("=") for s in SMALL)})
    with pytest.raises(KeyboardInterrupt):
        task.run(cfg, interactions, None, out, progress=kill_at_7)
    assert not os.path.exists(os.path.join(out, task.METADATA_FILE))
    assert task.main(_ranking_args(interactions, out)) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    meta = json.loads(open(os.path.join(out, task.METADATA_FILE)).read())
    assert printed["resumed_from"] == meta["resumed_from"] == 5
    assert meta["steps"] == printed["steps"] > 7 and np.isfinite(meta["final_loss"])
    assert meta["config"]["model"]["embedding"]["kind"] == "mgqe"
    assert meta["config"]["optimizer"]["name"] == "adam"
    assert 0 < meta["size_percent"] < 100
    # The saved model reloads and scores like the trained one; the id maps are the
    # frequency renumbering of the file's raw ids.
    model = keras.saving.load_model(os.path.join(out, task.MODEL_FILE))
    assert type(model).__name__ == "GMF"
    prepared = prepare_task(load_sasrec(interactions))
    with np.load(os.path.join(out, meta["ids"])) as ids:
        np.testing.assert_array_equal(ids["user_ids"], prepared.user_ids)
        np.testing.assert_array_equal(ids["item_ids"], prepared.item_ids)
        assert "histories" not in ids.files  # SASRec only
    assert (meta["num_users"], meta["num_items"]) == (40, prepared.num_items)
    items = np.arange(prepared.num_items)
    scores = model.score_items(np.array([0, 1]), items, training=False)
    assert keras.ops.convert_to_numpy(scores).shape == (2, prepared.num_items)
    # A finished run asked again returns its metadata, training nothing.
    assert task.main(_ranking_args(interactions, out)) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["steps"] == meta["steps"] and again["resumed_from"] == 5


def _yaml(value: str):
    import yaml

    return yaml.safe_load(value)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--artifacts", "stats"], "--artifacts: gmf trains on --interactions only"),
        (["--hours", "2026-01-01T00"], "--hours: gmf trains on --interactions only"),
        (None, "--interactions: required to train gmf"),
        ("missing", "no such file"),
    ],
)
def test_cli_ranking_bad_flags_exit_2_with_one_error_line(
    interactions, tmp_path, capsys, extra, needle
):
    out = str(tmp_path / "m")
    if extra is None:
        argv = ["--spec", GMF_MGQE, "--out", out]
    elif extra == "missing":
        argv = _ranking_args(str(tmp_path / "nope.txt"), out)
    else:
        argv = [*_ranking_args(interactions, out), *extra]
    assert task.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not os.path.exists(out)


def test_cli_wide_deep_refuses_interactions(world, tmp_path, capsys):
    argv = wdt.task_args(world["logs"], HOUR0, world["stats"], str(tmp_path / "w"))
    assert task.main([*argv, "--interactions", "x.txt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --interactions: wide_deep trains on --train logs"]
