"""transform_examples: events -> TFRecords + transform graph (trainer.transform)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import images


@dsl.component(base_image=images.BEAM_IMAGE, install_kfp_package=False)
def transform_examples(
    logs_root: str,
    hour: str,
    feature_spec: str,
    stats: Input[Dataset],
    examples: Output[Dataset],
) -> None:
    """Runs trainer.preprocessing over ``hour`` with the stats' dictionaries.

    Args:
        logs_root: Root of the hourly event partitions.
        hour: The hour, ``YYYY-MM-DDTHH``.
        feature_spec: Path of the feature spec YAML.
        stats: The hour's stats artifact (dictionaries, tiers, boundaries).
        examples: TFRecords plus the transform graph.
    """
    from trainer import transform

    summary = transform.transform_hour(
        logs_root, hour, feature_spec, stats.path, examples.path
    )
    examples.metadata["hour"] = hour
    examples.metadata["examples"] = summary.get("examples")
