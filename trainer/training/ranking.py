"""Training and evaluation of the ranking backbones of MGQE (GMF, NeuMF, SASRec).

The examples (frequency-renumbered data, negatives) come from
:mod:`trainer.data.samples`; training follows ALGORITHMS.md 7: pointwise BCE for GMF /
NeuMF (He et al. 2017), next-item BCE for SASRec (Kang & McAuley 2018).

Evaluation ranks the held-out item against **all** items minus the user's training items
(and, at test, the validation item), ALGORITHMS.md 5.4, or against sampled candidates
(NCF 99 / SASRec 100). The epoch is chosen on **validation** NDCG@10, and the test
metrics of that epoch are reported. ``sq`` trains a full table and evaluates and sizes
its 8-bit post-training quantization.

Example:
    >>> data = ranking_data.load_sasrec("ml-1m.txt")                  # doctest: +SKIP
    >>> cfg = config.load_config("specs/experiments/gmf_mgqe.yaml")   # doctest: +SKIP
    >>> result = train_and_evaluate(cfg, data)                        # doctest: +SKIP
    >>> result.test.hr, result.size_percent                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from trainer.config import TrainerConfig
from trainer.data.samples import EpochData, RankingTask, padded_sequences, prepare_task
from trainer.data.sequences import SequenceData
from trainer.evaluation import metrics
from trainer.layers import scalar_quantized_embedding as sq_lib
from trainer.models import factory
from trainer.models.sasrec import SASRec
from trainer.serving import sizes

logger = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled_ncf", "sampled_sasrec")
RANKING_MODELS = ("gmf", "neumf", "sasrec")
TOP_K = 10


# ---------------------------------------------------------------------- models, sizes


def build_ranking_model(cfg: TrainerConfig, task: Any) -> keras.Model:
    """The backbone named by ``cfg.model.name`` sized for ``task``.

    A thin wrapper of :func:`trainer.models.factory.build_model`.

    Args:
        cfg: The run's configuration.
        task: A :class:`~trainer.data.samples.RankingTask` (or anything with
            ``num_users`` and ``num_items``).

    Raises:
        ValueError: For a model that is not a ranking backbone.
    """
    name = cfg.model.name
    if name not in RANKING_MODELS:
        raise ValueError(
            f"model {name!r} is not a ranking backbone ({', '.join(RANKING_MODELS)})"
        )
    counts = {"num_users": task.num_users, "num_items": task.num_items}
    needed = factory.required_sizes(name)
    return factory.build_model(cfg.model, **{k: counts[k] for k in needed})


def build_optimizer(cfg: TrainerConfig) -> Any:
    """Adam (``keras.optimizers.Adam``) or the row-sparse ``LazyAdam``."""
    o = cfg.optimizer
    kw = {"beta_1": o.beta_1, "beta_2": o.beta_2, "epsilon": o.epsilon}
    if o.name == "adam":
        return keras.optimizers.Adam(learning_rate=o.learning_rate, **kw)
    if o.name == "lazy_adam":
        from trainer.training.optimizers import LazyAdam

        return LazyAdam(learning_rate=o.learning_rate, **kw)
    raise ValueError(f"ranking models train with adam or lazy_adam, not {o.name!r}")


def _is_compressed(role: str, cfg: Any) -> bool:
    return cfg.compress_users or "user" not in role


@contextlib.contextmanager
def serving_tables(model: keras.Model, cfg: Any) -> Iterator[None]:
    """Inside the block, an ``sq`` model's tables hold their b-bit dequantized values.

    Scalar quantization is post-training (MGQE Table 1): the float tables train, and
    evaluation uses the per-column min/max quantization of ``ScalarQuantizedEmbedding``.
    Other kinds are served as they are. The float tables are restored on exit.

    Args:
        model: A ranking model (has ``embedding_tables()``).
        cfg: Its :class:`~trainer.config.EmbeddingConfig`.
    """
    saved = []
    if cfg.kind == "sq":
        for role, layer in model.embedding_tables().items():
            if not _is_compressed(role, cfg):
                continue
            table = ops.convert_to_numpy(layer.embeddings)
            codes, lo, hi = sq_lib.quantize_table(table, cfg.bits)
            layer.embeddings.assign(sq_lib.dequantize(codes, lo, hi, cfg.bits))
            saved.append((layer, table))
    try:
        yield
    finally:
        for layer, table in saved:
            layer.embeddings.assign(table)


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Serving size of a ranking model (ALGORITHMS.md 2.5).

    Attributes:
        table_bits: Serving bits of each embedding table, by role.
        full_table_bits: Bits of the same tables uncompressed (``32 n d``).
        dense_params: Every other parameter (32 bits each in both models).
        percent: "Model size %", via :func:`trainer.serving.sizes.model_size_percent`.
    """

    table_bits: dict[str, int]
    full_table_bits: dict[str, int]
    dense_params: int
    percent: float

    @property
    def serving_bits(self) -> int:
        """Total serving bits of the model."""
        return sum(self.table_bits.values()) + sizes.FLOAT_BITS * self.dense_params


