"""train_model: trains (warm-started) the configured model (trainer.task.run)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import images


@dsl.component(base_image=images.TRAINER_IMAGE, install_kfp_package=False)
def train_model(
    examples: Input[Dataset],
    stats: Input[Dataset],
    trainer_config: dict,
    warm_start: Input[Model],
    warm_start_version: int,
    model: Output[Model],
) -> None:
    """Trains on the hour's examples, warm-starting from the production checkpoint.

    Args:
        examples: Transformed TFRecords of the hour.
        stats: The stats artifact the examples were transformed with.
        trainer_config: A ``trainer.config.TrainerConfig`` as a dict.
        warm_start: The production model's trainer checkpoint (empty if none).
        warm_start_version: Its registry version; 0 = no production model, cold start.
        model: The trainer output directory (model.keras, checkpoints, metadata).
    """
    from components.lib import params
    from trainer import config as config_lib
    from trainer import task

    config = config_lib.TrainerConfig.from_dict(params.from_struct(trainer_config))
    previous = warm_start.path if warm_start_version else None
    meta = task.run(config, examples.path, stats.path, model.path, warm_start=previous)
    model.metadata["model_name"] = config.model.name
    model.metadata["steps"] = meta.get("steps", 0)
    model.metadata["warm_start_version"] = warm_start_version
