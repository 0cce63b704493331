"""Pipeline-level configuration: where the pipeline runs and what it reads and writes.

``specs/configs/pipeline.yaml`` -> :func:`load_config` -> :class:`PipelineConfig`, one
dataclass per concern. Every field is validated and errors name the file and the
field (``pipeline.yaml: blessing.max_regression: must be >= 0, got -1``). Model
hyperparameters are not here: they live in ``specs/experiments/*.yaml``, which
``data.trainer_config`` names, and travel to the pipeline as one dict parameter.

Example:
    >>> cfg = PipelineConfig.from_dict({
    ...     "data": {"logs_root": "gs://b/logs", "registry_uri": "gs://b/registry",
    ...              "feature_spec": "specs/features/synthetic.yaml"},
    ... })
    >>> cfg.schedule.cron
    '0 0 * * * *'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from components import images
from trainer.contracts import typed_config

KFP_HOURLY_CRON = (
    "0 0 * * * *"  # KFP: seconds minutes hours day-of-month month day-of-week
)


BLESSING_METRICS = ("auc", "rce")  # what trainer.evaluation.blessing can gate on


class PipelineConfigError(ValueError):
    """The pipeline config failed validation; the message names the field."""


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise PipelineConfigError(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class KfpConfig:
    """A Kubeflow Pipelines deployment (``host`` = its API endpoint)."""

    host: str = ""
    experiment: str = "compactrec-hourly"
    pipeline_root: str = ""

    def __post_init__(self) -> None:
        _require(
            not self.host or self.host.startswith(("http://", "https://")),
            "host",
            f"must start with http:// or https://, got {self.host!r}",
        )
        _require(bool(self.experiment.strip()), "experiment", "must not be empty")


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    """Vertex AI Pipelines: project, region, gs:// pipeline root, runner account."""

    project: str = ""
    region: str = "us-central1"
    pipeline_root: str = ""
    service_account: str = ""
    experiment: str = "compactrec-hourly"
    model_registry: bool = False  # also register blessed models in Vertex AI

    def __post_init__(self) -> None:
        _require(
            not self.model_registry or bool(self.project),
            "model_registry",
            "needs vertex.project to be set",
        )
        _require(
            not self.pipeline_root or self.pipeline_root.startswith("gs://"),
            "pipeline_root",
            f"must be a gs:// URI, got {self.pipeline_root!r}",
        )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Inputs and outputs of every run."""

    logs_root: str
    registry_uri: str
    feature_spec: str
    trainer_config: str = ""  # specs/experiments/NAME.yaml; "" = trainer defaults
    budget: str = ""  # serving size for `python -m pipeline replan` (64MB, 15%)

    def __post_init__(self) -> None:
        _require(bool(self.logs_root), "logs_root", "required")
        _require(bool(self.registry_uri), "registry_uri", "required")
        _require(bool(self.feature_spec), "feature_spec", "must not be empty")
        if self.budget:  # trainer.planning is pure Python (no TF)
            from trainer.planning.planner import PlanError, parse_budget

            try:
                parse_budget(self.budget)
            except PlanError as e:
                raise PipelineConfigError(f"budget: {e}") from None


@dataclasses.dataclass(frozen=True)
class BlessingConfig:
    """When a new model may replace production.

    Attributes:
        metric: The deciding metric, ``auc`` or ``rce`` (higher is better).
        min_value: The metric must reach at least this value.
        max_regression: And may trail production by at most this much (absolute).
    """

    metric: str = "auc"
    min_value: float = 0.5
    max_regression: float = 0.005

    def __post_init__(self) -> None:
        _require(
            self.metric in BLESSING_METRICS,
            "metric",
            f"must be one of {list(BLESSING_METRICS)}, got {self.metric!r}",
        )
        _require(
            self.max_regression >= 0,
            "max_regression",
            f"must be >= 0, got {self.max_regression}",
        )


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """The training task's accelerator (ignored by local runs)."""

    use_gpu: bool = True
    type: str = images.ACCELERATOR_TYPE
    limit: int = images.ACCELERATOR_LIMIT

    def __post_init__(self) -> None:
        _require(not self.use_gpu or bool(self.type), "type", "required when use_gpu")
        _require(
            not self.use_gpu or self.limit >= 1,
            "limit",
            f"must be >= 1 when use_gpu, got {self.limit}",
        )


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The recurring run: KFP cron (6 fields, with seconds), one run at a time."""

    name: str = "compactrec-hourly"
    cron: str = KFP_HOURLY_CRON
    max_concurrency: int = 1
    no_catchup: bool = True

    def __post_init__(self) -> None:
        _require(bool(self.name.strip()), "name", "must not be empty")
        _require(
            len(self.cron.split()) == 6,
            "cron",
            f"KFP cron needs 6 fields (seconds first), got {self.cron!r}",
        )
        _require(
            1 <= self.max_concurrency <= 10,
            "max_concurrency",
            f"must be in [1, 10], got {self.max_concurrency}",
        )


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything ``submit`` and ``schedule`` need besides the hour."""

    data: DataConfig
    kfp: KfpConfig = dataclasses.field(default_factory=KfpConfig)
    vertex: VertexConfig = dataclasses.field(default_factory=VertexConfig)
    blessing: BlessingConfig = dataclasses.field(default_factory=BlessingConfig)
    accelerator: AcceleratorConfig = dataclasses.field(
        default_factory=AcceleratorConfig
    )
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], source: str = "<dict>"
    ) -> PipelineConfig:
        """Validates a parsed mapping; raises :class:`PipelineConfigError`."""
        return typed_config.build(cls, raw, source=source, error=PipelineConfigError)

    def parameters(
        self, hour: str, trainer_config: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The ``hourly_training`` arguments for ``hour``.

        The feature spec has one source, ``data.feature_spec``; it is copied into the
        trainer config so that the stats, the transform and the trainer agree.
        """
        acc = self.accelerator
        return {
            "hour": hour,
            "logs_root": self.data.logs_root,
            "registry_uri": self.data.registry_uri,
            "feature_spec": self.data.feature_spec,
            "trainer_config": {
                **trainer_config,
                "feature_spec": self.data.feature_spec,
            },
            "blessing_metric": self.blessing.metric,
            "min_value": self.blessing.min_value,
            "max_regression": self.blessing.max_regression,
            "accelerator_type": acc.type if acc.use_gpu else "",
            "accelerator_limit": acc.limit if acc.use_gpu else 0,
            "vertex_project": self.vertex.project if self.vertex.model_registry else "",
            "vertex_region": self.vertex.region,
        }


def load_config(path: str) -> PipelineConfig:
    """Reads and validates a pipeline config YAML.

    Raises:
        PipelineConfigError: naming ``path`` and the field.
    """
    raw = typed_config.load_yaml(path, "pipeline config", PipelineConfigError)
    return PipelineConfig.from_dict(raw, source=path)