def model_size(model: keras.Model, cfg: Any) -> ModelSize:
    """Serving bits of every table (``serving_bits()``, or SQ's) + 32-bit dense weights.

    Args:
        model: A built ranking model.
        cfg: Its :class:`~trainer.config.EmbeddingConfig`.

    Returns:
        The :class:`ModelSize`, compared with the same model with full tables.
    """
    tables = model.embedding_tables()
    table_ids = {id(w) for layer in tables.values() for w in layer.weights}
    dense = sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in table_ids)
    bits, full = {}, {}
    for role, layer in tables.items():
        n, d = layer.num_rows, layer.output_dim
        full[role] = sizes.full_bits(n, d)
        if cfg.kind == "sq" and _is_compressed(role, cfg):
            bits[role] = sizes.sq_bits(n, d, cfg.bits)
        else:
            bits[role] = int(layer.serving_bits())
    percent = sizes.model_size_percent(bits.values(), dense, full.values())
    return ModelSize(bits, full, dense, percent)


# ------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class SplitMetrics:
    """HR@10 and NDCG@10 in percent over ``num_users`` evaluated users."""

    hr: float
    ndcg: float
    num_users: int


class RankingEvaluator:
    """Ranks each user's held-out item of one split (ALGORITHMS.md 5).

    ``full``: against every item but the user's training items (and, for ``test``, the
    validation item). ``sampled_ncf``: against 99 distinct never-interacted items.
    ``sampled_sasrec``: against 100 items drawn with replacement outside the training
    set. Sampled candidates are drawn once (seeded) and reused every epoch.

    Args:
        task: The data.
        split: ``"valid"`` or ``"test"``.
        protocol: One of :data:`PROTOCOLS`.
        seed: Seed of the sampled candidates.
        batch_size: Users scored per call.

    Example:
        >>> ev = RankingEvaluator(task, "valid")        # doctest: +SKIP
        >>> ev.evaluate(model).hr                       # doctest: +SKIP
    """

    def __init__(
        self,
        task: RankingTask,
        split: str,
        protocol: str = "full",
        seed: int = 0,
        batch_size: int = 1024,
    ) -> None:
        if split not in ("valid", "test"):
            raise ValueError(f"`split` must be 'valid' or 'test'. Received: {split!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"`protocol` must be one of {PROTOCOLS}. Received: {protocol!r}"
            )
        self.task, self.split, self.protocol = task, split, protocol
        self.batch_size = batch_size
        target = task.valid if split == "valid" else task.test
        self.users = np.flatnonzero(target >= 0)
        self.targets = target[self.users]
        self.histories = [task.train_sequence(int(u)) for u in self.users]
        self.extra = [[task.valid[u]] for u in self.users] if split == "test" else None
        self.candidates = self._sample(np.random.default_rng(seed))
        self._sequences: dict[int, np.ndarray] = {}

    def _sample(self, rng: np.random.Generator) -> np.ndarray | None:
        n = self.task.num_items
        if self.protocol == "sampled_ncf":
            seen = [
                np.concatenate([h, [self.task.valid[u], self.task.test[u]]])
                for h, u in zip(self.histories, self.users, strict=True)
            ]
            seen = [s[s >= 0] for s in seen]
            return metrics.sample_ncf_candidates(rng, n, self.targets, seen, 99)
        if self.protocol == "sampled_sasrec":
            return metrics.sample_sasrec_candidates(
                rng, n, self.targets, self.histories, 100
            )
        return None

    def _context(self, model: keras.Model, rows: slice) -> np.ndarray:
        if not isinstance(model, SASRec):
            return self.users[rows]
        if model.maxlen not in self._sequences:
            extra = self.task.valid if self.split == "test" else None
            self._sequences[model.maxlen] = padded_sequences(
                self.task, self.users, model.maxlen, extra
            )
        return self._sequences[model.maxlen][rows]

    def scores(self, model: keras.Model, rows: slice) -> np.ndarray:
        """Logits of the candidates of users ``self.users[rows]``: ``(B, C)``."""
        shift = 1 if isinstance(model, SASRec) else 0
        cands = (
            np.arange(self.task.num_items)
            if self.candidates is None
            else self.candidates[rows]
        )
        out = model.score_items(
            self._context(model, rows), cands + shift, training=False
        )
        return ops.convert_to_numpy(out)

    def ranks(self, model: keras.Model) -> np.ndarray:
        """0-based pessimistic rank of every evaluated user's target."""
        out = []
        for start in range(0, len(self.users), self.batch_size):
            rows = slice(start, start + self.batch_size)
            s = self.scores(model, rows)
            if self.candidates is None:
                extra = self.extra[rows] if self.extra is not None else None
                out.append(
                    metrics.full_ranking_ranks(
                        s, self.targets[rows], self.histories[rows], extra
                    )
                )
            else:
                out.append(metrics.rank_of_target(s, np.zeros(len(s), np.int64)))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def evaluate(self, model: keras.Model) -> SplitMetrics:
        """HR@10 and NDCG@10 (percent) of ``model`` on this split."""
        r = self.ranks(model)
        return SplitMetrics(
            metrics.hit_rate_at_k(r, TOP_K), metrics.ndcg_at_k(r, TOP_K), len(r)
        )


