"""No credential reaches the output of ``python -m pipeline``: a planted canary.

Each test runs the real CLI in its own process (``-v``: debug logging) against the
loopback KFP API server or a closed port, with a password and a token planted in the
host, and looks for the canary in stdout, stderr, the log file the output went to and
every file the process left in its working directory.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "hourly_training.yaml")
CANARY = "Canary7f3e9b"  # never printed by anything but a leak


@pytest.fixture
def config(tmp_path) -> str:
    raw = yaml.safe_load((REPO / "specs" / "configs" / "pipeline.yaml").read_text())
    raw["kfp"]["host"] = ""
    raw["data"]["feature_spec"] = str(REPO / "specs" / "features" / "synthetic.yaml")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends


def _cli(tmp_path: pathlib.Path, *args: str) -> tuple[int, str, str]:
    """Runs ``python -m pipeline -v ARGS`` in a fresh work directory; stderr also
    goes to a log file. Returns (exit code, stdout, stderr) after checking that no
    file in the work directory holds the canary."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    log = work / "cli.log"
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "-v", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=300,
            env={"PYTHONPATH": str(REPO), "HOME": str(work), "PATH": "/usr/bin:/bin"},
        )
    stderr = log.read_text()
    for path in work.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(errors="replace"), path
    assert CANARY not in proc.stdout
    assert CANARY not in stderr, stderr[-3000:]
    return proc.returncode, proc.stdout, stderr


def _host_with_credentials(url: str) -> str:
    return url.replace("http://", f"http://ops:{CANARY}@")


def test_submit_to_a_host_with_credentials_prints_no_password(
    kfp_api, config, tmp_path
):
    host = _host_with_credentials(kfp_api.url)
    rc, out, err = _cli(
        tmp_path,
        *("submit", "--host", host, "--config", config, "--pipeline-spec", SPEC),
        *("--hour", "2026-01-01T05"),
    )
    assert rc == 0, err
    assert len(kfp_api.state.runs) == 1  # the canary host worked, it was only hidden
    assert f"to {_host_with_credentials(kfp_api.url).replace(CANARY, '***')}" in out


def test_server_errors_that_echo_secrets_are_redacted(kfp_api, config, tmp_path):
    echoed = f"proxy refused http://ops:{CANARY}@10.0.0.1/x?token={CANARY}&page=2"
    kfp_api.fail_next("POST", "/runs", 502, echoed)
    rc, _out, err = _cli(
        tmp_path,
        "submit",
        *("--host", _host_with_credentials(kfp_api.url), "--config", config),
        *("--pipeline-spec", SPEC, "--hour", "2026-01-01T05"),
    )
    assert rc == 1
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "HTTP 502" in line and "http://ops:***@10.0.0.1/x?token=***&page=2" in line


@pytest.mark.parametrize(
    "host",
    [
        f"http://ops:{CANARY}@127.0.0.1:{{port}}",
        f"http://{CANARY}@127.0.0.1:{{port}}",
        f"http://127.0.0.1:{{port}}/?access_token={CANARY}",
        f"http://127.0.0.1:{{port}}/?key={CANARY}&sig={CANARY}",
    ],
)
def test_unreachable_hosts_fail_with_one_redacted_error_line(host, config, tmp_path):
    rc, _out, err = _cli(
        tmp_path,
        *("schedule", "--host", host.format(port=_closed_port())),
        *("--config", config, "--pipeline-spec", SPEC),
    )
    assert rc == 1
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "cannot reach KFP" in errors[0], err[-2000:]
    assert "***" in errors[0]
    assert "Traceback" not in err
