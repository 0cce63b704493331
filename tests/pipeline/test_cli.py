"""python -m pipeline: main([...]) against the loopback KFP API server."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from pipeline import cli

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "hourly_training.yaml")


@pytest.fixture
def config(tmp_path) -> str:
    raw = yaml.safe_load((REPO / "specs" / "configs" / "pipeline.yaml").read_text())
    raw["kfp"]["host"] = ""  # tests pass --host
    raw["data"]["feature_spec"] = str(REPO / "specs" / "features" / "synthetic.yaml")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _target(kfp_api, config: str) -> list[str]:
    return ["--host", kfp_api.url, "--config", config, "--pipeline-spec", SPEC]


@pytest.mark.parametrize(
    "command", ["compile", "submit", "schedule", "run-local", "replay", "demo"]
)
def test_every_subcommand_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m pipeline " + command in capsys.readouterr().out


def test_submit_sends_config_parameters_for_the_hour(kfp_api, config, capsys) -> None:
    rc = cli.main(
        [
            "submit",
            *_target(kfp_api, config),
            "--hour",
            "2026-01-01T05",
            "--param",
            "min_value=0.6",
        ]
    )

    assert rc == 0, capsys.readouterr().err
    (run,) = kfp_api.state.runs.values()
    assert f"submitted run {run['run_id']}" in capsys.readouterr().out
    params = run["runtime_config"]["parameters"]
    assert params["hour"] == "2026-01-01T05" and params["hour_lag"] == 0
    assert params["logs_root"] == "gs://compactrec-data/logs"
    assert params["min_value"] == 0.6  # --param overrides the config
    assert params["trainer_config"]["feature_spec"] == params["feature_spec"]
    assert (params["accelerator_type"], params["accelerator_limit"]) == (
        "NVIDIA_TESLA_T4",
        1,
    )
    assert run["display_name"] == "hourly-training-2026-01-01T05"


def test_schedule_twice_leaves_one_recurring_run(kfp_api, config, capsys) -> None:
    assert cli.main(["schedule", *_target(kfp_api, config)]) == 0
    assert cli.main(["schedule", *_target(kfp_api, config)]) == 0
    assert (
        cli.main(["schedule", *_target(kfp_api, config), "--cron", "0 10 * * * *"]) == 0
    )

    out = capsys.readouterr().out.splitlines()
    assert [line.split("'compactrec-hourly' ")[1].split(":")[0] for line in out] == [
        "created",
        "unchanged",
        "replaced",
    ]
    (rr,) = kfp_api.state.recurring_runs.values()
    assert rr["display_name"] == "compactrec-hourly"
    assert rr["trigger"]["cron_schedule"]["cron"] == "0 10 * * * *"
    assert rr["max_concurrency"] == "1" and rr["no_catchup"] is True
    params = rr["runtime_config"]["parameters"]
    assert params["hour"] == cli.KFP_SCHEDULED_HOUR and params["hour_lag"] == 2


def test_server_errors_become_clear_cli_errors(kfp_api, config, capsys) -> None:
    kfp_api.fail_next("POST", "/runs", 500, "database unavailable")
    rc = cli.main(["submit", *_target(kfp_api, config), "--hour", "2026-01-01T05"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error: create run failed: KFP API at http://127.0.0.1:")
    assert "HTTP 500: database unavailable" in err
    assert kfp_api.state.runs == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--hour", "2026-01-01 05"], "invalid hour '2026-01-01 05'"),
        (["--hour", "2026-01-01T05", "--param", "hours=3"], "--param 'hours=3'"),
        (
            ["--hour", "2026-01-01T05", "--pipeline-spec", "/nonexistent.yaml"],
            "compiled pipeline spec not found",
        ),
    ],
)
def test_bad_input_exits_2_without_calling_the_server(
    kfp_api, config, capsys, extra, message
) -> None:
    rc = cli.main(["submit", *_target(kfp_api, config), *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert kfp_api.state.runs == {}


def test_missing_host_and_bad_config_exit_2(config, tmp_path, capsys) -> None:
    assert cli.main(["submit", "--config", config, "--hour", "2026-01-01T05"]) == 2
    assert "no KFP host" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {logs_root: x}\n")
    assert (
        cli.main(["schedule", "--config", str(bad), "--host", "http://127.0.0.1:1"])
        == 2
    )
    assert "data.registry_uri: required" in capsys.readouterr().err


def test_vertex_needs_a_gcs_pipeline_root(config, capsys) -> None:
    rc = cli.main(
        [
            "submit",
            "--config",
            config,
            "--vertex-project",
            "p",
            "--hour",
            "2026-01-01T05",
        ]
    )
    assert rc == 2
    assert "vertex.pipeline_root" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["-v", "demo", "--out", "x"], True),
        (["demo", "--out", "x", "-v"], True),
        (["demo", "--out", "x"], False),
        (["replay", "--hours", "a:b", "--logs", "l", "--workdir", "w", "-v"], True),
        (["run-local", "--hour", "h", "--logs", "l", "--workdir", "w"], False),
    ],
)
def test_verbose_works_before_and_after_the_local_subcommands(argv, verbose) -> None:
    assert cli._parse_args(argv).verbose is verbose
