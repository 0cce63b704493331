"""The stats job end to end: run([...]) on temp hour partitions, DirectRunner."""

from __future__ import annotations

import json
import logging
import pathlib
import random
from collections import Counter

import numpy as np
import pytest

from beam_jobs import feature_stats
from tests.beam_jobs.conftest import event, hour_text, ts_of
from trainer.contracts import artifacts, events

SPEC_YAML = """
name: tiny
features:
  - {name: user, treatment: hybrid, top_k: 3, hash_buckets: 64}
  - {name: item, treatment: mgqe, top_k: 4, tier_shares: [0.25, 0.5],
     num_centroids: [8, 4, 2]}
  - {name: tag, treatment: hash, hash_buckets: 16}
  - {name: price, kind: numeric, num_buckets: 4}
"""


@pytest.fixture
def spec_path(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_YAML)
    return str(path)


def _rows(hour: int, n: int, seed: int, items: str = "abcdefg") -> list[dict]:
    rng = random.Random(seed)
    weights = [2.0**-i for i in range(len(items))]
    return [
        event(
            ts_of(hour, i),
            rng.choice([f"u{k}" for k in range(6)] + [None]),
            rng.choices(items, weights)[0],
            round(rng.uniform(0, 100), 2),
        )
        for i in range(n)
    ]


def _args(logs: str, hours: str, spec: str, out: str, *extra: str) -> list[str]:
    return ["--logs", logs, "--hours", hours, "--spec", spec, "--out", out, *extra]


