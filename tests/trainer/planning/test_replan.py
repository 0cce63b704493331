"""``python -m pipeline replan`` and the pipeline config's ``budget``."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from pipeline import cli
from pipeline.config import PipelineConfig, PipelineConfigError
from trainer.contracts.features import load_feature_spec


def test_replan_names_changes_then_none(synthetic_stats, spec_path, tmp_path, capsys):
    out = tmp_path / "replanned.yaml"
    argv = ["replan", "--stats", str(synthetic_stats), "--budget", "66%"]
    assert cli.main([*argv, "--spec", spec_path, "--out", str(out)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("replan:")]
    changed = {x.split(":")[1].strip() for x in lines if "->" in x}
    assert "item_id" in changed  # mgqe over 50k rows -> fits the ~1.7k ids seen
    assert any("bytes" in x and "collided traffic" in x for x in lines)
    load_feature_spec(str(out))
    # the new spec is its own plan: replanning it changes nothing
    assert cli.main([*argv, "--spec", str(out)]) == 0
    assert "no feature would change" in capsys.readouterr().out


def test_replan_reads_the_budget_from_the_pipeline_config(
    synthetic_stats, spec_path, tmp_path, capsys
):
    config = tmp_path / "pipeline.yaml"
    data = {"logs_root": "logs", "registry_uri": "reg", "feature_spec": spec_path}
    config.write_text(yaml.safe_dump({"data": {**data, "budget": "1MB"}}))
    argv = ["replan", "--stats", str(synthetic_stats), "--spec", spec_path]
    assert cli.main([*argv, "--config", str(config)]) == 0
    assert "of budget 1.000 MB" in capsys.readouterr().out
    assert cli.main(argv) == 2
    assert "error: replan needs --budget" in capsys.readouterr().err
    assert cli.main([*argv, "--budget", "1KB"]) == 2
    assert "below the smallest possible model" in capsys.readouterr().err


def test_config_budget_is_validated():
    data = {"logs_root": "l", "registry_uri": "r", "feature_spec": "s.yaml"}
    assert PipelineConfig.from_dict({"data": {**data, "budget": "15%"}}).data.budget
    assert PipelineConfig.from_dict({"data": data}).data.budget == ""
    with pytest.raises(PipelineConfigError, match=r"p.yaml: data.budget: budget '9Q'"):
        PipelineConfig.from_dict({"data": {**data, "budget": "9Q"}}, source="p.yaml")


def test_cold_start_plans_once_and_later_hours_keep_it(spec_path, tmp_path):
    from beam_jobs import synthetic
    from pipeline import replan

    logs, work = tmp_path / "logs", tmp_path / "work"
    argv = ["--out", str(logs), "--hours", "2", "--events-per-hour", "1500"]
    assert synthetic.main([*argv, "--seed", "4", "--spec", spec_path]) == 0
    with pytest.raises(ValueError, match="holds hours trained without a plan"):
        replan.cold_start_plan(
            str(logs), "2026-01-01T00", spec_path, "95%", str(work), cold_start=False
        )
    path = replan.cold_start_plan(
        str(logs), "2026-01-01T00", spec_path, "95%", str(work)
    )
    planned = load_feature_spec(path)
    summary = json.loads((work / "plan" / "plan.json").read_text())
    assert summary["hour"] == "2026-01-01T00" and summary["budget"] == "95%"
    assert summary["planned_bytes"] <= summary["budget_bytes"]
    assert set(summary["features"]) == set(planned.categorical_names)
    before = pathlib.Path(path).read_bytes()
    # a later hour (even with another budget) keeps the cold-start plan
    again = replan.cold_start_plan(
        str(logs), "2026-01-01T01", spec_path, "99%", str(work), cold_start=False
    )
    assert again == path and pathlib.Path(again).read_bytes() == before
    assert not (work / "plan" / "stats" / "2026-01-01T01").exists()
    record = replan.plan_record(str(work), 12345)
    assert record["planned_bits"] == round(8 * summary["planned_bytes"])
    assert record["actual_bits"] == 12345 and record["spec"] == path
    assert record["predicted_cost"] == summary["predicted_cost"]


def test_local_settings_carry_the_budget(spec_path, tmp_path):
    import argparse

    from pipeline import local

    config = tmp_path / "pipeline.yaml"
    data = {"logs_root": "l", "registry_uri": "r", "feature_spec": spec_path}
    config.write_text(yaml.safe_dump({"data": {**data, "budget": "20%"}}))
    args = argparse.Namespace(
        logs="l", workdir=str(tmp_path), config=str(config), spec=spec_path
    )
    assert local.settings_from_args(args).budget == "20%"
    args.config = None
    assert local.settings_from_args(args).budget == ""
