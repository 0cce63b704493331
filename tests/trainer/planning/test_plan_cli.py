"""``python -m trainer.plan`` end to end on a real stats artifact, and its bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pytest
import yaml

from trainer import plan as plan_cli
from trainer.contracts import artifacts
from trainer.contracts.features import load_feature_spec


def run_cli(capsys, *argv):
    code = plan_cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_a_spec_the_loader_accepts(
    synthetic_stats, spec_path, tmp_path, capsys
):
    out, summary = tmp_path / "planned.yaml", tmp_path / "plan.json"
    code, stdout, err = run_cli(
        capsys,
        "--stats",
        str(synthetic_stats),
        "--spec",
        spec_path,
        "--budget",
        "66%",
        "--out",
        str(out),
        "--summary",
        str(summary),
    )
    assert code == 0, err
    header = stdout.splitlines()[0].split()
    assert header[:3] == ["feature", "distinct", "head"]
    assert "runner-up" in header
    planned = load_feature_spec(str(out))
    original = load_feature_spec(spec_path)
    assert planned.categorical_names == original.categorical_names
    for name in original.categorical_names:
        assert any(line.startswith(name) for line in stdout.splitlines()), name
    s = json.loads(summary.read_text())
    assert s["planned_bytes"] <= s["budget_bytes"]
    assert 0 < s["size_percent"] <= 66.0
    assert set(s["features"]) == set(original.categorical_names)
    # deterministic: the same inputs give the same file, byte for byte
    again = tmp_path / "again.yaml"
    assert (
        run_cli(
            capsys,
            "--stats",
            str(synthetic_stats),
            "--spec",
            spec_path,
            "--budget",
            "66%",
            "--out",
            str(again),
        )[0]
        == 0
    )
    assert again.read_bytes() == out.read_bytes()


def test_module_entry_point_runs(synthetic_stats, spec_path, tmp_path):
    out = tmp_path / "p.yaml"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.plan",
            "--stats",
            str(synthetic_stats),
            "--spec",
            spec_path,
            "--budget",
            "1MB",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(out.read_text())["name"] == "synthetic"


def test_planner_imports_no_tensorflow_or_beam():
    code = (
        "import sys, trainer.plan, trainer.planning.planner; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'apache_beam') "
        "if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == "[]"


def test_cli_plans_a_share_of_the_full_model_without_crosses(
    synthetic_stats, spec_path, tmp_path, capsys
):
    raw = yaml.safe_load(open(spec_path))
    raw.pop("crosses")
    spec = tmp_path / "nocross.yaml"
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / "p.yaml"
    code, stdout, err = run_cli(
        capsys,
        "--stats",
        str(synthetic_stats),
        "--spec",
        str(spec),
        "--budget",
        "15%",
        "--hidden-units",
        "8",
        "--out",
        str(out),
    )
    assert code == 0, err
    planned = load_feature_spec(str(out))
    treatments = {f.treatment.value for f in planned.categorical}
    assert treatments - {"full"}, treatments  # 15 % forces some compression


def bad(capsys, *argv):
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_budget_below_the_minimum_names_it(
    synthetic_stats, spec_path, tmp_path, capsys
):
    line = bad(
        capsys,
        "--stats",
        str(synthetic_stats),
        "--spec",
        spec_path,
        "--budget",
        "10KB",
        "--out",
        str(tmp_path / "p.yaml"),
    )
    assert "below the smallest possible model" in line and "KB" in line
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--budget", "64XB", "budget '64XB'"),
        ("--hidden-units", "a,b", "--hidden-units"),
        ("--heavy-min-count", "0", "--heavy-min-count"),
        ("--quant-penalty", "2", "--quant-penalty"),
    ],
)
def test_bad_flags(synthetic_stats, spec_path, tmp_path, capsys, flag, value, needle):
    argv = {
        "--stats": str(synthetic_stats),
        "--spec": spec_path,
        "--budget": "1MB",
        "--out": str(tmp_path / "p.yaml"),
        flag: value,
    }
    line = bad(capsys, *[x for kv in argv.items() for x in kv])
    assert needle in line


def test_bad_paths_and_disagreements_name_the_feature(
    synthetic_stats, spec_path, tmp_path, capsys
):
    out = str(tmp_path / "p.yaml")
    line = bad(
        capsys,
        "--stats",
        str(tmp_path / "nope"),
        "--spec",
        spec_path,
        "--budget",
        "1MB",
        "--out",
        out,
    )
    assert "nope" in line
    line = bad(
        capsys,
        "--stats",
        str(synthetic_stats),
        "--spec",
        str(tmp_path / "x.yaml"),
        "--budget",
        "1MB",
        "--out",
        out,
    )
    assert "x.yaml" in line

    raw = yaml.safe_load(open(spec_path))
    raw["features"] = [f for f in raw["features"] if f["name"] != "device"]
    raw["crosses"] = [c for c in raw["crosses"] if "device" not in c["features"]]
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump(raw))
    line = bad(
        capsys,
        "--stats",
        str(synthetic_stats),
        "--spec",
        str(missing),
        "--budget",
        "1MB",
        "--out",
        out,
    )
    assert "'device' is in the stats" in line

    raw = yaml.safe_load(open(spec_path))
    raw["features"].append({"name": "shop_id", "treatment": "hash"})
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(raw))
    line = bad(
        capsys,
        "--stats",
        str(synthetic_stats),
        "--spec",
        str(extra),
        "--budget",
        "1MB",
        "--out",
        out,
    )
    assert "'shop_id'" in line and "no count table" in line

    empty = tmp_path / "empty_stats"
    shutil.copytree(synthetic_stats, empty)
    artifacts.write_counts(
        str(empty),
        "country",
        pa.table(
            {"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())}
        ),
    )
    line = bad(
        capsys,
        "--stats",
        str(empty),
        "--spec",
        spec_path,
        "--budget",
        "1MB",
        "--out",
        out,
    )
    assert "'country': empty count table" in line


def test_experiment_config_sets_the_mlp_size(
    synthetic_stats, spec_path, tmp_path, capsys
):
    out, summary = tmp_path / "p.yaml", tmp_path / "p.json"
    argv = ["--stats", str(synthetic_stats), "--spec", spec_path, "--budget", "1MB"]
    exp = "specs/experiments/synthetic_hybrid.yaml"  # model.hidden_units [32, 16]
    code, _, err = run_cli(
        capsys, *argv, "--experiment", exp, "--out", str(out), "--summary", str(summary)
    )
    assert code == 0, err
    small = json.loads(summary.read_text())["fixed_bytes"]
    code, _, err = run_cli(
        capsys, *argv, "--hidden-units", "32,16", "--out", str(out),
        "--summary", str(summary),
    )  # fmt: skip
    assert code == 0 and json.loads(summary.read_text())["fixed_bytes"] == small
    run_cli(capsys, *argv, "--out", str(out), "--summary", str(summary))
    assert json.loads(summary.read_text())["fixed_bytes"] > small  # 256,128,64
    line = bad(capsys, *argv, "--experiment", "nope.yaml", "--out", str(out))
    assert "--experiment nope.yaml" in line
