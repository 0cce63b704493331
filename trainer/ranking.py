"""Training and evaluation of the ranking backbones of MGQE (GMF, NeuMF, SASRec).

The data is SASRec's leave-last-two-out split (:mod:`trainer.ranking_data`), renumbered
here so that row 0 is the most frequent id of the *training* set (MGQE, Kang et al.
2020, section 3: tiers are frequency ranges). Training follows ALGORITHMS.md 7:

* GMF / NeuMF (He et al. 2017): pointwise BCE, ``num_negatives`` negatives per positive
  drawn uniformly from the items the user has no training interaction with, redrawn
  every epoch (vectorised rejection sampling against sorted ``user * n + item`` keys).
* SASRec (Kang & McAuley 2018): next-item BCE at every non-padding position with one
  negative per position from items outside the user's training sequence; every user with
  at least two training items once per epoch, in a seeded random order.

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

from trainer import metrics, sizes
from trainer.config import TrainerConfig
from trainer.layers import scalar_quantized_embedding as sq_lib
from trainer.models.gmf import GMF
from trainer.models.neumf import NeuMF
from trainer.models.sasrec import SASRec
from trainer.ranking_data import SequenceData

logger = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled_ncf", "sampled_sasrec")
TOP_K = 10


# ------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class RankingTask:
    """A :class:`SequenceData` renumbered by training frequency, with 0-based ids.

    Attributes:
        num_users: Users (rows ``0 .. num_users - 1``; row 0 has the most items).
        num_items: Items (rows ``0 .. num_items - 1``; row 0 is the most frequent item).
        train_items: Training items of every user, concatenated, in time order.
        train_offsets: ``(num_users + 1,)`` offsets into ``train_items``.
        valid: ``(num_users,)`` validation item, -1 for none.
        test: ``(num_users,)`` test item, -1 for none.
        user_ids: ``(num_users,)`` original user id of each row.
        item_ids: ``(num_items,)`` original item id of each row.
    """

    num_users: int
    num_items: int
    train_items: np.ndarray
    train_offsets: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def train_sequence(self, user: int) -> np.ndarray:
        """Training items of ``user`` in time order."""
        return self.train_items[self.train_offsets[user] : self.train_offsets[user + 1]]

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All training ``(users, items)`` as int64 arrays, user-major."""
        users = np.repeat(np.arange(self.num_users), np.diff(self.train_offsets))
        return users.astype(np.int64), self.train_items.astype(np.int64)

    def interaction_keys(self) -> np.ndarray:
        """Sorted unique ``user * num_items + item`` of the training interactions."""
        users, items = self.train_pairs()
        return np.unique(users * self.num_items + items)


def prepare_task(data: SequenceData) -> RankingTask:
    """Renumbers users and items of ``data`` by descending training frequency.

    Ties keep the original id order (stable sort). Users without any action are dropped.

    Args:
        data: Leave-last-two-out split with 1-based ids.

    Returns:
        The frequency-ordered :class:`RankingTask`.
    """
    lengths = np.diff(data.train_offsets)[1 : data.num_users + 1]
    has_any = (lengths > 0) | (data.valid[1:] > 0)
    users = np.flatnonzero(has_any) + 1
    users = users[np.argsort(-lengths[users - 1], kind="stable")]
    counts = np.bincount(data.train_items, minlength=data.num_items + 1)[1:]
    items = np.argsort(-counts, kind="stable") + 1
    row_of_item = np.full(data.num_items + 1, -1, np.int64)
    row_of_item[items] = np.arange(len(items))
    seqs = [row_of_item[data.train_sequence(int(u))] for u in users]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return RankingTask(
        num_users=len(users),
        num_items=data.num_items,
        train_items=np.concatenate(seqs) if seqs else np.zeros(0, np.int64),
        train_offsets=offsets,
        valid=row_of_item[data.valid[users]],
        test=row_of_item[data.test[users]],
        user_ids=users,
        item_ids=items,
    )


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))
    return sorted_keys[pos] == keys if len(sorted_keys) else np.zeros(keys.shape, bool)


