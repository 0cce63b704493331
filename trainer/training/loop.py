"""THE training loop of every model: our own ``tf.function`` step, checkpoints, resume.

Keras 3 ``model.fit`` fails under MultiWorkerMirroredStrategy on TF 2.21 and its
optimizers update whole embedding tables every step, so the loop is ours, and
wide-and-deep, GMF, NeuMF and SASRec all train through :func:`train`:

* one gradient tape over the model's loss (:mod:`trainer.training.losses`: pointwise
  BCE for wide-and-deep / GMF / NeuMF, SASRec's sequence loss) plus the layers'
  regularisers (``model.losses``: the DPQ/MGQE centroid terms);
* one optimizer per variable group (wide-and-deep: FTRL on the wide part, Adagrad/Adam
  on the deep part; a ranking backbone: one), from the one factory
  (:func:`trainer.training.optimizers.make_optimizer`);
* a checkpoint every ``checkpoint_every`` steps with the step counter (and dropout's
  seed states); a run killed mid-way resumes from the latest checkpoint and skips
  exactly the batches it already trained on, so it ends with the same weights as an
  uninterrupted run;
* a non-finite loss stops training with the step and batch that caused it, before the
  update is applied;
* progress lines and TensorBoard scalars every ``log_every`` steps, and an epoch hook
  (``on_epoch``) that the ranking reproductions evaluate from.

The batch source is the caller's: :func:`trainer.data.examples.make_dataset` for
wide-and-deep, :func:`trainer.data.samples.ranking_batches` for the ranking backbones
(assembled by :func:`trainer.training.fit.fit_ranking`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from trainer.config import TrainingConfig
from trainer.training import losses
from trainer.training import optimizers as sparse_optimizers

logger = logging.getLogger(__name__)

LossFn = Callable[[Any, Any], tf.Tensor]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and batch."""


@dataclasses.dataclass
class TrainResult:
    steps: int
    resumed_from: int
    final_loss: float
    examples: int
    seconds: float


