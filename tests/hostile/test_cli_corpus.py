"""Bad specs, bad flags and bad converter inputs: one ``error:`` line, never a traceback.

Everything here fails before any Beam pipeline starts, so it runs in-process and fast.
"""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

from beam_jobs import criteo, feature_stats, movielens
from tests.hostile import corpus
from trainer.contracts import events

SPECS = corpus.spec_kinds() + corpus.spec_rules_crosses() + corpus.spec_rules_h4()


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [s for s in err.splitlines() if s.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def logs(tmp_path: pathlib.Path) -> str:
    root = tmp_path / "logs"
    part = pathlib.Path(events.partition_path(str(root), corpus.HOUR))
    part.mkdir(parents=True)
    (part / "a.jsonl").write_bytes(b"\n".join(corpus.valid_lines(4)) + b"\n")
    return str(root)


@pytest.fixture
def good_spec(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "good.yaml"
    path.write_text(json.dumps(corpus.SPEC.to_dict()))
    return str(path)


def _spec_file(tmp_path: pathlib.Path, name: str, data: bytes | None) -> str:
    path = tmp_path / f"{name}.yaml"
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    return str(path)


def test_the_spec_corpus_is_large_enough() -> None:
    assert len(SPECS) >= 20


@pytest.mark.parametrize(("name", "data", "match"), SPECS, ids=[s[0] for s in SPECS])
def test_bad_spec_is_one_error_line(
    tmp_path, logs, capsys, name: str, data: bytes | None, match: str
) -> None:
    spec = _spec_file(tmp_path, name, data)
    out = str(tmp_path / "out")
    rc = feature_stats.main(
        ["--logs", logs, "--hours", "2026-01-01T00", "--spec", spec, "--out", out]
    )
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("error: --spec") and spec in line
    assert match in line
    assert not pathlib.Path(out).exists()  # checked before any work


FLAG_CASES = [  # name, flags ("FILE" = an existing regular file), flag named
    ("bad_hours", ["--hours", "yesterday"], "--hours"),
    ("hours_reversed", ["--hours", "2026-01-01T05:2026-01-01T01"], "--hours"),
    ("hour_25", ["--hours", "2026-01-01T25"], "--hours"),
    ("max_bad_share_2", ["--max-bad-share", "2"], "--max-bad-share"),
    ("max_bad_share_negative", ["--max-bad-share", "-0.1"], "--max-bad-share"),
    ("max_bad_share_text", ["--max-bad-share", "lots"], "--max-bad-share"),
    ("batch_rows_0", ["--batch-rows", "0"], "--batch-rows"),
    ("batch_rows_text", ["--batch-rows", "many"], "--batch-rows"),
    ("half_life_0", ["--half-life-hours", "0"], "--half-life-hours"),
    ("approx_capacity_0", ["--approx-capacity", "0"], "--approx-capacity"),
    ("sample_size_0", ["--sample-size", "0"], "--sample-size"),
    ("out_is_a_file", ["--out", "FILE"], "--out"),
    ("out_below_a_file", ["--out", "FILE/sub"], "--out"),
    ("logs_is_a_file", ["--logs", "FILE"], "--logs"),
    ("previous_is_a_file", ["--previous", "FILE"], "--previous"),
]


@pytest.mark.parametrize(
    ("extra", "flag"), [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES]
)
def test_bad_flag_is_one_error_line(
    tmp_path, logs, good_spec, capsys, extra, flag
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = {
        "--logs": logs,
        "--hours": "2026-01-01T00",
        "--spec": good_spec,
        "--out": str(tmp_path / "out"),
    }
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        args[k] = v.replace("FILE", str(a_file))
    rc = feature_stats.main([x for kv in args.items() for x in kv])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and flag in line, line


# ------------------------------------------------------------------ converters

KAGGLE_HEADER = ",".join(criteo.KAGGLE_HEADER)


def _kaggle_row(i: int) -> str:
    ints = ",".join(str(j) for j in range(13))
    cats = ",".join("68fd1e64" for _ in range(26))
    return f"{10_000_000 + i},{i % 2},{ints},{cats}"


def _criteo_inputs(tmp: pathlib.Path) -> dict[str, tuple[pathlib.Path, int, str]]:
    """name -> (input file, expected exit code, text expected in the output)."""
    rows = "\n".join([KAGGLE_HEADER, *(_kaggle_row(i) for i in range(20))]) + "\n"
    full = gzip.compress(rows.encode())
    cases = {
        "truncated_gz": (full[: len(full) // 2], 2, "not a readable gzip file"),
        "not_gzip": (b"plain text, not gzip\n", 2, "not a readable gzip file"),
        "header_only": (gzip.compress((KAGGLE_HEADER + "\n").encode()), 0, "0 events"),
        "empty_gz": (gzip.compress(b""), 2, "empty file"),
        "kaggle_test_header": (gzip.compress(b"Id,I1,I2\n1,2,3\n"), 2, "header is not"),
        "invalid_utf8_row": (
            gzip.compress(
                (rows.rstrip("\n") + "\n").encode() + b"10000099,1,caf\xe9\n"
            ),
            0,
            "1 dead letters",
        ),
    }
    out = {}
    for name, (data, rc, text) in cases.items():
        path = tmp / f"{name}.csv.gz"
        path.write_bytes(data)
        out[name] = (path, rc, text)
    return out


CRITEO_CASES = [
    "truncated_gz",
    "not_gzip",
    "header_only",
    "empty_gz",
    "kaggle_test_header",
    "invalid_utf8_row",
]


@pytest.mark.parametrize("case", CRITEO_CASES)
def test_criteo_converter_bad_input(tmp_path, capsys, case) -> None:
    path, want_rc, text = _criteo_inputs(tmp_path)[case]
    rc = criteo.main(["--input", str(path), "--out", str(tmp_path / "events")])
    cap = capsys.readouterr()
    assert rc == want_rc, cap.err
    assert "Traceback" not in cap.err
    if want_rc:
        assert text in _one_error_line(cap.err) and str(path) in cap.err
    else:
        assert text in cap.out


def test_criteo_invalid_utf8_row_is_counted(tmp_path, capsys) -> None:
    path, _, _ = _criteo_inputs(tmp_path)["invalid_utf8_row"]
    root = tmp_path / "events"
    assert criteo.main(["--input", str(path), "--out", str(root)]) == 0
    dead = [
        json.loads(s)
        for s in (root / "_dead_letter" / "criteo.jsonl").read_text().splitlines()
    ]
    assert [(d["line"], d["reason"]) for d in dead] == [
        (22, "invalid UTF-8 at byte 14")
    ]
    spec = criteo.cli_common.load_spec(str(criteo.DEFAULT_SPEC))
    good = sum(
        events.read_partition(str(root), h, spec)[0].num_rows
        for h in events.list_partitions(str(root))
    )
    assert good + len(dead) == 21  # 20 rows + the bad one, independent of the job


def test_criteo_input_is_a_directory(tmp_path, capsys) -> None:
    rc = criteo.main(["--input", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "--input" in _one_error_line(capsys.readouterr().err)


def _ml_dir(tmp: pathlib.Path, ratings: bytes) -> pathlib.Path:
    d = tmp / "ml"
    d.mkdir()
    (d / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    (d / "movies.dat").write_bytes(b"1::Toy Story (1995)::Animation\n")
    (d / "ratings.users-1-2999.partial.dat.gz").write_bytes(ratings)
    return d


@pytest.mark.parametrize(
    ("case", "ratings", "flag"),
    [
        (
            "truncated_ratings_gz",
            gzip.compress(b"1::1::5::978300760\n" * 50)[:30],
            "--data-dir",
        ),
        ("ratings_not_gzip", b"1::1::5::978300760\n", "--data-dir"),
    ],
)
def test_movielens_converter_bad_input(tmp_path, capsys, case, ratings, flag) -> None:
    d = _ml_dir(tmp_path, ratings)
    rc = movielens.main(["--data-dir", str(d), "--out", str(tmp_path / "o")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and flag in line


def test_movielens_prepare_with_a_non_zip(tmp_path, capsys) -> None:
    bad = tmp_path / "ml-1m.zip"
    bad.write_bytes(b"not a zip")
    rc = movielens.main(["prepare", "--zip", str(bad), "--out", str(tmp_path / "p")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--zip" in line


def test_movielens_malformed_lines_are_counted(tmp_path, capsys) -> None:
    ratings = gzip.compress(
        b"1::1::5::978300760\n1::1::x::978300761\n2::1::4\n2::1::4::978300762\n"
    )
    d = _ml_dir(tmp_path, ratings)
    root = tmp_path / "o"
    assert movielens.main(["--data-dir", str(d), "--out", str(root)]) == 0
    dead = (root / "_dead_letter" / "movielens.jsonl").read_text().splitlines()
    spec = movielens.cli_common.load_spec(str(movielens.DEFAULT_SPEC))
    good = sum(
        events.read_partition(str(root), h, spec)[0].num_rows
        for h in events.list_partitions(str(root))
    )
    assert (good, len(dead)) == (2, 2)


SYNTHETIC_CASES = [
    (["--hours", "0"], "--hours"),
    (["--start-hour", "yesterday"], "--start-hour"),
    (["--zipf-exponent", "-1"], "zipf_exponent"),
    (["--format", "csv"], "--format"),
    (["--out", "FILE"], "--out"),
    (["--spec", "DIR"], "--spec"),
]


@pytest.mark.parametrize(("extra", "named"), SYNTHETIC_CASES)
def test_synthetic_bad_flag(tmp_path, capsys, extra, named) -> None:
    from beam_jobs import synthetic

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = {"--out": str(tmp_path / "o"), "--hours": "1", "--events-per-hour": "5"}
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        args[k] = v.replace("FILE", str(a_file)).replace("DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        synthetic.main([x for kv in args.items() for x in kv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    [line] = [s for s in err.splitlines() if "error:" in s]
    assert named in line


@pytest.mark.parametrize(
    "extra",
    [
        ["--window-s", "0"],
        ["--allowed-lateness-s", "-1"],
        ["--late-shards", "0"],
        ["--spec", "DIR"],
        ["--out", "FILE"],
    ],
)
def test_streaming_bad_flag_before_any_pubsub(tmp_path, good_spec, capsys, extra):
    from beam_jobs import streaming

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = {
        "--topic": "projects/p/topics/t",
        "--spec": good_spec,
        "--out": str(tmp_path / "o"),
    }
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        args[k] = v.replace("FILE", str(a_file)).replace("DIR", str(tmp_path))
    rc = streaming.main([x for kv in args.items() for x in kv])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith(f"error: {extra[0]}")
