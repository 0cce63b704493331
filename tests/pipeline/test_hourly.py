"""pipeline.hourly: the golden compiled spec and the wiring it encodes."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from components import images
from pipeline import cli

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "specs" / "hourly_training.yaml"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("compile") / "hourly_training.yaml"
    assert cli.main(["compile", "--out", str(out)]) == 0
    return out.read_text()


@pytest.fixture(scope="module")
def spec(compiled: str) -> dict:
    return yaml.safe_load(compiled)


def test_compiled_spec_matches_the_committed_golden_file(compiled: str) -> None:
    assert GOLDEN.is_file(), "run `make compile` to write specs/hourly_training.yaml"
    assert compiled == GOLDEN.read_text(), (
        "specs/hourly_training.yaml is stale: run `make compile` and commit the result"
    )


def test_root_dag_has_every_step_and_register_only_under_the_blessing_gate(
    spec,
) -> None:
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "resolve-hour",
        "compute-stats",
        "transform-examples",
        "resolve-production",
        "train-model",
        "export-model",
        "evaluate-model",
        "condition-1",
    }
    gate = tasks["condition-1"]
    assert gate["taskInfo"]["name"] == "blessed"
    assert gate["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-model-Output'] == true"
    )
    inner = spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["register-model"]


def test_artifacts_flow_between_steps(spec) -> None:
    tasks = spec["root"]["dag"]["tasks"]

    def source(task: str, name: str) -> tuple[str, str]:
        ref = tasks[task]["inputs"]["artifacts"][name]["taskOutputArtifact"]
        return ref["producerTask"], ref["outputArtifactKey"]

    assert source("transform-examples", "stats") == ("compute-stats", "stats")
    assert source("train-model", "examples") == ("transform-examples", "examples")
    assert source("train-model", "warm_start") == ("resolve-production", "checkpoint")
    assert source("export-model", "model") == ("train-model", "model")
    assert source("evaluate-model", "model") == ("export-model", "serving_model")
    assert source("evaluate-model", "production_model") == (
        "resolve-production",
        "serving_model",
    )

    def param_source(task: str, name: str) -> tuple[str, str]:
        ref = tasks[task]["inputs"]["parameters"][name]["taskOutputParameter"]
        return ref["producerTask"], ref["outputParameterKey"]

    assert param_source("compute-stats", "hour") == ("resolve-hour", "hour")
    assert param_source("transform-examples", "hour") == ("resolve-hour", "hour")
    assert param_source("evaluate-model", "eval_hour") == ("resolve-hour", "eval_hour")


def test_training_requests_the_accelerator_from_pipeline_parameters(spec) -> None:
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"][
        "resources"
    ]["accelerator"]
    assert "pipelinechannel--accelerator_type" in resources["resourceType"]
    assert "pipelinechannel--accelerator_limit" in resources["resourceCount"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["accelerator_type"]["defaultValue"] == images.ACCELERATOR_TYPE
    assert params["accelerator_limit"]["defaultValue"] == images.ACCELERATOR_LIMIT
    others = [
        e
        for n, e in spec["deploymentSpec"]["executors"].items()
        if n != "exec-train-model"
    ]
    assert all("resources" not in e["container"] for e in others)


def test_images_come_from_components_images_and_kfp_is_not_pip_installed(spec) -> None:
    executors = spec["deploymentSpec"]["executors"]
    used = {name: e["container"]["image"] for name, e in executors.items()}
    assert used["exec-compute-stats"] == images.BEAM_IMAGE
    assert used["exec-transform-examples"] == images.BEAM_IMAGE
    assert used["exec-train-model"] == images.TRAINER_IMAGE
    assert set(used.values()) == {images.BEAM_IMAGE, images.TRAINER_IMAGE}
    for e in executors.values():
        assert "pip install" not in " ".join(e["container"]["command"])


def test_required_inputs_are_hour_logs_and_registry(spec) -> None:
    params = spec["root"]["inputDefinitions"]["parameters"]
    required = {n for n, p in params.items() if not p.get("isOptional")}
    assert required == {"hour", "logs_root", "registry_uri"}
    assert params["trainer_config"]["parameterType"] == "STRUCT"


def test_pipeline_returns_stats_export_metrics_and_blessing(spec) -> None:
    outputs = spec["root"]["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"stats", "serving_model", "metrics"}
    assert outputs["parameters"] == {"blessed": {"parameterType": "BOOLEAN"}}
    selectors = spec["root"]["dag"]["outputs"]["parameters"]["blessed"]
    assert selectors["valueFromParameter"] == {
        "outputParameterKey": "Output",
        "producerSubtask": "evaluate-model",
    }
