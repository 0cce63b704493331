"""The real stats job (DirectRunner) on the hostile corpus: balance, thresholds, races."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pathlib
import subprocess
import sys

import pytest

from beam_jobs import feature_stats
from tests.hostile import corpus
from trainer.contracts import artifacts, events

KINDS = corpus.event_kinds()
HOUR1 = corpus.HOUR + dt.timedelta(hours=1)
REPO = pathlib.Path(__file__).resolve().parents[2]


def _put(root: pathlib.Path, hour: dt.datetime, name: str, data: bytes) -> str:
    path = pathlib.Path(events.partition_path(str(root), hour)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def spec_path(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(corpus.SPEC.to_dict()))  # JSON is YAML
    return str(path)


def _config(max_bad_share: float) -> feature_stats.StatsConfig:
    return feature_stats.StatsConfig(
        max_bad_share=max_bad_share,
        diagnostics=False,
        direct_num_workers=1,
        direct_running_mode="in_memory",
    )


@pytest.mark.e2e
def test_stats_job_accounts_for_every_record_of_the_corpus(
    tmp_path: pathlib.Path, caplog
) -> None:
    logs = tmp_path / "logs"
    paths = {k.name: _put(logs, corpus.HOUR, k.filename, k.data) for k in KINDS}
    clean = b"\n".join(corpus.valid_lines(12)) + b"\n"
    hour1_file = _put(logs, HOUR1, "part-00000.jsonl", clean)
    out = str(tmp_path / "stats")
    with caplog.at_level(logging.INFO):
        manifest = feature_stats.compute_stats(
            str(logs),
            [corpus.HOUR, HOUR1],
            corpus.SPEC,
            out,
            config=_config(1.0),
        )
    assert "prism" not in caplog.text.lower()  # the runner is explicit
    by_source = {f["source"]: f for f in manifest["file_counts"]}
    read_kinds = [k for k in KINDS if not k.skipped]
    assert set(by_source) == {paths[k.name] for k in read_kinds} | {hour1_file}
    for kind in read_kinds:
        entry = by_source[paths[kind.name]]
        assert entry["read"] == kind.read, kind.name
        if kind.read is not None:
            assert entry["events"] + entry["dead"] == entry["read"], kind.name
        if kind.good is not None:
            assert (entry["events"], entry["dead"]) == (kind.good, kind.dead), kind.name
    hour0 = manifest["hours"][events.format_hour(corpus.HOUR)]
    expected_read = sum(k.read or 0 for k in read_kinds)
    assert hour0["read"] == expected_read == hour0["events"] + hour0["dead"]
    assert hour0["unknown_row_files"] == len([k for k in KINDS if k.unknown_rows])
    assert hour0["files"] == len(read_kinds)
    hour1 = manifest["hours"][events.format_hour(HOUR1)]
    assert (hour1["read"], hour1["events"], hour1["dead"]) == (12, 12, 0)
    assert sorted(s["source"] for s in manifest["skipped_files"]) == sorted(
        paths[k.name] for k in KINDS if k.skipped
    )
    # the dead-letter files hold exactly the dead records, by source
    written: dict[str, int] = {}
    for f in pathlib.Path(artifacts.dead_letter_dir(out)).glob("*.jsonl"):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            written[d["source"]] = written.get(d["source"], 0) + d["rows"]
    assert written == {
        s: f["dead"] for s, f in by_source.items() if f["dead"] or f["read"] is None
    }  # files with unknown rows have their one "rows unknown" letter (rows 0)
    assert manifest["events"] == hour0["events"] + 12


def test_threshold_applies_to_each_hour_and_names_it(
    tmp_path: pathlib.Path, spec_path: str, capsys
) -> None:
    """Hour 00 clean (90 records), hour 01 all bad (10): the run must fail on 01."""
    logs = tmp_path / "logs"
    _put(logs, corpus.HOUR, "a.jsonl", b"\n".join(corpus.valid_lines(90)) + b"\n")
    _put(logs, HOUR1, "b.jsonl", b"{bad\n" * 10)
    args = ["--logs", str(logs), "--spec", spec_path, "--out", str(tmp_path / "o")]
    rc = feature_stats.main(
        [*args, "--hours", "2026-01-01T00:2026-01-01T01", "--no-diagnostics"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "hour 2026-01-01T01: 100.00% of 10 records" in err and "b.jsonl" in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_strict_rejects_files_that_would_not_be_read(
    tmp_path: pathlib.Path, spec_path: str, capsys
) -> None:
    logs = tmp_path / "logs"
    _put(logs, corpus.HOUR, "a.jsonl", corpus.line(0) + b"\n")
    retry = _put(logs, corpus.HOUR, "retry/a.jsonl", corpus.line(0) + b"\n")
    rc = feature_stats.main(
        [
            "--logs",
            str(logs),
            "--spec",
            spec_path,
            "--out",
            str(tmp_path / "o"),
            "--hours",
            "2026-01-01T00",
            "--strict",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "--strict" in err and retry in err
    assert "Traceback" not in err


@pytest.mark.e2e
def test_two_concurrent_runs_into_one_out_cannot_both_succeed(
    tmp_path: pathlib.Path, spec_path: str
) -> None:
    logs = tmp_path / "logs"
    _put(logs, corpus.HOUR, "a.jsonl", b"\n".join(corpus.valid_lines(50)) + b"\n")
    out = str(tmp_path / "shared-out")
    cmd = [
        sys.executable,
        "-m",
        "beam_jobs.feature_stats",
        "--logs",
        str(logs),
        "--hours",
        "2026-01-01T00",
        "--spec",
        spec_path,
        "--out",
        out,
        "--no-diagnostics",
        "--direct_num_workers=1",
        "--direct_running_mode=in_memory",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:  # communicate() drains both pipes: no deadlock on long logs
        out_text, err_text = p.communicate(timeout=300)
        results.append((p.returncode, err_text, out_text))
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 1], results
    [loser] = [err for rc, err, _ in results if rc == 1]
    [printed] = [out for rc, _, out in results if rc == 0]
    assert "hour 2026-01-01T00: read 50 = 50 events + 0 dead in 1 files" in printed
    assert "error: " in loser and out in loser and "Traceback" not in loser
    assert artifacts.load_manifest(out)["events"] == 50


def test_a_dead_runs_claim_is_taken_over_a_live_one_is_not(
    tmp_path: pathlib.Path,
) -> None:
    """A run killed after claiming --out can be retried into it; a live claim holds."""
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = tmp_path / "retry-out" / "_run" / "claim.json"
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    feature_stats._claim(str(tmp_path / "retry-out"), [corpus.HOUR])
    assert json.loads(claim.read_text())["pid"] == os.getpid()
    live = tmp_path / "live-out" / "_run" / "claim.json"
    live.parent.mkdir(parents=True)
    live.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    with pytest.raises(FileExistsError, match="claimed by another stats run"):
        feature_stats._claim(str(tmp_path / "live-out"), [corpus.HOUR])
    other_host = tmp_path / "other-out" / "_run" / "claim.json"
    other_host.parent.mkdir(parents=True)
    other_host.write_text(json.dumps({"host": "elsewhere", "pid": dead.pid}))
    with pytest.raises(FileExistsError, match="claimed by another stats run"):
        feature_stats._claim(str(tmp_path / "other-out"), [corpus.HOUR])