# --------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """One epoch: mean task loss, mean regulariser, time, and metrics if evaluated."""

    epoch: int
    loss: float
    reg_loss: float
    seconds: float
    valid: SplitMetrics | None = None
    test: SplitMetrics | None = None


@dataclasses.dataclass(frozen=True)
class RankingResult:
    """A trained run: the test metrics at the epoch with the best validation NDCG@10.

    ``train_seconds`` is the wall time of training plus the per-epoch evaluations;
    ``config`` the run's full configuration.
    """

    model: str
    method: str
    seed: int
    best_epoch: int
    valid: SplitMetrics
    test: SplitMetrics
    size: ModelSize
    history: tuple[EpochLog, ...]
    train_seconds: float
    config: TrainerConfig

    @property
    def size_percent(self) -> float:
        """Model size % of the trained model."""
        return self.size.percent


def _train_step(
    model: keras.Model, optimizer: Any, loss_fn: Callable[..., Any], jit: bool
) -> Any:
    variables = model.trainable_variables

    @tf.function(jit_compile=jit)
    def step(*batch: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            loss = loss_fn(model, *batch)
            reg = ops.sum(ops.stack(model.losses)) if model.losses else ops.zeros(())
            total = loss + reg
        grads = tape.gradient(total, variables)
        optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        )
        return loss, reg

    return step


def pointwise_loss(model: keras.Model, users: Any, items: Any, labels: Any) -> Any:
    """Mean BCE of GMF/NeuMF logits against 0/1 labels."""
    logits = model({"user": users, "item": items}, training=True)
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


def sequence_loss(model: keras.Model, seq: Any, pos: Any, neg: Any) -> Any:
    """SASRec's BCE ``-log σ(pos) - log(1 - σ(neg))``, mean over non-padding targets."""
    pos_logits, neg_logits = model.train_logits(seq, pos, neg, training=True)
    mask = ops.cast(ops.not_equal(pos, 0), pos_logits.dtype)
    per_position = ops.softplus(-pos_logits) + ops.softplus(neg_logits)
    return ops.sum(per_position * mask) / ops.maximum(ops.sum(mask), 1.0)


