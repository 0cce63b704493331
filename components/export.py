"""export_model: the raw-feature serving SavedModel (trainer.serving.export)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import images


@dsl.component(base_image=images.TRAINER_IMAGE, install_kfp_package=False)
def export_model(
    model: Input[Model],
    stats: Input[Dataset],
    serving_model: Output[Model],
) -> None:
    """Exports preprocessing + model as one SavedModel that takes raw ids.

    Args:
        model: The trainer output directory.
        stats: The stats artifact (dictionaries used inside the serving signature).
        serving_model: The exported SavedModel directory.
    """
    from trainer.serving import export

    info = export.export_serving_model(model.path, stats.path, serving_model.path)
    serving_model.metadata["size_bytes"] = info["size_bytes"]
    serving_model.metadata["serving_bits"] = info["serving_bits"]
    serving_model.metadata["compression_ratio"] = info["compression_ratio"]