def make_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored from TF_CONFIG, Mirrored on several GPUs, else the default."""
    import json

    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_checkpoint(
    model: Any, optimizers: Sequence[Any], **extra: Any
) -> tf.train.Checkpoint:
    """A checkpoint of every model weight (keyed by its Keras path) and the optimizers.

    ``tf.train.Checkpoint(model=model)`` is not enough: Keras 3 keeps sub-layers held in
    dicts and lists (``WideAndDeep.deep_embeddings``, ``.mlp``) out of TensorFlow's object
    graph, so their weights would silently not be saved or restored.

    Args:
        model: A built Keras model.
        optimizers: Saved as ``optimizer_0``, ``optimizer_1``, ...
        **extra: Further trackables (e.g. ``step``).

    Returns:
        The checkpoint object (also used by warm start to read the slots).
    """
    weights = {v.path: sparse_optimizers.unwrap_variable(v) for v in model.weights}
    # Dropout's seed-generator states (not weights) make a resumed run draw the masks
    # an uninterrupted one would; their paths carry a process-wide counter
    # (``seed_generator_14``), so they are keyed by their order in the model.
    in_weights = {id(v) for v in model.weights}
    states = [v for v in model.variables if id(v) not in in_weights]
    for i, v in enumerate(states):
        weights[f"rng_state/{i}"] = sparse_optimizers.unwrap_variable(v)
    return tf.train.Checkpoint(
        model_weights=weights,
        **{f"optimizer_{i}": opt for i, opt in enumerate(optimizers)},
        **extra,
    )


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """What the loop hands ``on_epoch`` after each epoch (and after the last step).

    Attributes:
        epoch: 1-based epoch number.
        loss: Mean task loss over this epoch's steps trained in this call.
        reg_loss: Mean regulariser (``model.losses``) over the same steps.
        steps: Steps of this epoch trained in this call.
        seconds: Wall time of those steps.
        last: Whether training ends here (all steps or ``max_steps`` done).
    """

    epoch: int
    loss: float
    reg_loss: float
    steps: int
    seconds: float
    last: bool


def train(
    model: Any,
    dataset: tf.data.Dataset,
    groups: Sequence[
        tuple[sparse_optimizers.RowSparseOptimizer, Callable[[], list[Any]]]
    ],
    cfg: TrainingConfig,
    out_dir: str,
    total_steps: int,
    progress: Callable[[str], None] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    loss_fn: LossFn = losses.pointwise_bce,
    steps_per_epoch: int | None = None,
    on_epoch: Callable[[EpochEnd], None] | None = None,
    jit_compile: bool = False,
) -> TrainResult:
    """Trains ``model`` on ``dataset`` for up to ``total_steps`` steps, resumably.

    The one loop of every model: wide-and-deep and the ranking backbones differ only in
    ``loss_fn`` (:mod:`trainer.training.losses`) and the batches of ``dataset``.

    Args:
        model: A built Keras model.
        dataset: Batches in a deterministic order (``(features, labels)`` for the
            pointwise loss); on resume the first ``step`` batches are skipped.
        groups: ``(optimizer, variables_fn)`` pairs; every trainable variable must be in
            exactly one group.
        cfg: Loop settings (checkpoint_every, log_every, max_steps).
        out_dir: Checkpoints go to ``out_dir/checkpoints``, TensorBoard logs to
            ``out_dir/tensorboard``.
        total_steps: Steps in the dataset (for progress and the final checkpoint).
        progress: Called with each progress line (the CLI prints them).
        strategy: The strategy whose scope created ``model`` and the optimizers
            (default: the current one). With several replicas (MultiWorkerMirrored)
            each step runs through ``strategy.run``: the dataset's batches are global
            batches split across the replicas, gradients are summed across replicas,
            and a non-chief worker checkpoints under ``checkpoints/worker-<i>``.
        loss_fn: ``loss_fn(model, batch)`` -> per-example losses ``(B,)`` (averaged
            over the global batch) or an already averaged scalar.
        steps_per_epoch: Batches per epoch of ``dataset`` (default: all of it), for
            ``on_epoch``.
        on_epoch: Called after each epoch and after the last step (evaluation).
        jit_compile: XLA-compile the single-replica step.

    Returns:
        A :class:`TrainResult`.

    Raises:
        NonFiniteLossError: if a batch gives a NaN/inf loss (no update is applied).
    """
    strategy = strategy or tf.distribute.get_strategy()
    distributed = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    ckpt = make_checkpoint(model, [opt for opt, _ in groups], step=step_var)
    manager = tf.train.CheckpointManager(
        ckpt, _checkpoint_dir(out_dir, strategy), max_to_keep=2
    )
    var_groups = [fn() for _, fn in groups]
    with strategy.scope():  # slots must exist before the restore fills them
        for (opt, _), vs in zip(groups, var_groups, strict=True):
            opt.build(vs)
    resumed = 0
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed = int(step_var.numpy())
        logger.info("resumed from %s at step %d", manager.latest_checkpoint, resumed)
    limit = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
    per_epoch = steps_per_epoch or max(total_steps, 1)
    batches = dataset.skip(resumed).take(max(limit - resumed, 0))
    if distributed:
        step_fn = _make_distributed_step(model, groups, var_groups, strategy, loss_fn)
        batches = strategy.experimental_distribute_dataset(batches)
    else:
        step_fn = _make_step(model, groups, var_groups, loss_fn, jit_compile)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard"))
    step, loss_val, examples, t0 = resumed, float("nan"), 0, time.perf_counter()
    epoch_losses: list[tuple[float, float]] = []
    epoch_t0 = t0
    for batch in batches:
        loss, reg, ok = step_fn(batch)
        if not bool(ok):
            raise NonFiniteLossError(
                f"non-finite loss {float(loss)} at step {step + 1} (batch index {step} of "
                f"the epoch-ordered stream); no update applied, last checkpoint kept"
            )
        step += 1
        examples += _batch_examples(batch, strategy)
        loss_val = float(loss)
        epoch_losses.append((loss_val, float(reg)))
        if step % cfg.log_every == 0 or step == limit:
            rate = examples / max(time.perf_counter() - t0, 1e-9)
            line = f"step {step}/{limit} loss {loss_val:.4f} {rate:,.0f} examples/s"
            logger.info(line)
            if progress:
                progress(line)
            with writer.as_default():
                tf.summary.scalar("loss", loss_val, step=step)
                tf.summary.scalar("examples_per_s", rate, step=step)
        if step % cfg.checkpoint_every == 0:
            step_var.assign(step)  # only read by the checkpoint
            manager.save(checkpoint_number=step)
        if on_epoch and (step % per_epoch == 0 or step == limit):
            mean = np.mean(epoch_losses, axis=0)
            now = time.perf_counter()
            on_epoch(
                EpochEnd(
                    epoch=-(-step // per_epoch),
                    loss=float(mean[0]),
                    reg_loss=float(mean[1]),
                    steps=len(epoch_losses),
                    seconds=now - epoch_t0,
                    last=step == limit,
                )
            )
            epoch_losses, epoch_t0 = [], time.perf_counter()
    if step > resumed:
        step_var.assign(step)
        manager.save(checkpoint_number=step)
    writer.flush()
    return TrainResult(step, resumed, loss_val, examples, time.perf_counter() - t0)


def _batch_examples(batch: Any, strategy: tf.distribute.Strategy) -> int:
    """Examples in a (possibly distributed) batch: the rows of its last tensor."""
    last = tf.nest.flatten(batch)[-1]
    return sum(
        int(x.shape[0]) if x.shape[0] is not None else int(tf.shape(x)[0])
        for x in strategy.experimental_local_results(last)
    )


def _regularization(model: Any) -> Any:
    """The layers' regularisers (DPQ/MGQE centroid terms) summed, float32."""
    if not model.losses:
        return tf.constant(0.0)
    return tf.add_n([tf.cast(x, tf.float32) for x in model.losses])


