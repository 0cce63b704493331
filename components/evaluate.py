"""evaluate_model: offline metrics and the blessing decision (trainer.evaluation.evaluate)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components import images


@dsl.component(base_image=images.TRAINER_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    logs_root: str,
    eval_hour: str,
    production_model: Input[Model],
    production_version: int,
    metric: str,
    min_value: float,
    max_regression: float,
    metrics: Output[Metrics],
    evaluation: Output[Artifact],
    report: Output[HTML],
) -> bool:
    """Scores the candidate and production exports on ``eval_hour``; blesses or not.

    Args:
        model: The candidate serving export.
        logs_root: Root of the hourly event partitions.
        eval_hour: The hour to score on (the one after the training hour).
        production_model: The production export (empty when production_version is 0).
        production_version: Its registry version; 0 = none, only ``min_value`` applies.
        metric: The deciding metric, ``auc`` or ``rce`` (higher is better).
        min_value: The candidate's metric must reach this value.
        max_regression: And may trail production's by at most this much.
        metrics: Overall and per-slice metrics, shown by the KFP UI.
        evaluation: metrics.json, blessing.json, report.html/.md and plots.
        report: The HTML report, for the KFP UI's viewer.

    Returns:
        True if the candidate may replace production (blessed). A single return value
        (output ``Output``), because kfp.local resolves only that in ``dsl.If``.
    """
    import shutil

    from trainer.evaluation import evaluate as evaluation_lib

    thresholds = dict(metric=metric, min_value=min_value, max_regression=max_regression)
    baseline = production_model.path if production_version else None
    result = evaluation_lib.evaluate(
        model.path, logs_root, baseline, thresholds, evaluation.path, hours=eval_hour
    )
    metrics.metadata.update(result["metrics"])  # what Metrics.log_metric does, per key
    evaluation.metadata["reasons"] = result["reasons"]
    shutil.copyfile(result["report_path"], report.path)
    return bool(result["blessed"])
