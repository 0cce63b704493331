"""hourly_training: the KFP pipeline. It only wires components; logic is in libraries.

    resolve_hour -> compute_stats -> transform_examples -> train_model -> export_model
    resolve_production ---------------------------------^ (warm start)      |
         |              (baseline; scored on the hour after training)      v
         `--------------------------------------------------------> evaluate_model
                          if blessed: register_model (moves "production") <-'

Compile with ``python -m pipeline compile --out specs/hourly_training.yaml``.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Model

from components import images
from components.evaluate import evaluate_model
from components.export import export_model
from components.hour import resolve_hour
from components.register import register_model, resolve_production
from components.stats import compute_stats
from components.train import train_model
from components.transform import transform_examples


# What a run hands back (kfp.local returns it; pipeline/local.py reads it).
class HourlyOutputs(NamedTuple):
    stats: Dataset
    serving_model: Model
    metrics: Metrics
    blessed: bool


PIPELINE_NAME = "hourly-training"
DEFAULT_FEATURE_SPEC = "specs/features/synthetic.yaml"
# trainer.config.TrainerConfig defaults fill in the rest. One key only: kfp prints dict
# defaults into the spec header in protobuf map order, which varies between processes.
DEFAULT_TRAINER_CONFIG = {"name": "hourly"}


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Hourly continuous training of a compressed recommender with a "
    "blessing gate before the model registry.",
)
def hourly_training(
    hour: str,
    logs_root: str,
    registry_uri: str,
    feature_spec: str = DEFAULT_FEATURE_SPEC,
    previous_stats: str = "",
    trainer_config: dict = DEFAULT_TRAINER_CONFIG,
    blessing_metric: str = "auc",
    min_value: float = 0.5,
    max_regression: float = 0.005,
    hour_lag: int = 0,
    accelerator_type: str = images.ACCELERATOR_TYPE,
    accelerator_limit: int = images.ACCELERATOR_LIMIT,
    vertex_project: str = "",
    vertex_region: str = "us-central1",
) -> HourlyOutputs:
    """Trains on one hour, scores on the next, registers the model if it is blessed.

    Args:
        hour: ``YYYY-MM-DDTHH``, a KFP ``[[ScheduledTime...]]`` macro, or "" for the
            current hour (see components/hour.py).
        logs_root: Root of the hourly event partitions.
        registry_uri: The model registry directory.
        feature_spec: Feature spec YAML path (inside the images).
        previous_stats: The previous hour's stats artifact (continuous mode), or "".
        trainer_config: ``trainer.config.TrainerConfig`` as a dict.
        blessing_metric: The metric that decides blessing (higher is better).
        min_value: The candidate's metric must reach this value.
        max_regression: And may trail production's by at most this much.
        hour_lag: Hours to subtract from ``hour`` (2 for scheduled runs, so that the
            evaluation hour is complete).
        accelerator_type: The training task's accelerator; "" for none.
        accelerator_limit: Accelerators for training; 0 for none.
        vertex_project: If set, blessed models are also registered in Vertex AI Model
            Registry (``vertex.model_registry`` in the pipeline config).
        vertex_region: The Vertex AI region.

    Returns:
        The hour's stats artifact, serving export, evaluation metrics and blessing.
    """
    hours = resolve_hour(hour=hour, hour_lag=hour_lag)
    the_hour = hours.outputs["hour"]
    stats = compute_stats(
        logs_root=logs_root,
        hour=the_hour,
        feature_spec=feature_spec,
        previous_stats=previous_stats,
    ).outputs["stats"]
    examples = transform_examples(
        logs_root=logs_root, hour=the_hour, feature_spec=feature_spec, stats=stats
    ).outputs["examples"]
    production = resolve_production(registry_uri=registry_uri)
    trained = train_model(
        examples=examples,
        stats=stats,
        trainer_config=trainer_config,
        warm_start=production.outputs["checkpoint"],
        warm_start_version=production.outputs["version"],
    )
    trained.set_accelerator_type(accelerator_type).set_accelerator_limit(
        accelerator_limit
    )
    serving = export_model(model=trained.outputs["model"], stats=stats).outputs[
        "serving_model"
    ]
    evaluation = evaluate_model(
        model=serving,
        logs_root=logs_root,
        eval_hour=hours.outputs["eval_hour"],
        production_model=production.outputs["serving_model"],
        production_version=production.outputs["version"],
        metric=blessing_metric,
        min_value=min_value,
        max_regression=max_regression,
    )
    with dsl.If(evaluation.outputs["Output"] == True, name="blessed"):  # noqa: E712
        register_model(
            registry_uri=registry_uri,
            serving_model=serving,
            checkpoint=trained.outputs["model"],
            metrics=evaluation.outputs["metrics"],
            stats=stats,
            hour=the_hour,
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            vertex_project=vertex_project,
            vertex_region=vertex_region,
        )
    return HourlyOutputs(
        stats=stats,
        serving_model=serving,
        metrics=evaluation.outputs["metrics"],
        blessed=evaluation.outputs["Output"],
    )