def _top(counter: Counter, k: int) -> list[str]:
    return [v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


@pytest.mark.e2e
def test_batch_run_writes_the_artifact(
    tmp_path, spec_path, tiny_spec, write_hour, capsys
):
    logs, out = str(tmp_path / "logs"), str(tmp_path / "out")
    rows = _rows(0, 60, seed=1) + _rows(1, 40, seed=2)
    write_hour(logs, 0, rows[:60], tiny_spec, "parquet")
    write_hour(logs, 1, rows[60:80], tiny_spec, "parquet")
    write_hour(logs, 1, rows[80:], tiny_spec, "jsonl", part=1)
    manifest = feature_stats.run(
        _args(
            logs,
            f"{hour_text(0)}:{hour_text(1)}",
            spec_path,
            out,
            "--direct_num_workers",
            "1",
        )
    )
    assert manifest["events"] == 100 and manifest["dead_letters"] == 0
    assert manifest["source_hours"] == [hour_text(0), hour_text(1)]
    assert manifest["spec_name"] == "tiny" and manifest["mode"] == "batch"
    assert artifacts.load_manifest(out)["version"] == manifest["version"]
    for name in ("user", "item", "tag"):
        counter = Counter(r[name] for r in rows if r[name] is not None)
        table = artifacts.load_counts(out, name).to_pylist()
        assert table == [
            {"value": v, "count": counter[v]} for v in _top(counter, len(counter))
        ]
        assert manifest["features"][name]["distinct"] == len(counter)
        assert manifest["features"][name]["missing_count"] == 100 - sum(
            counter.values()
        )
    items = Counter(r["item"] for r in rows)
    fa = artifacts.load_feature_artifacts(out, "item")
    assert fa.values == _top(items, 4)
    assert fa.row_tier.tolist() == [0, 1, 2, 2] and fa.tier_sizes == (1, 1, 2)
    assert fa.counts.tolist() == [float(items[v]) for v in fa.values]
    assert fa.coverage == pytest.approx(sum(items[v] for v in fa.values) / 100)
    prices = np.array([r["price"] for r in rows])
    assert (
        artifacts.load_boundaries(out, "price")
        == np.quantile(prices, [0.25, 0.5, 0.75]).tolist()
    )
    user = manifest["features"]["user"]["diagnostics"]
    assert user["tail_values"] == 3 and set(user) >= {"single", "double", "oov_share"}
    assert "double" not in manifest["features"]["tag"]["diagnostics"]
    assert manifest["features"]["tag"]["vocab_size"] == 0
    printed = capsys.readouterr().out
    assert "item" in printed and "100 events" in printed
    with pytest.raises(FileExistsError, match="new --out"):
        feature_stats.run(_args(logs, hour_text(0), spec_path, out))


@pytest.mark.e2e
def test_dead_letters_and_bad_share_threshold(
    tmp_path, spec_path, tiny_spec, write_hour
):
    logs = str(tmp_path / "logs")
    write_hour(logs, 0, _rows(0, 20, seed=3), tiny_spec, "parquet")
    good = [json.dumps(r) for r in _rows(0, 8, seed=4)]
    bad = ["{not json", json.dumps({"event_ts": ts_of(0), "label": 3, "item": "a"})]
    raw = write_hour(logs, 0, good[:4] + bad + good[4:], tiny_spec, "raw", part=1)
    strict_out = str(tmp_path / "strict")
    with pytest.raises(feature_stats.BadInputError, match="part-00001.jsonl") as err:
        feature_stats.run(_args(logs, hour_text(0), spec_path, strict_out))
    assert "6.67%" in str(err.value)
    assert not pathlib.Path(strict_out, "manifest.json").exists()
    out = str(tmp_path / "lenient")
    manifest = feature_stats.run(
        _args(logs, hour_text(0), spec_path, out, "--max-bad-share", "0.1")
    )
    assert manifest["events"] == 28 and manifest["dead_letters"] == 2
    assert manifest["worst_files"][0]["source"] == raw
    [dead_file] = pathlib.Path(out, "dead_letter").glob("*.jsonl")
    dead = [json.loads(line) for line in dead_file.read_text().splitlines()]
    assert [(d["source"], d["line"]) for d in dead] == [(raw, 5), (raw, 6)]
    assert dead[0]["reason"].startswith("bad JSON") and "label" in dead[1]["reason"]


@pytest.mark.e2e
def test_empty_hour_gives_an_empty_valid_artifact(
    tmp_path, spec_path, tiny_spec, write_hour, caplog
):
    logs, out = str(tmp_path / "logs"), str(tmp_path / "out")
    write_hour(logs, 0, [], tiny_spec, "parquet")
    with caplog.at_level(logging.WARNING, logger="beam_jobs.feature_stats"):
        manifest = feature_stats.run(_args(logs, hour_text(0), spec_path, out))
    assert "no valid events" in caplog.text
    assert manifest["events"] == 0 and manifest["bad_share"] == 0.0
    fa = artifacts.load_feature_artifacts(out, "item")
    assert fa.values == [] and fa.tier_sizes == (0, 0, 0) and fa.coverage == 0.0
    assert artifacts.load_boundaries(out, "price") == []
    assert set(manifest["features"]) == {"user", "item", "tag"}


def test_missing_partition_is_a_clear_error(tmp_path, spec_path, capsys) -> None:
    logs = str(tmp_path / "logs")
    with pytest.raises(events.MissingPartitionError, match="2026-01-01T00"):
        feature_stats.run(_args(logs, hour_text(0), spec_path, str(tmp_path / "out")))
    assert (
        feature_stats.main(_args(logs, hour_text(0), spec_path, str(tmp_path / "o")))
        == 1
    )
    assert "missing hour partition" in capsys.readouterr().err


@pytest.mark.e2e
def test_continuous_runs_keep_rows_and_write_remaps(
    tmp_path, spec_path, tiny_spec, write_hour, capsys
):
    logs = str(tmp_path / "logs")
    write_hour(logs, 0, _rows(0, 80, seed=5, items="abcdefg"), tiny_spec)
    write_hour(logs, 1, _rows(1, 80, seed=6, items="gfxbayz"), tiny_spec)
    a0, a1 = str(tmp_path / "a0"), str(tmp_path / "a1")
    feature_stats.run(_args(logs, hour_text(0), spec_path, a0))
    manifest = feature_stats.run(
        _args(
            logs,
            hour_text(1),
            spec_path,
            a1,
            "--previous",
            a0,
            "--half-life-hours",
            "1",
        )
    )
    assert manifest["mode"] == "continuous"
    assert manifest["previous"]["decay_factor"] == 0.5
    old, new = (
        artifacts.load_feature_artifacts(a0, "item"),
        artifacts.load_feature_artifacts(a1, "item"),
    )
    state0 = dict(
        zip(*artifacts.load_state(a0, "item").to_pydict().values(), strict=True)
    )
    counts1 = dict(
        zip(*artifacts.load_counts(a1, "item").to_pydict().values(), strict=True)
    )
    weights = {
        v: state0.get(v, 0) * 0.5 + counts1.get(v, 0) for v in {*state0, *counts1}
    }
    assert set(new.values) == set(_top(Counter(weights), 4))
    assert new.counts.tolist() == [weights[v] for v in new.values]
    remap = artifacts.load_remap(a1, "item")
    for o, n in remap.old_to_new.items():
        assert new.values[n] == old.values[o]
        assert o == n  # nothing shrank: every kept value keeps its row
    assert set(remap.promoted) == set(new.values) - set(old.values)
    assert set(remap.evicted) == set(old.values) - set(new.values)
    jaccard = len(set(old.values) & set(new.values)) / len(
        set(old.values) | set(new.values)
    )
    assert manifest["features"]["item"]["continuous"]["churn"] == pytest.approx(
        1 - jaccard
    )
    assert 0 < jaccard < 1
    assert "churn" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already covers"):
        feature_stats.run(
            _args(logs, hour_text(1), spec_path, str(tmp_path / "a2"), "--previous", a1)
        )


@pytest.mark.e2e
def test_approximate_counting_states_its_error_bound(
    tmp_path, spec_path, tiny_spec, write_hour
):
    logs, out = str(tmp_path / "logs"), str(tmp_path / "out")
    rows = _rows(0, 90, seed=7)
    write_hour(logs, 0, rows, tiny_spec)
    manifest = feature_stats.run(
        _args(
            logs,
            hour_text(0),
            spec_path,
            out,
            "--approx-capacity",
            "3",
            "--no-diagnostics",
        )
    )
    assert manifest["counting"] == {"method": "misra_gries", "capacity": 3}
    item = manifest["features"]["item"]
    assert item["total_count"] == 90 and 0 < item["count_error_bound"] <= 90 / 4
    assert item["diagnostics"] is None
    exact = Counter(r["item"] for r in rows)
    for row in artifacts.load_counts(out, "item").to_pylist():
        assert (
            row["count"]
            <= exact[row["value"]]
            <= row["count"] + item["count_error_bound"]
        )