def _checkpoint_dir(out_dir: str, strategy: tf.distribute.Strategy) -> str:
    """``out_dir/checkpoints``; a non-chief worker writes its own copy beside it."""
    base = os.path.join(out_dir, "checkpoints")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return base
    if resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    ):
        return base
    return os.path.join(base, f"{resolver.task_type}-{resolver.task_id}")


def _apply_if(
    ok: tf.Tensor,
    groups: Sequence[tuple[sparse_optimizers.RowSparseOptimizer, Any]],
    var_groups: list[list[Any]],
    grads: list[Any],
) -> tf.Tensor:
    """Applies ``grads`` (flat, in ``var_groups`` order) group by group when ``ok``.

    Each group's optimizer updates its own variables; on a non-finite loss nothing
    is touched. Returns whether the update ran.
    """

    def apply() -> tf.Tensor:
        i = 0
        for (opt, _), vs in zip(groups, var_groups, strict=True):
            opt.apply_gradients(zip(grads[i : i + len(vs)], vs, strict=True))
            i += len(vs)
        return tf.constant(True)

    return tf.cond(ok, apply, lambda: tf.constant(False))


def _make_distributed_step(
    model: Any,
    groups: Sequence[tuple[sparse_optimizers.RowSparseOptimizer, Any]],
    var_groups: list[list[Any]],
    strategy: tf.distribute.Strategy,
    loss_fn: LossFn,
) -> Callable[[Any], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """The step under ``strategy.run``: per-replica loss scaled to the global batch.

    Gradients and the finiteness flag are all-reduced in the replica context; the
    update (or its skip, on a non-finite loss anywhere) happens in one ``merge_call``,
    because a synchronisation point inside ``tf.cond`` is not supported.
    """
    flat = [v for vs in var_groups for v in vs]

    def apply_reduced(_: Any, ok: Any, grads: list[Any]) -> tf.Tensor:
        ok = strategy.experimental_local_results(ok)[0]
        return _apply_if(ok, groups, var_groups, grads)

    replicas = strategy.num_replicas_in_sync

    def replica_step(batch: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            per_example = loss_fn(model, batch)
            if per_example.shape.rank == 0:  # already a mean over the local batch
                loss = per_example / replicas
            else:
                loss = tf.nn.compute_average_loss(per_example)
            reg = tf.nn.scale_regularization_loss(_regularization(model))
            total = loss + reg
        grads = tape.gradient(total, flat)
        present = [i for i, g in enumerate(grads) if g is not None]
        reduced = ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, [grads[i] for i in present]
        )
        summed: list[Any] = [None] * len(grads)
        for i, g in zip(present, reduced, strict=True):
            summed[i] = g
        bad = ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(~tf.math.is_finite(total), tf.float32)
        )
        ok = tf.equal(bad, 0.0)
        ctx.merge_call(apply_reduced, args=(ok, summed))
        return loss, reg, tf.cast(ok, tf.float32)

    @tf.function
    def step(batch: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        loss, reg, ok = strategy.run(replica_step, args=(batch,))
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        reg = strategy.reduce(tf.distribute.ReduceOp.SUM, reg, axis=None)
        # ``ok`` is already global (all-reduced), every replica holds the same value.
        return total, reg, strategy.experimental_local_results(ok)[0] > 0

    return step


def _make_step(
    model: Any,
    groups: Sequence[tuple[sparse_optimizers.RowSparseOptimizer, Any]],
    var_groups: list[list[Any]],
    loss_fn: LossFn,
    jit_compile: bool,
) -> Callable[[Any], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    flat = [v for vs in var_groups for v in vs]

    @tf.function(jit_compile=jit_compile)
    def step(batch: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(model, batch))
            reg = _regularization(model)
            total = loss + reg
        grads = tape.gradient(total, flat)
        ok = tf.math.is_finite(total)
        _apply_if(ok, groups, var_groups, grads)
        return loss, reg, ok

    return step
