"""The registry components: resolve_production and register_model.

Both call components.lib.registry (no kfp there). They share this file because they are
the two halves of one contract: what register_model writes, resolve_production reads.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import images


@dsl.component(base_image=images.TRAINER_IMAGE, install_kfp_package=False)
def resolve_production(
    registry_uri: str,
    serving_model: Output[Model],
    checkpoint: Output[Model],
) -> NamedTuple("Production", [("version", int)]):
    """Copies the current production model out of the registry.

    Args:
        registry_uri: The model registry directory (local or gs://).
        serving_model: The production serving model (empty if there is none).
        checkpoint: Its trainer checkpoint, for warm starts (empty if none).

    Returns:
        version: The production version number, 0 when there is none yet.
    """
    from components.lib import registry

    found = registry.fetch_production(registry_uri, serving_model.path, checkpoint.path)
    version = found.version if found else 0
    serving_model.metadata["version"] = version
    checkpoint.metadata["version"] = version
    return (version,)


@dsl.component(base_image=images.TRAINER_IMAGE, install_kfp_package=False)
def register_model(
    registry_uri: str,
    serving_model: Input[Model],
    checkpoint: Input[Model],
    metrics: Input[Metrics],
    stats: Input[Dataset],
    hour: str,
    pipeline_run_id: str,
    vertex_project: str,
    vertex_region: str,
) -> int:
    """Registers the blessed model and advances the ``production`` alias to it.

    Idempotent per hour: re-running the pipeline for an hour returns the same version.
    The alias moves only forward in hour order: a late retry of an older hour
    registers its version but leaves ``production`` on the newer hour.

    Args:
        registry_uri: The model registry directory.
        serving_model: The exported serving model (size and compression in metadata).
        checkpoint: The trainer output, kept for the next hour's warm start.
        metrics: The evaluation metrics.
        stats: The stats artifact (its manifest version = the dictionary version).
        hour: The trained hour, the idempotency key and lineage.
        pipeline_run_id: The KFP run that produced the model.
        vertex_project: If set, also register the version in Vertex AI Model Registry.
        vertex_region: Its region.

    Returns:
        The registered version number.
    """
    from components.lib import registry, vertex_registry

    metadata = {
        **serving_model.metadata,  # size_bytes, serving_bits, compression_ratio
        "metrics": dict(metrics.metadata),
        "dictionary_version": stats.metadata.get("version"),
        "hour": hour,
        "pipeline_run_id": pipeline_run_id,
    }
    version = registry.register(
        registry_uri, serving_model.path, metadata, idempotency_key=hour,
        order_key=hour, checkpoint_uri=checkpoint.path,
    )  # fmt: skip
    vertex_registry.mirror(version, vertex_project, vertex_region, registry_uri)
    return version.version
