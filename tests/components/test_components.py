"""Components compile, stay thin, use our images; the registry ones run in kfp.local."""

# No `from __future__ import annotations`: kfp reads the harness pipeline's annotations.
import ast
import inspect
import os
import textwrap

import pytest
import yaml
from kfp import compiler, dsl

from components import images
from components.evaluate import evaluate_model
from components.export import export_model
from components.hour import resolve_hour
from components.lib import registry
from components.register import register_model, resolve_production
from components.stats import compute_stats
from components.train import train_model
from components.transform import transform_examples

ALL = [
    compute_stats,
    transform_examples,
    train_model,
    export_model,
    evaluate_model,
    register_model,
    resolve_production,
    resolve_hour,
]
MAX_BODY_LINES = 15
# kfp.local warns that our images' names do not say "python"; they hold Python 3.11.
LOCAL_IMAGE_WARNING = "ignore:You may be attemping:RuntimeWarning"


@pytest.mark.parametrize("component", ALL, ids=lambda c: c.name)
def test_component_compiles_with_our_image_and_without_pip(component, tmp_path) -> None:
    out = tmp_path / "component.yaml"
    compiler.Compiler().compile(component, str(out))
    spec = yaml.safe_load(out.read_text())
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] in (images.TRAINER_IMAGE, images.BEAM_IMAGE)
    assert "pip install" not in " ".join(executor["container"]["command"])


@pytest.mark.parametrize("component", ALL, ids=lambda c: c.name)
def test_component_body_is_thin(component) -> None:
    source = textwrap.dedent(inspect.getsource(component.python_func))
    (func,) = ast.parse(source).body
    body = (
        func.body[1:] if isinstance(func.body[0], ast.Expr) else func.body
    )  # docstring
    assert isinstance(func.body[0], ast.Expr), f"{component.name} needs a docstring"
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= MAX_BODY_LINES, f"{component.name} body has {lines} lines"
    assert not any(isinstance(n, ast.For | ast.While) for n in body), (
        "no loops in bodies"
    )


@pytest.fixture
def local_runner(tmp_path):
    import kfp.local

    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "pipeline_root"),
    )
    yield
    kfp.local.config.LocalExecutionConfig.instance = None


@pytest.mark.filterwarnings(LOCAL_IMAGE_WARNING)
def test_resolve_hour_runs_locally(local_runner) -> None:
    manual = resolve_hour(hour="2026-01-01T05", hour_lag=0).outputs
    assert (manual["hour"], manual["eval_hour"]) == ("2026-01-01T05", "2026-01-01T06")
    scheduled = resolve_hour(hour="2026-03-01T01:05:00Z", hour_lag=2).outputs
    assert scheduled["hour"] == "2026-02-28T23"
    assert scheduled["eval_hour"] == "2026-03-01T00"


@dsl.pipeline
def _register_hour(registry_uri: str, model_uri: str, hour: str) -> int:
    """A harness: imports a model directory as the artifacts register_model needs."""
    model = dsl.importer(
        artifact_uri=model_uri,
        artifact_class=dsl.Model,
        metadata={"size_bytes": 10, "compression_ratio": 4.0},
    )
    metrics = dsl.importer(
        artifact_uri=model_uri, artifact_class=dsl.Metrics, metadata={"auc": 0.75}
    )
    stats = dsl.importer(
        artifact_uri=model_uri,
        artifact_class=dsl.Dataset,
        metadata={"version": "dict-7"},
    )
    the_hour = resolve_hour(hour=hour, hour_lag=0).outputs["hour"]
    return register_model(
        registry_uri=registry_uri,
        serving_model=model.output,
        checkpoint=model.output,
        metrics=metrics.output,
        stats=stats.output,
        hour=the_hour,
        pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        vertex_project="",  # not configured: nothing goes to Vertex AI
        vertex_region="us-central1",
    ).output


@pytest.mark.filterwarnings(LOCAL_IMAGE_WARNING)
def test_register_and_resolve_production_run_locally(local_runner, tmp_path) -> None:
    model_dir = tmp_path / "model"
    (model_dir / "variables").mkdir(parents=True)
    (model_dir / "saved_model.pb").write_text("graph")
    (model_dir / "variables" / "variables.index").write_text("index")
    reg = str(tmp_path / "registry")

    assert resolve_production(registry_uri=reg).outputs["version"] == 0
    first = _register_hour(
        registry_uri=reg, model_uri=str(model_dir), hour="2026-01-01T05"
    )
    again = _register_hour(
        registry_uri=reg, model_uri=str(model_dir), hour="2026-01-01T05"
    )
    other = _register_hour(
        registry_uri=reg, model_uri=str(model_dir), hour="2026-01-01T06"
    )
    assert (first.output, again.output, other.output) == (1, 1, 2)

    prod = registry.get_production(reg)
    assert prod.version == 2
    assert prod.parent_version == 1
    assert prod.metadata["hour"] == "2026-01-01T06"
    assert prod.metadata["metrics"] == {"auc": 0.75}
    assert prod.metadata["compression_ratio"] == 4.0
    assert prod.metadata["dictionary_version"] == "dict-7"
    assert prod.metadata["pipeline_run_id"]
    resolved = resolve_production(registry_uri=reg)
    assert resolved.outputs["version"] == 2
    copied = resolved.outputs["serving_model"].path
    assert open(os.path.join(copied, "saved_model.pb")).read() == "graph"
    assert os.path.isfile(
        os.path.join(
            resolved.outputs["checkpoint"].path, "variables", "variables.index"
        )
    )
