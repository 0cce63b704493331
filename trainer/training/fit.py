"""Trains a ranking backbone (GMF, NeuMF, SASRec) with the one loop.

:func:`fit_ranking` is what ``python -m trainer.task`` and the reproductions'
:func:`trainer.evaluation.ranking.train_and_evaluate` share: the model from the model
factory (:func:`trainer.models.factory.build_ranking_model`), the optimizer from the
optimizer factory, the batches from :func:`trainer.data.samples.ranking_batches` and
the loss from :mod:`trainer.training.losses`, all handed to
:func:`trainer.training.loop.train` (checkpoints, resume, NaN guard, progress,
distribution strategy).

Example:
    >>> model, result = fit_ranking(cfg, task, "runs/gmf")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainer.config import TrainerConfig
from trainer.data.samples import RankingTask, ranking_batches
from trainer.models import factory
from trainer.training import loop, losses
from trainer.training.optimizers import make_optimizer


def fit_ranking(
    cfg: TrainerConfig,
    task: RankingTask,
    out_dir: str,
    strategy: Any = None,
    progress: Callable[[str], None] | None = None,
    on_epoch: Callable[[Any, loop.EpochEnd], None] | None = None,
    jit_compile: bool | None = None,
) -> tuple[Any, loop.TrainResult]:
    """Builds and trains ``cfg``'s backbone on ``task``; resumes from ``out_dir``.

    Args:
        cfg: Model (gmf, neumf, sasrec), embedding, optimizer and training settings.
        task: The frequency-renumbered data (:func:`trainer.data.samples.prepare_task`).
        out_dir: Checkpoints and TensorBoard logs (a run killed mid-way resumes here).
        strategy: Distribution strategy (default: the current one).
        progress: Receives the loop's progress lines.
        on_epoch: Called with ``(model, EpochEnd)`` after every epoch (per-epoch
            evaluation).
        jit_compile: XLA-compile the step. ``None``: only for tables without a
            codebook (XLA made the DPQ/MGQE argmin slower on CPU, the others ~4x
            faster).

    Returns:
        ``(model, TrainResult)``.

    Seeds Python, NumPy and TensorFlow with ``keras.utils.set_random_seed`` before the
    model is built; negatives come from ``np.random.default_rng(seed)``.
    """
    import keras
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(cfg.training.seed)
    with strategy.scope():
        model = factory.build_ranking_model(cfg.model, task)
        optimizer = make_optimizer(cfg.optimizer)
    if jit_compile is None:
        jit_compile = cfg.model.embedding.kind not in ("dpq", "mgqe")
    batches, steps_per_epoch = ranking_batches(cfg, task)
    result = loop.train(
        model,
        batches,
        [(optimizer, lambda: model.trainable_variables)],
        cfg.training,
        out_dir,
        steps_per_epoch * cfg.training.epochs,
        progress=progress,
        strategy=strategy,
        loss_fn=losses.loss_for(cfg.model.name),
        steps_per_epoch=steps_per_epoch,
        on_epoch=(lambda end: on_epoch(model, end)) if on_epoch else None,
        jit_compile=jit_compile,
    )
    return model, result
