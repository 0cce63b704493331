"""reproduce.ranking on committed runs: resume, stale code, sampled protocols, --out.

Tiny data (planted groups, 160 items so both sampled protocols can draw), 1 epoch of a
few steps; every run is real training and evaluation.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from reproduce import ranking as reproduce
from reproduce import run_store
from tests.trainer.models import planted_pairs
from trainer.config import load_config
from trainer.data.samples import prepare_task
from trainer.data.sequences import from_pairs
from trainer.evaluation import candidates, ranking

SPECS = pathlib.Path(__file__).resolve().parents[2] / "specs" / "experiments"


def _write_data(root: pathlib.Path) -> pathlib.Path:
    users, items = planted_pairs(num_users=40, num_items=160)
    np.savetxt(root / "ml-1m.txt", np.stack([users, items], 1), fmt="%d")
    return root


def _argv(root: pathlib.Path, *extra: str) -> list[str]:
    return [
        "--data-dir",
        str(root),
        "--out",
        str(root / "R.md"),
        "--models",
        "gmf",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--specs-dir",
        str(SPECS),
        "--results-dir",
        str(root / "runs"),
        *extra,
    ]


def _trained(printed: str) -> list[str]:
    return sorted(
        line.split(" epoch ")[0]
        for line in printed.splitlines()
        if " epoch 1/1" in line
    )


def test_resume_trains_only_missing_runs_and_records_everything(tmp_path, capsys):
    root = _write_data(tmp_path)
    assert reproduce.main(_argv(root, "--methods", "full", "--seeds", "1")) == 0
    assert _trained(capsys.readouterr().out) == ["gmf/full seed 0"]
    files = list((root / "runs").glob("gmf_full_seed0_*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["code"]["fingerprint"] == run_store.code_fingerprint()
    assert sorted(record["code"]["files"]) == sorted(run_store.CODE_PATHS)
    assert record["seed"] == 0 and record["protocol"] == "full"
    assert len(record["data"]["fingerprint"]) == 12
    result = record["result"]
    assert result["best_epoch"] == 1 and result["train_seconds"] > 0
    assert result["size"]["table_bits"] and result["history"][0]["valid"]["users"]
    assert set(result["extra"]) == {
        f"{p}/{s}" for p in ("sampled_ncf", "sampled_sasrec") for s in ("valid", "test")
    }

    # Two methods x two seeds: only the three missing runs train.
    argv = _argv(root, "--methods", "full,mgqe_compact", "--seeds", "2")
    assert reproduce.main(argv) == 0
    printed = capsys.readouterr().out
    assert _trained(printed) == [
        "gmf/full seed 1",
        "gmf/mgqe_compact seed 0",
        "gmf/mgqe_compact seed 1",
    ]
    assert "gmf/full seed 0 (stored)" in printed
    assert reproduce.main(argv) == 0  # everything stored: nothing trains
    assert _trained(capsys.readouterr().out) == []
    text = (root / "R.md").read_text()
    assert "**Partial**" not in text and "STALE" not in text
    assert "sampled_ncf HR@10" in text and "99 distinct negatives" in text


def test_changed_code_fingerprint_marks_a_run_stale(tmp_path, capsys):
    root = _write_data(tmp_path)
    argv = _argv(root, "--methods", "full", "--seeds", "1")
    assert reproduce.main(argv) == 0
    capsys.readouterr()
    (path,) = (root / "runs").glob("gmf_full_seed0_*.json")
    record = json.loads(path.read_text())
    # As if trainer/layers/full_embedding.py had other content when it was made.
    record["code"]["files"]["trainer/layers/full_embedding.py"] = "0123456789ab"
    record["code"]["fingerprint"] = run_store.code_fingerprint(record["code"]["files"])
    path.write_text(json.dumps(record))

    assert reproduce.main(argv) == 0
    printed = capsys.readouterr().out
    assert _trained(printed) == []  # listed, not retrained ...
    assert "STALE" in printed and "trainer/layers/full_embedding.py" in printed
    text = (root / "R.md").read_text()
    assert "## STALE runs" in text and path.name in text
    assert "| full |" not in text  # ... and not mixed into the tables
    assert "**Partial**: 0 of 1 runs." in text

    assert reproduce.main([*argv, "--rerun-stale"]) == 0
    assert _trained(capsys.readouterr().out) == ["gmf/full seed 0"]
    fresh = json.loads(path.read_text())  # retrained in place
    assert fresh["code"]["fingerprint"] == run_store.code_fingerprint()
    assert "STALE" not in (root / "R.md").read_text()


def test_stale_lookup_names_the_changed_file(tmp_path):
    task = prepare_task(from_pairs(*planted_pairs(num_users=30, num_items=160)))
    cfg = load_config(
        str(SPECS / "gmf_full.yaml"), {"training.max_steps": 2, "training.epochs": 1}
    )
    result = ranking.train_and_evaluate(cfg, task)
    code = tmp_path / "code"
    for rel in run_store.CODE_PATHS:
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        (code / rel).write_bytes((pathlib.Path(run_store.REPO_ROOT) / rel).read_bytes())
    store = run_store.RunStore(str(tmp_path / "runs"), code_root=str(code))
    store.save("gmf_full", result, "full", 1, task)
    assert not store.lookup("gmf_full", cfg, "full", 1, task).stale
    assert store.load("gmf_full", cfg, "full", 1, task) == result
    with open(code / "trainer/training/loop.py", "a") as f:
        f.write("\n# changed\n")
    hit = run_store.RunStore(str(tmp_path / "runs"), code_root=str(code)).lookup(
        "gmf_full", cfg, "full", 1, task
    )
    assert hit.stale and hit.changed_files == ["trainer/training/loop.py"]
    assert hit.result == result
    assert store.load("gmf_full", cfg, "full", 1, task) is None


def test_sampled_protocols_are_deterministic_for_a_seed():
    task = prepare_task(from_pairs(*planted_pairs(num_users=40, num_items=160)))
    for protocol in ("sampled_ncf", "sampled_sasrec"):
        a = ranking.RankingEvaluator(task, "test", protocol, seed=3).candidates
        b = ranking.RankingEvaluator(task, "test", protocol, seed=3).candidates
        c = ranking.RankingEvaluator(task, "test", protocol, seed=4).candidates
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    cfg = load_config(
        str(SPECS / "gmf_full.yaml"), {"training.max_steps": 3, "training.epochs": 1}
    )
    one = ranking.train_and_evaluate(cfg, task)
    two = ranking.train_and_evaluate(cfg, task)
    assert one.extra == two.extra and set(one.extra) == {
        "sampled_ncf/valid",
        "sampled_ncf/test",
        "sampled_sasrec/valid",
        "sampled_sasrec/test",
    }
    ncf = one.extra["sampled_ncf/test"]
    assert 0.0 <= ncf.ndcg <= ncf.hr <= 100.0 and ncf.num_users == 40


def _ncf_lines(task, rows) -> tuple[list[str], list[list[int]]]:
    """``test.negative`` lines (raw ids) for task rows ``rows``, and their candidates."""
    raw_user = {r: int(u) for r, u in enumerate(task.user_ids)}
    raw_item = {r: int(i) for r, i in enumerate(task.item_ids)}
    lines, expected = [], []
    for row in rows:
        history = set(task.train_sequence(row).tolist()) | {int(task.test[row])}
        negs = [i for i in range(task.num_items) if i not in history][:5]
        lines.append(
            f"({raw_user[row]},{raw_item[int(task.test[row])]})\t"
            + "\t".join(str(raw_item[i]) for i in negs)
        )
        expected.append([int(task.test[row]), *negs])
    return lines, expected


def test_external_candidate_file_in_ncf_format(tmp_path):
    task = prepare_task(from_pairs(*planted_pairs(num_users=12, num_items=160)))
    raw_user = {r: int(u) for r, u in enumerate(task.user_ids)}
    raw_item = {r: int(i) for r, i in enumerate(task.item_ids)}
    lines, expected = _ncf_lines(task, (3, 0, 7))  # the file's own user order
    path = tmp_path / "ml-1m.test.negative"
    path.write_text("\n".join(lines) + "\n")
    users, cands = candidates.read_candidates(str(path), task)
    np.testing.assert_array_equal(users, [3, 0, 7])
    np.testing.assert_array_equal(cands, expected)

    ev = ranking.RankingEvaluator(task, "test", "external", candidates=(users, cands))
    np.testing.assert_array_equal(ev.candidates, expected)
    from trainer.models.gmf import GMF

    m = ev.evaluate(GMF(task.num_users, task.num_items, {"kind": "full", "dim": 4}))
    assert m.num_users == 3 and 0.0 <= m.ndcg <= m.hr <= 100.0

    cfg = load_config(
        str(SPECS / "gmf_full.yaml"), {"training.max_steps": 2, "training.epochs": 1}
    )
    result = ranking.train_and_evaluate(cfg, task, candidates=(users, cands))
    assert result.extra["external/test"].num_users == 3

    wrong = lines[0].replace(f"({raw_user[3]},", f"({raw_user[3]}9999,")
    path.write_text(wrong + "\n")
    with pytest.raises(ValueError, match=r"ml-1m.test.negative:1: unknown user id"):
        candidates.read_candidates(str(path), task)
    other = raw_item[int(task.valid[3])]
    path.write_text(lines[0].replace(f",{raw_item[int(task.test[3])]})", f",{other})"))
    with pytest.raises(ValueError, match="is not user .* test item"):
        candidates.read_candidates(str(path), task)


def test_out_default_is_under_runs_never_docs(tmp_path, capsys):
    args = reproduce._parse_args(["--data-dir", "d"])
    assert args.out == reproduce.DEFAULT_OUT
    assert pathlib.PurePath(args.out).parts[0] == "runs"
    assert "docs" not in pathlib.PurePath(args.out).parts
    assert run_store.DEFAULT_ROOT == "reproduce/runs/ranking"


def test_set_overrides_and_bad_input_are_one_error_line(tmp_path, capsys):
    assert reproduce.parse_sets(["model.maxlen=200", "training.seed=1"]) == {
        "model.maxlen": 200,
        "training.seed": 1,
    }
    root = _write_data(tmp_path)
    for bad, named in (
        (["--set", "model.maxlen"], "expected KEY=VALUE"),
        (["--set", "data.path=x"], "only model.*"),
        (["--set", "model.embedding.dim=abc"], "dim"),
    ):
        assert reproduce.main(_argv(root, "--methods", "full", *bad)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and named in err and "Traceback" not in err
    assert reproduce.main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_sampled_protocol_report_shows_only_that_protocols_paper_numbers(
    tmp_path, capsys
):
    root = _write_data(tmp_path)
    argv = _argv(root, "--methods", "full", "--seeds", "1")
    assert reproduce.main([*argv, "--protocol", "sampled_sasrec"]) == 0
    text = (root / "R.md").read_text()
    assert "**Protocol** (`sampled_sasrec`)" in text and "WITH replacement" in text
    (row,) = [x for x in text.splitlines() if x.startswith("| full |")][:1]
    assert "| - | - | - |" in row  # no MGQE full-ranking numbers beside sampled ones
    assert "| 7.79 | 3.88 |" not in text
    assert "full HR@10" in text and "7.79 / 3.88" in text  # only beside full ranking
    assert reproduce.main(argv) == 0
    text = (root / "R.md").read_text()
    assert "**Protocol** (`full`)" in text and "| 7.79 | 3.88 | 100.00 |" in text


def test_cli_reports_an_external_candidate_file(tmp_path, capsys):
    from trainer.data.sequences import load_sasrec

    root = _write_data(tmp_path)
    task = prepare_task(load_sasrec(str(root / "ml-1m.txt")))
    lines, _ = _ncf_lines(task, range(10))
    negative = root / "ml-1m.test.negative"
    negative.write_text("\n".join(lines) + "\n")
    argv = _argv(root, "--methods", "full", "--seeds", "1")
    assert reproduce.main([*argv, "--candidates", str(negative)]) == 0
    capsys.readouterr()
    text = (root / "R.md").read_text()
    assert "external HR@10" in text and "test.negative format" in text
    (path,) = (root / "runs").glob("gmf_full_seed0_*.json")
    record = json.loads(path.read_text())
    assert (
        record["candidates"]
        and record["result"]["extra"]["external/test"]["users"] == 10
    )
    # Without the file it is another run (another key): it trains.
    assert reproduce.main(argv) == 0
    assert _trained(capsys.readouterr().out) == ["gmf/full seed 0"]
    negative.write_text("(1,2)\tx\n")
    assert reproduce.main([*argv, "--candidates", str(negative)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --candidates") and "ml-1m.test.negative:1" in err
