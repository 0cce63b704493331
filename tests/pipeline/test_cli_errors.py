"""``python -m pipeline``: every bad flag, file or path is one ``error:`` line naming
it and exit code 2, before any task starts or any request is sent."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from pipeline import cli

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "hourly_training.yaml")
HOUR = "2026-01-01T05"


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    raw = yaml.safe_load((REPO / "specs" / "configs" / "pipeline.yaml").read_text())
    raw["kfp"]["host"] = ""
    raw["data"]["feature_spec"] = str(REPO / "specs" / "features" / "synthetic.yaml")
    made = {
        "config": yaml.safe_dump(raw),
        "not_utf8": b"a: \xff\xfe\n",
        "broken": "kfp: [1\n",
        "not_spec": "a: 1\n",
        "empty": "",
        "a_file": "x\n",
    }
    out = {}
    for name, content in made.items():
        path = tmp_path / f"{name}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        out[name] = str(path)
    (tmp_path / "logs").mkdir()
    out["logs"] = str(tmp_path / "logs")
    out["dir"] = str(tmp_path)
    return out


def _fails(capsys, argv: list[str], *named: str) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in named:
        assert name in lines[0], lines[0]
    return lines[0]


def _submit(kfp_api, files, *extra: str) -> list[str]:
    return ["submit", "--host", kfp_api.url, "--config", files["config"], *extra]


@pytest.mark.parametrize(
    ("spec_key", "says"),
    [
        ("not_utf8", "not UTF-8"),
        ("broken", "not valid YAML"),
        ("not_spec", "not a compiled pipeline spec"),
        ("empty", "empty"),
        ("dir", "not found"),
    ],
)
def test_bad_compiled_specs_fail_before_any_request(
    kfp_api, files, capsys, spec_key, says
) -> None:
    argv = _submit(kfp_api, files, "--pipeline-spec", files[spec_key], "--hour", HOUR)
    _fails(capsys, argv, files[spec_key], says)
    _fails(capsys, ["schedule", *argv[1:-2]], files[spec_key], says)
    assert kfp_api.requests == []


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--hour", "2026-13-01T05"], "2026-13-01T05"),
        (["--hour", HOUR, "--param", "min_value=[1"], "--param 'min_value=[1'"),
        (["--hour", HOUR, "--param", "colour=red"], "--param 'colour=red'"),
    ],
)
def test_bad_submit_flags_name_the_flag(kfp_api, files, capsys, extra, named) -> None:
    _fails(capsys, _submit(kfp_api, files, "--pipeline-spec", SPEC, *extra), named)
    assert kfp_api.requests == []


@pytest.mark.parametrize("host", ["notaurl", "ftp://h/x", "http://"])
def test_a_host_that_is_not_an_http_url_is_refused(files, capsys, host) -> None:
    argv = ["submit", "--host", host, "--config", files["config"], "--hour", HOUR]
    _fails(capsys, argv, "KFP host", "http://")


@pytest.mark.parametrize(("key", "says"), [("not_utf8", "not UTF-8"), ("dir", "")])
def test_bad_pipeline_configs_name_the_file(files, capsys, key, says) -> None:
    argv = ["submit", "--host", "http://127.0.0.1:9", "--config", files[key]]
    _fails(capsys, argv, files[key], says)


def test_output_paths_that_cannot_be_written(files, capsys) -> None:
    under_a_file = files["a_file"] + "/x.yaml"
    _fails(capsys, ["compile", "--out", under_a_file], "--out", files["a_file"])
    _fails(capsys, ["demo", "--out", files["a_file"]], "--out", "not a directory")


def test_local_runs_check_their_inputs_before_any_task(files, capsys) -> None:
    work = files["dir"] + "/work"
    base = ["run-local", "--hour", HOUR]
    missing = files["dir"] + "/nothing"
    _fails(capsys, [*base, "--logs", missing, "--workdir", work], "--logs", missing)
    _fails(
        capsys,
        [*base, "--logs", files["a_file"], "--workdir", work],
        "--logs",
        "not a directory",
    )
    _fails(
        capsys,
        [*base, "--logs", files["logs"], "--workdir", files["a_file"]],
        "--workdir",
    )
    for spec in (files["not_utf8"], missing + ".yaml"):
        argv = ["replay", "--hours", f"{HOUR}:{HOUR}", "--logs", files["logs"]]
        _fails(capsys, [*argv, "--workdir", work, "--spec", spec], spec)
    _fails(
        capsys,
        [
            *base,
            "--logs",
            files["logs"],
            "--workdir",
            work,
            "--config",
            files["broken"],
        ],
        files["broken"],
    )
    assert not (pathlib.Path(work) / "kfp-root").exists()  # no task ever started
