"""pipeline.client against a real loopback KFP API server (tests/fixtures/kfp_api)."""

from __future__ import annotations

import json
import pathlib
import socket
import urllib.error
import urllib.request

import pytest
import yaml

from pipeline import client, vertex_client
from tests.fixtures.kfp_api import API

SPEC = str(
    pathlib.Path(__file__).resolve().parents[2] / "specs" / "hourly_training.yaml"
)
PARAMS = {
    "hour": "2026-01-01T05",
    "logs_root": "gs://b/logs",
    "registry_uri": "gs://b/reg",
}


def _recurring_named(server, name: str) -> list[dict]:
    return [
        r for r in server.state.recurring_runs.values() if r["display_name"] == name
    ]


def test_submit_creates_one_run_with_the_compiled_spec_and_parameters(kfp_api) -> None:
    run_id = client.submit_run(kfp_api.url, SPEC, PARAMS, "hourly-exp", "run-05")

    assert list(kfp_api.state.runs) == [run_id]
    (body,) = kfp_api.bodies("POST", "/runs")
    assert body["display_name"] == "run-05"
    assert body["runtime_config"]["parameters"] == PARAMS
    with open(SPEC) as f:
        golden = yaml.safe_load(f)
    assert body["pipeline_spec"]["pipelineInfo"] == golden["pipelineInfo"]
    assert body["pipeline_spec"]["root"]["dag"]["tasks"].keys() == (
        golden["root"]["dag"]["tasks"].keys()
    )
    (exp,) = kfp_api.state.experiments.values()
    assert exp["display_name"] == "hourly-exp"
    assert body["experiment_id"] == exp["experiment_id"]


def test_schedule_creates_a_recurring_run_with_cron_concurrency_and_no_catchup(kfp_api):
    result = client.schedule(kfp_api.url, SPEC, PARAMS, "hourly", "hourly-exp")

    assert result.action == "created"
    (body,) = kfp_api.bodies("POST", "/recurringruns")
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 * * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["runtime_config"]["parameters"] == PARAMS
    assert [r["recurring_run_id"] for r in _recurring_named(kfp_api, "hourly")] == [
        result.recurring_run_id
    ]


def test_schedule_twice_keeps_exactly_one_recurring_run_and_updates_it(kfp_api) -> None:
    other = client.schedule(kfp_api.url, SPEC, PARAMS, "someone-else", "exp")
    first = client.schedule(kfp_api.url, SPEC, PARAMS, "hourly", "exp")
    same = client.schedule(kfp_api.url, SPEC, PARAMS, "hourly", "exp")
    assert (same.action, same.recurring_run_id) == ("unchanged", first.recurring_run_id)

    changed = {**PARAMS, "hour_lag": 1}
    updated = client.schedule(
        kfp_api.url, SPEC, changed, "hourly", "exp", cron="0 5 * * * *"
    )
    assert updated.action == "replaced"
    assert updated.replaced == (first.recurring_run_id,)
    (only,) = _recurring_named(kfp_api, "hourly")
    assert only["recurring_run_id"] == updated.recurring_run_id
    assert only["runtime_config"]["parameters"] == changed
    assert only["trigger"]["cron_schedule"]["cron"] == "0 5 * * * *"
    assert _recurring_named(kfp_api, "someone-else")[0]["recurring_run_id"] == (
        other.recurring_run_id
    )
    writes = [
        (r.method, r.path.rsplit("/", 1)[-1])
        for r in kfp_api.requests
        if r.method != "GET"
    ][-3:]
    old = first.recurring_run_id
    assert writes == [
        ("POST", f"{old}:disable"),
        ("POST", "recurringruns"),
        ("DELETE", old),
    ]


def test_failed_update_re_enables_the_old_schedule(kfp_api) -> None:
    first = client.schedule(kfp_api.url, SPEC, PARAMS, "hourly", "exp")
    kfp_api.fail_next("POST", "/recurringruns", 503, "scheduler unavailable")
    with pytest.raises(
        client.PipelineClientError, match="HTTP 503: scheduler unavailable"
    ):
        client.schedule(kfp_api.url, SPEC, {**PARAMS, "hour_lag": 1}, "hourly", "exp")
    (only,) = _recurring_named(kfp_api, "hourly")
    assert only["recurring_run_id"] == first.recurring_run_id
    assert only["status"] == "ENABLED"


def test_server_validation_errors_surface_with_the_server_message(kfp_api) -> None:
    with pytest.raises(client.PipelineClientError, match="unknown input 'houre'"):
        client.submit_run(kfp_api.url, SPEC, {**PARAMS, "houre": "x"}, "exp", "bad")
    missing = {k: v for k, v in PARAMS.items() if k != "registry_uri"}
    with pytest.raises(
        client.PipelineClientError, match="missing input 'registry_uri'"
    ):
        client.submit_run(kfp_api.url, SPEC, missing, "exp", "bad")
    assert kfp_api.state.runs == {}


