"""``python -m trainer.task``: a bad flag, input or output path is one ``error:`` line
naming it and exit code 2, before ``--out`` is claimed (no ``request.json`` left
behind, so the corrected command can reuse the directory)."""

from __future__ import annotations

import os

import pytest

from tests.trainer import wide_deep_testing as wdt
from trainer import task

HOUR0 = "2026-01-01T00"
CANARY = "Canary7f3e9b"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("task_errors")
    logs = str(root / "logs")
    wdt.write_tiny_stream(logs, hours=1)
    stats = wdt.tiny_stats(logs, HOUR0, str(root / "stats0"))
    a_file = root / "a_file"
    a_file.write_text("x")
    not_stats = root / "not_stats"
    not_stats.mkdir()
    bad_manifest = root / "bad_manifest"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.json").write_text("{not json")
    return {
        "logs": logs,
        "stats": stats,
        "a_file": str(a_file),
        "not_stats": str(not_stats),
        "bad_manifest": str(bad_manifest),
        "missing": str(root / "missing"),
    }


def _error_line(capsys, argv: list[str], out: str) -> str:
    assert task.main(argv) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert not os.path.exists(os.path.join(out, task.REQUEST_FILE))  # not claimed
    return lines[0]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"train": "missing"}, "--train"),
        ({"train": "a_file"}, "--train"),
        ({"artifacts": "missing"}, "--artifacts"),
        ({"artifacts": "not_stats"}, "manifest.json"),
        ({"artifacts": "bad_manifest"}, "--artifacts"),
        ({"hours": "2026-01-01T05:2026-01-01T00"}, "--hours"),
        ({"hours": "yesterday"}, "--hours"),
        ({"warm_start": "missing"}, "--warm-start"),
        ({"out": "a_file"}, "--out"),
        ({"out": "under_a_file"}, "--out"),
    ],
)
def test_bad_paths_and_flags_fail_before_the_output_is_claimed(
    world, tmp_path, capsys, change, named
) -> None:
    args = {
        "train": world["logs"],
        "hours": HOUR0,
        "artifacts": world["stats"],
        "out": str(tmp_path / "out"),
    }
    for key, value in change.items():
        args[key] = world.get(value, value)
    if args["out"] == "under_a_file":
        args["out"] = os.path.join(world["a_file"], "out")
    argv = wdt.task_args(args["train"], args["hours"], args["artifacts"], args["out"])
    if "warm_start" in change:
        argv += ["--warm-start", world[change["warm_start"]]]
    line = _error_line(capsys, argv, str(tmp_path / "out"))
    assert named in line, line


def test_an_override_that_is_not_yaml_is_one_error_line(world, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = wdt.task_args(world["logs"], HOUR0, world["stats"], out, "model.x=[1")
    assert "--set 'model.x=[1'" in _error_line(capsys, argv, out)


def test_credentials_in_paths_are_redacted_in_the_error(world, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = wdt.task_args(world["logs"], HOUR0, world["stats"], out)
    argv[argv.index("--artifacts") + 1] = f"https://ops:{CANARY}@h/stats?token=x"
    line = _error_line(capsys, argv, out)
    assert CANARY not in line and "https://ops:***@h" in line


def test_a_bad_feature_spec_fails_before_the_output_is_claimed(world, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"features: \xff\n")
    out = str(tmp_path / "out")
    argv = wdt.task_args(world["logs"], HOUR0, world["stats"], out)
    argv += ["--set", f"feature_spec={bad}"]  # the last --set wins
    assert str(bad) in _error_line(capsys, argv, out)
