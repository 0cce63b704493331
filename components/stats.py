"""compute_stats: the hour's Beam feature-stats artifact (beam_jobs.feature_stats)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import images


@dsl.component(base_image=images.BEAM_IMAGE, install_kfp_package=False)
def compute_stats(
    logs_root: str,
    hour: str,
    feature_spec: str,
    previous_stats: str,
    stats: Output[Dataset],
) -> None:
    """Counts values, builds dictionaries/tiers/boundaries for ``hour``.

    Args:
        logs_root: Root of the hourly event partitions (local or gs://).
        hour: The hour, ``YYYY-MM-DDTHH``.
        feature_spec: Path of the feature spec YAML.
        previous_stats: The previous stats artifact (continuous mode), or "".
        stats: The stats artifact directory (see docs/ARCHITECTURE.md).
    """
    from beam_jobs import feature_stats

    manifest = feature_stats.compute_stats(
        logs_root, hour, feature_spec, stats.path, previous=previous_stats or None
    )
    stats.metadata["version"] = manifest.get("version")
    stats.metadata["source_hours"] = manifest.get("source_hours")