def test_client_side_checks_and_unreachable_host(tmp_path) -> None:
    with pytest.raises(ValueError, match="6 fields"):
        client.schedule("http://127.0.0.1:1", SPEC, PARAMS, "h", "e", cron="0 * * * *")
    with pytest.raises(FileNotFoundError, match="python -m pipeline compile"):
        client.submit_run(
            "http://127.0.0.1:1", str(tmp_path / "none.yaml"), {}, "e", "r"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(client.PipelineClientError, match="cannot reach KFP"):
        client.submit_run(f"http://127.0.0.1:{port}", SPEC, PARAMS, "e", "r")


def test_vertex_cron_conversion() -> None:
    assert vertex_client.to_vertex_cron("0 5 * * * *") == "5 * * * *"
    with pytest.raises(ValueError, match="seconds = 0"):
        vertex_client.to_vertex_cron("30 5 * * * *")
    with pytest.raises(ValueError, match="6 fields"):
        vertex_client.to_vertex_cron("5 * * * *")


# ----------------------------------------------- the fixture validates like the server


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        server.url + API + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _spec() -> dict:
    return client._spec_dict(SPEC)


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/runs",
            {"display_name": "r", "pipeline_spec": {}, "colour": "red"},
            'unknown field "colour"',
        ),
        ("/runs", {"display_name": "r"}, "exactly one of pipeline_spec"),
        ("/runs", {"pipeline_spec": {"x": 1}}, "run.display_name: required"),
        (
            "/runs",
            {"display_name": "r", "pipeline_spec": {"notAField": 1}},
            "not a PipelineSpec",
        ),
        ("/runs", {"display_name": 5}, "run.display_name: expected str"),
        (
            "/recurringruns",
            {"display_name": "s", "max_concurrency": 1, "mode": "ON"},
            "'ON' is not one of",
        ),
        (
            "/recurringruns",
            {
                "display_name": "s",
                "max_concurrency": 1,
                "trigger": {"cron_schedule": {"cron": "0 * * * *"}},
            },
            "must have 6 fields",
        ),
        (
            "/recurringruns",
            {
                "display_name": "s",
                "max_concurrency": 0,
                "trigger": {"cron_schedule": {"cron": "0 0 * * * *"}},
            },
            "max_concurrency: must be in [1, 10]",
        ),
        ("/experiments", {"display_name": "e", "owner": "me"}, 'unknown field "owner"'),
    ],
)
def test_fixture_rejects_invalid_bodies_with_400(kfp_api, path, body, message) -> None:
    if "pipeline_spec" not in body and path == "/recurringruns":
        body = {
            **body,
            "pipeline_spec": _spec(),
            "runtime_config": {"parameters": PARAMS},
        }
    status, payload = _post(kfp_api, path, body)
    assert status == 400, payload
    assert message in payload["message"]
    assert payload["code"] == 3
    assert kfp_api.state.runs == {} and kfp_api.state.recurring_runs == {}


# ------------------------------------------------ checked before any request; redacted


def test_bad_hosts_and_specs_are_refused_before_any_request(kfp_api, tmp_path) -> None:
    not_spec = tmp_path / "not_spec.yaml"
    not_spec.write_text("pipelineInfo: {name: x}\ncolour: red\n")
    with pytest.raises(ValueError, match="not a compiled pipeline spec"):
        client.submit_run(kfp_api.url, str(not_spec), PARAMS, "e", "r")
    with pytest.raises(ValueError, match="expected an http"):
        client.schedule("127.0.0.1:8888", SPEC, PARAMS, "h", "e")
    assert kfp_api.requests == []


def test_client_errors_never_show_credentials(kfp_api) -> None:
    canary = "Canary7f3e9b"
    host = kfp_api.url.replace("http://", f"http://ops:{canary}@")
    kfp_api.fail_next("POST", "/runs", 500, f"upstream {host}/x?token={canary}")
    with pytest.raises(client.PipelineClientError) as err:
        client.submit_run(host, SPEC, PARAMS, "exp", "r")
    assert canary not in str(err.value)
    assert "http://ops:***@" in str(err.value) and "token=***" in str(err.value)
    port = host.rsplit(":", 1)[-1]
    kfp_api.stop()  # nothing listens any more
    with pytest.raises(client.PipelineClientError, match="cannot reach") as err:
        client.submit_run(f"http://u:{canary}@127.0.0.1:{port}", SPEC, PARAMS, "e", "r")
    assert canary not in str(err.value)