def sample_negatives(
    rng: np.random.Generator,
    users: np.ndarray,
    num_items: int,
    interaction_keys: np.ndarray,
    num_negatives: int,
) -> np.ndarray:
    """Items drawn uniformly from those each user has not interacted with.

    Vectorised rejection sampling: draw all, then redraw only the rejected entries
    until none is left.

    Args:
        rng: Seeded generator.
        users: ``(P,)`` user rows.
        num_items: Item ids are ``0 .. num_items - 1``.
        interaction_keys: Sorted ``user * num_items + item`` keys to avoid.
        num_negatives: Draws per user entry.

    Returns:
        ``(P, num_negatives)`` int64 item rows.

    Raises:
        ValueError: If some user has interacted with every item.
    """
    users = np.asarray(users, np.int64)
    per_user = (
        np.bincount(interaction_keys // num_items) if len(interaction_keys) else []
    )
    if len(per_user) and per_user.max() >= num_items:
        raise ValueError("a user has interacted with every item; no negative exists")
    user_grid = np.broadcast_to(users[:, None], (len(users), num_negatives))
    neg = rng.integers(0, num_items, size=user_grid.shape)
    bad = _contains(interaction_keys, user_grid * num_items + neg)
    while bad.any():
        redraw = rng.integers(0, num_items, size=int(bad.sum()))
        neg[bad] = redraw
        still = _contains(interaction_keys, user_grid[bad] * num_items + redraw)
        bad[bad] = still
    return neg


def pointwise_examples(
    task: RankingTask,
    rng: np.random.Generator,
    num_negatives: int,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch of shuffled GMF/NeuMF examples: every positive plus fresh negatives.

    Args:
        task: The data.
        rng: Seeded generator (negatives and shuffling).
        num_negatives: Negatives per positive (4 in NCF and MGQE).
        keys: ``task.interaction_keys()``, if already computed.

    Returns:
        ``(users, items, labels)``; ``len = P * (1 + num_negatives)``.
    """
    users, items = task.train_pairs()
    keys = task.interaction_keys() if keys is None else keys
    neg = sample_negatives(rng, users, task.num_items, keys, num_negatives)
    all_users = np.concatenate([users, np.repeat(users, num_negatives)])
    all_items = np.concatenate([items, neg.reshape(-1)])
    labels = np.concatenate([np.ones(len(users)), np.zeros(neg.size)]).astype(
        np.float32
    )
    order = rng.permutation(len(all_users))
    return all_users[order], all_items[order], labels[order]


def padded_sequences(
    task: RankingTask, users: np.ndarray, maxlen: int, extra: np.ndarray | None = None
) -> np.ndarray:
    """Last ``maxlen`` training items (+ ``extra[u]`` if given) per user, left-padded.

    Item ids are shifted by one (SASRec's id 0 is padding).

    Returns:
        ``(len(users), maxlen)`` int64.
    """
    out = np.zeros((len(users), maxlen), np.int64)
    for row, u in enumerate(users):
        seq = task.train_sequence(int(u)) + 1
        if extra is not None and extra[u] >= 0:
            seq = np.append(seq, extra[u] + 1)
        seq = seq[-maxlen:]
        out[row, maxlen - len(seq) :] = seq
    return out


def sequence_examples(
    task: RankingTask, maxlen: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SASRec training inputs of users with >= 2 training items.

    Returns:
        ``(users, seq, pos)``: ``seq[u]`` = training items but the last, ``pos[u]`` =
        the next item at each position (both left-padded, ids shifted by one).
    """
    users = np.flatnonzero(np.diff(task.train_offsets) >= 2)
    seq = np.zeros((len(users), maxlen), np.int64)
    pos = np.zeros((len(users), maxlen), np.int64)
    for row, u in enumerate(users):
        items = task.train_sequence(int(u)) + 1
        inp, nxt = items[:-1][-maxlen:], items[1:][-maxlen:]
        seq[row, maxlen - len(inp) :] = inp
        pos[row, maxlen - len(nxt) :] = nxt
    return users, seq, pos


def sequence_negatives(
    rng: np.random.Generator,
    task: RankingTask,
    users: np.ndarray,
    pos: np.ndarray,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """One negative per non-padding position of ``pos`` (ids shifted by one, 0 = pad).

    Negatives avoid every item of the user's training sequence (``keys``, default
    ``task.interaction_keys()``).
    """
    keys = task.interaction_keys() if keys is None else keys
    draws = sample_negatives(rng, users, task.num_items, keys, pos.shape[1])
    return np.where(pos > 0, draws + 1, 0)


# ---------------------------------------------------------------------- models, sizes


def build_ranking_model(cfg: TrainerConfig, task: RankingTask) -> keras.Model:
    """The backbone named by ``cfg.model.name`` sized for ``task``.

    Raises:
        ValueError: For a model that is not a ranking backbone.
    """
    m = cfg.model
    if m.name == "gmf":
        return GMF(task.num_users, task.num_items, m.embedding, name="gmf")
    if m.name == "neumf":
        return NeuMF(
            task.num_users, task.num_items, m.embedding, m.hidden_units, name="neumf"
        )
    if m.name == "sasrec":
        return SASRec(
            task.num_items,
            m.embedding,
            maxlen=m.maxlen,
            num_blocks=m.num_blocks,
            num_heads=m.num_heads,
            dropout=m.dropout,
            name="sasrec",
        )
    raise ValueError(f"model {m.name!r} is not a ranking backbone (gmf, neumf, sasrec)")


def build_optimizer(cfg: TrainerConfig) -> Any:
    """Adam (``keras.optimizers.Adam``) or the row-sparse ``LazyAdam``."""
    o = cfg.optimizer
    kw = {"beta_1": o.beta_1, "beta_2": o.beta_2, "epsilon": o.epsilon}
    if o.name == "adam":
        return keras.optimizers.Adam(learning_rate=o.learning_rate, **kw)
    if o.name == "lazy_adam":
        from trainer.optimizers import LazyAdam

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
        percent: "Model size %", via :func:`trainer.sizes.model_size_percent`.
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


class _EpochData:
    """Builds each epoch's shuffled arrays (fresh negatives) for one backbone."""

    def __init__(
        self, cfg: TrainerConfig, task: RankingTask, rng: np.random.Generator
    ) -> None:
        self.cfg, self.task, self.rng = cfg, task, rng
        self.keys = task.interaction_keys()
        if cfg.model.name == "sasrec":
            self.users, self.seq, self.pos = sequence_examples(task, cfg.model.maxlen)

    def next(self) -> list[np.ndarray]:
        if self.cfg.model.name != "sasrec":
            k = self.cfg.training.num_negatives
            return list(pointwise_examples(self.task, self.rng, k, self.keys))
        order = self.rng.permutation(len(self.users))
        users, pos = self.users[order], self.pos[order]
        neg = sequence_negatives(self.rng, self.task, users, pos, self.keys)
        return [self.seq[order], pos, neg]


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
    epochs = _EpochData(cfg, task, rng)
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
