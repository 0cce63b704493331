"""pipeline.config: the committed YAML loads; bad fields are named in errors."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from components import images
from pipeline.config import PipelineConfig, PipelineConfigError, load_config

REPO = pathlib.Path(__file__).resolve().parents[2]
MINIMAL = {
    "data": {
        "logs_root": "gs://b/logs",
        "registry_uri": "gs://b/reg",
        "feature_spec": "specs/features/synthetic.yaml",
    }
}


def test_committed_config_loads_with_accelerator_defaults_from_images() -> None:
    cfg = load_config(str(REPO / "specs" / "configs" / "pipeline.yaml"))
    assert cfg.accelerator.use_gpu is True
    assert (cfg.accelerator.type, cfg.accelerator.limit) == (
        images.ACCELERATOR_TYPE,
        images.ACCELERATOR_LIMIT,
    )
    assert len(cfg.schedule.cron.split()) == 6
    assert cfg.schedule.max_concurrency == 1 and cfg.schedule.no_catchup is True
    assert (REPO / cfg.data.feature_spec).is_file()


def test_parameters_share_the_feature_spec_and_map_the_accelerator() -> None:
    cfg = PipelineConfig.from_dict(MINIMAL)
    params = cfg.parameters(
        "2026-01-01T05", {"name": "x", "feature_spec": "other.yaml"}
    )
    assert params["hour"] == "2026-01-01T05"
    assert params["trainer_config"] == {
        "name": "x",
        "feature_spec": params["feature_spec"],
    }
    assert params["accelerator_type"] == images.ACCELERATOR_TYPE
    assert params["accelerator_limit"] == images.ACCELERATOR_LIMIT
    cpu = PipelineConfig.from_dict({**MINIMAL, "accelerator": {"use_gpu": False}})
    params = cpu.parameters("2026-01-01T05", {"name": "x"})
    assert (params["accelerator_type"], params["accelerator_limit"]) == ("", 0)
    assert (params["blessing_metric"], params["min_value"]) == ("auc", 0.5)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"data": {"logs_root": "x", "feature_spec": "f"}},
            r"data\.registry_uri: required",
        ),
        (
            {"blessing": {"max_regression": -1}},
            r"blessing\.max_regression: must be >= 0",
        ),
        ({"blessing": {"min_value": "high"}}, r"blessing\.min_value: must be a number"),
        ({"blessing": {"metric": "ndcg"}}, r"blessing\.metric: must be one of"),
        (
            {"schedule": {"cron": "0 * * * *"}},
            r"schedule\.cron: KFP cron needs 6 fields",
        ),
        (
            {"schedule": {"max_concurrency": 0}},
            r"schedule\.max_concurrency: must be in",
        ),
        ({"kfp": {"host": "localhost:8080"}}, r"kfp\.host: must start with http"),
        ({"kfp": {"hots": "http://x"}}, r"kfp\.hots: unknown field"),
        (
            {"accelerator": {"limit": 0}},
            r"accelerator\.limit: must be >= 1 when use_gpu",
        ),
        (
            {"accelerator": {"use_gpu": "yes"}},
            r"accelerator\.use_gpu: must be true or false",
        ),
        (
            {"vertex": {"pipeline_root": "/tmp/x"}},
            r"vertex\.pipeline_root: must be a gs://",
        ),
    ],
)
def test_errors_name_the_file_and_field(tmp_path, patch, message) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, **patch}))
    with pytest.raises(PipelineConfigError, match=rf"^{path}: {message}"):
        load_config(str(path))


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(PipelineConfigError, match="not found"):
        load_config(str(tmp_path / "absent.yaml"))
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(PipelineConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(PipelineConfigError, match="must be a mapping"):
        load_config(str(tmp_path / "list.yaml"))
    (tmp_path / "nodata.yaml").write_text("kfp: {}\n")
    with pytest.raises(PipelineConfigError, match="data: required"):
        load_config(str(tmp_path / "nodata.yaml"))


def test_vertex_model_registry_is_passed_only_when_enabled(tmp_path):
    import yaml

    from pipeline.config import PipelineConfigError, load_config

    base = yaml.safe_load((REPO / "specs" / "configs" / "pipeline.yaml").read_text())
    cfg = load_config(str(REPO / "specs" / "configs" / "pipeline.yaml"))
    params = cfg.parameters("2026-01-01T00", {"name": "x"})
    assert params["vertex_project"] == ""  # default: local/gs:// registry only
    base["vertex"].update(project="my-proj", model_registry=True)
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(base))
    assert (
        load_config(str(p)).parameters("2026-01-01T00", {})["vertex_project"]
        == "my-proj"
    )
    base["vertex"]["project"] = ""
    p.write_text(yaml.safe_dump(base))
    with pytest.raises(PipelineConfigError, match="model_registry"):
        load_config(str(p))


def test_vertex_mirror_is_a_no_op_without_a_project():
    from components.lib import registry, vertex_registry

    v = registry.ModelVersion(1, "gs://b/m", None, "2026-01-01T00", None, "t", {})
    assert vertex_registry.mirror(v, "", "us-central1") is None


def test_duplicate_keys_directories_and_bytes_name_the_file(tmp_path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump(MINIMAL) + "kfp: {}\nkfp: {host: http://x}\n")
    with pytest.raises(PipelineConfigError, match=rf"^{dup}: .*duplicate key 'kfp'"):
        load_config(str(dup))
    with pytest.raises(PipelineConfigError, match=rf"^{tmp_path}: is a directory"):
        load_config(str(tmp_path))
    raw = tmp_path / "raw.yaml"
    raw.write_bytes(b"data: {logs_root: \xfe}\n")
    with pytest.raises(PipelineConfigError, match=rf"^{raw}: not UTF-8"):
        load_config(str(raw))
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**MINIMAL, "shedule": {}}))
    with pytest.raises(
        PipelineConfigError, match=r"shedule: unknown field \(did you mean 'schedule'"
    ):
        load_config(str(typo))