def _run_batches(
    step: Any, arrays: list[np.ndarray], batch_size: int, budget: int
) -> tuple[float, float, int]:
    losses, regs = [], []
    for start in range(0, len(arrays[0]), batch_size):
        if len(losses) >= budget:
            break
        loss, reg = step(*(tf.constant(a[start : start + batch_size]) for a in arrays))
        losses.append(loss)
        regs.append(reg)
    if not losses:
        return 0.0, 0.0, 0
    return float(np.mean(losses)), float(np.mean(regs)), len(losses)


def train_and_evaluate(
    cfg: TrainerConfig,
    data: SequenceData | RankingTask,
    protocol: str = "full",
    eval_every: int = 1,
    on_epoch: Callable[[EpochLog], None] | None = None,
    jit_compile: bool | None = None,
) -> RankingResult:
    """Trains the configured backbone and reports test metrics at the best valid epoch.

    Args:
        cfg: Model (gmf, neumf, sasrec), embedding, optimizer and training settings
            (``epochs``, ``batch_size``, ``num_negatives``, ``seed``, ``max_steps``,
            ``eval_batch_size``).
        data: The split data (renumbered by :func:`prepare_task` if needed).
        protocol: Evaluation protocol (:data:`PROTOCOLS`).
        eval_every: Evaluate every this many epochs (and after the last).
        on_epoch: Called with each :class:`EpochLog` (progress printing).
        jit_compile: XLA-compile the training step. ``None``: only for tables without
            a codebook (XLA made the DPQ/MGQE argmin slower on CPU, the others ~4x
            faster).

    Returns:
        The :class:`RankingResult`.

    Seeds Python, NumPy and TensorFlow with ``keras.utils.set_random_seed`` and draws
    negatives from ``np.random.default_rng(seed)``: same seed, same run.
    """
    task = data if isinstance(data, RankingTask) else prepare_task(data)
    t = cfg.training
    keras.utils.set_random_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    model = build_ranking_model(cfg, task)
    optimizer = build_optimizer(cfg)
    optimizer.build(model.trainable_variables)
    loss_fn = sequence_loss if cfg.model.name == "sasrec" else pointwise_loss
    if jit_compile is None:
        jit_compile = cfg.model.embedding.kind not in ("dpq", "mgqe")
    step = _train_step(model, optimizer, loss_fn, jit_compile)
    epochs = EpochData(cfg, task, rng)
    evals = {
        s: RankingEvaluator(task, s, protocol, t.seed, t.eval_batch_size)
        for s in ("valid", "test")
    }
    budget = t.max_steps or np.iinfo(np.int64).max
    history: list[EpochLog] = []
    start = time.perf_counter()
    for epoch in range(1, t.epochs + 1):
        tick = time.perf_counter()
        loss, reg, steps = _run_batches(step, epochs.next(), t.batch_size, budget)
        budget -= steps
        last = epoch == t.epochs or budget <= 0
        log = EpochLog(epoch, loss, reg, time.perf_counter() - tick)
        if last or epoch % eval_every == 0:
            with serving_tables(model, cfg.model.embedding):
                log = dataclasses.replace(
                    log,
                    valid=evals["valid"].evaluate(model),
                    test=evals["test"].evaluate(model),
                )
        history.append(log)
        logger.info("%s epoch %d: %s", cfg.name, epoch, log)
        if on_epoch is not None:
            on_epoch(log)
        if last:
            break
    return _result(cfg, model, history, time.perf_counter() - start)


def _result(
    cfg: TrainerConfig, model: keras.Model, history: list[EpochLog], seconds: float
) -> RankingResult:
    evaluated = [h for h in history if h.valid is not None]
    best = max(evaluated, key=lambda h: (h.valid.ndcg, h.valid.hr, -h.epoch))
    return RankingResult(
        model=cfg.model.name,
        method=cfg.model.embedding.kind,
        seed=cfg.training.seed,
        best_epoch=best.epoch,
        valid=best.valid,
        test=best.test,
        size=model_size(model, cfg.model.embedding),
        history=tuple(history),
        train_seconds=seconds,
        config=cfg,
    )
