"""Ranking evaluation of the backbones of MGQE (GMF, NeuMF, SASRec), and model selection.

:class:`RankingEvaluator` ranks each user's held-out item of a split against **all**
items minus the user's training items (and, at test, the validation item), or against
sampled candidates: NCF's 99 never-interacted items (He et al. 2017, sec. 4.1) or
SASRec's 100 items outside the training sequence (Kang & McAuley 2018, sec. IV-B),
or a fixed external list in NCF's ``test.negative`` format (:func:`trainer.evaluation.candidates.read_candidates`).
Sampled candidates are drawn once (seeded) and reused every epoch. Ties count against
the target.

:func:`train_and_evaluate` trains with the one loop (:func:`trainer.training.fit.
fit_ranking`), evaluates after every ``eval_every`` epochs from the loop's epoch hook,
chooses the epoch on **validation** NDCG@10 of its protocol and reports the test metrics
of that epoch (MGQE, Kang et al. 2020, sec. 5.1); the other protocols are evaluated from
the same model at every evaluated epoch and reported at the chosen one (``extra``). ``sq`` trains a full table and evaluates and sizes
its 8-bit post-training quantization.

Example:
    >>> data = sequences.load_sasrec("ml-1m.txt")                     # doctest: +SKIP
    >>> cfg = config.load_config("specs/experiments/gmf_mgqe.yaml")   # doctest: +SKIP
    >>> result = train_and_evaluate(cfg, data)                        # doctest: +SKIP
    >>> result.test.hr, result.size_percent                           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.config import TrainerConfig
from trainer.data.samples import RankingTask, padded_sequences, prepare_task
from trainer.data.sequences import SequenceData
from trainer.evaluation import metrics
from trainer.models.sasrec import SASRec
from trainer.serving.tables import ModelSize, model_size, serving_tables

logger = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled_ncf", "sampled_sasrec")
#: What each protocol ranks the held-out item against (stated in every report).
PROTOCOL_TEXT = {
    "full": "full ranking: every item except the user's training items (and, at test, "
    "the validation item)",
    "sampled_ncf": "NCF's sampled protocol (He et al. 2017, sec. 4.1): the held-out "
    "item among 99 distinct negatives drawn uniformly without replacement from the "
    "items the user never interacted with (train, validation and test excluded), "
    "numpy default_rng(training.seed), drawn once per split and reused every epoch",
    "sampled_sasrec": "SASRec's sampled protocol (Kang & McAuley 2018, sec. IV-B, and "
    "its code): the held-out item among 100 negatives drawn uniformly WITH "
    "replacement from the items outside the user's training sequence (so the "
    "validation or held-out item itself may be drawn, and a drawn copy ties against "
    "it), numpy default_rng(training.seed), drawn once per split and reused every "
    "epoch",
    "external": "a fixed external candidate list (NCF's test.negative format)",
}
TOP_K = 10


@dataclasses.dataclass(frozen=True)
class SplitMetrics:
    """HR@10 and NDCG@10 in percent over ``num_users`` evaluated users."""

    hr: float
    ndcg: float
    num_users: int


class RankingEvaluator:
    """Ranks each user's held-out item of one split (HR@10, NDCG@10 as in He et al. 2017).

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
        candidates: ``(users, candidates)`` from :func:`trainer.evaluation.candidates.read_candidates` (protocol
            ``"external"``): only these users, against exactly these items.

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
        candidates: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if split not in ("valid", "test"):
            raise ValueError(f"`split` must be 'valid' or 'test'. Received: {split!r}")
        if protocol not in (*PROTOCOLS, "external"):
            raise ValueError(
                f"`protocol` must be one of {PROTOCOLS}. Received: {protocol!r}"
            )
        if (protocol == "external") != (candidates is not None):
            raise ValueError("`candidates` are given exactly for protocol 'external'")
        self.task, self.split, self.protocol = task, split, protocol
        self.batch_size = batch_size
        target = task.valid if split == "valid" else task.test
        self.users = np.flatnonzero(target >= 0)
        if candidates is not None:
            self.users = np.asarray(candidates[0], np.int64)
        self.targets = target[self.users]
        self.histories = [task.train_sequence(int(u)) for u in self.users]
        self.extra = [[task.valid[u]] for u in self.users] if split == "test" else None
        self.candidates = (
            np.asarray(candidates[1], np.int64)
            if candidates is not None
            else self._sample(np.random.default_rng(seed))
        )
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


# --------------------------------------------------------------------- selection


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """One epoch: mean task loss, mean regulariser, time, and metrics if evaluated."""

    epoch: int
    loss: float
    reg_loss: float
    seconds: float
    valid: SplitMetrics | None = None
    test: SplitMetrics | None = None
    #: The other protocols from the same model: ``"<protocol>/<split>"`` -> metrics.
    extra: dict[str, SplitMetrics] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RankingResult:
    """A trained run: the test metrics at the epoch with the best validation NDCG@10.

    ``train_seconds`` is the wall time of training plus the per-epoch evaluations;
    ``config`` the run's full configuration; ``protocol`` the one that chose the epoch
    and gave ``valid``/``test``; ``extra`` the other protocols at that epoch
    (``"<protocol>/<split>"``, e.g. ``"sampled_ncf/test"``).
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
    protocol: str = "full"
    extra: dict[str, SplitMetrics] = dataclasses.field(default_factory=dict)

    @property
    def size_percent(self) -> float:
        """Model size % of the trained model."""
        return self.size.percent


def train_and_evaluate(
    cfg: TrainerConfig,
    data: SequenceData | RankingTask,
    protocol: str = "full",
    eval_every: int = 1,
    on_epoch: Callable[[EpochLog], None] | None = None,
    jit_compile: bool | None = None,
    out_dir: str | None = None,
    also: tuple[str, ...] | None = None,
    candidates: tuple[np.ndarray, np.ndarray] | None = None,
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
        jit_compile: XLA-compile the training step (see
            :func:`trainer.training.fit.fit_ranking`).
        out_dir: Checkpoints of the loop; default a temporary directory, removed
            afterwards (the per-epoch history lives only in this call).
        also: Further protocols evaluated from the same model at every evaluated
            epoch (default: every other one of :data:`PROTOCOLS` that the data has
            enough items for; a sampled one needs 99 or 100 negatives per user).
        candidates: A fixed test candidate list (:func:`trainer.evaluation.candidates.read_candidates`), reported
            as ``extra["external/test"]``.

    Returns:
        The :class:`RankingResult`.

    Same seed, same run (:func:`trainer.training.fit.fit_ranking`).
    """
    from trainer.training.fit import fit_ranking

    task = data if isinstance(data, RankingTask) else prepare_task(data)
    t = cfg.training
    evals = {
        s: RankingEvaluator(task, s, protocol, t.seed, t.eval_batch_size)
        for s in ("valid", "test")
    }
    extra_evals = {}
    for p in tuple(q for q in PROTOCOLS if q != protocol) if also is None else also:
        for s in ("valid", "test"):
            try:
                extra_evals[f"{p}/{s}"] = RankingEvaluator(
                    task, s, p, t.seed, t.eval_batch_size
                )
            except ValueError as e:  # too few items to sample (tiny data)
                if also is not None:
                    raise
                logger.warning("%s: %s not evaluated: %s", cfg.name, p, e)
    if candidates is not None:
        extra_evals["external/test"] = RankingEvaluator(
            task,
            "test",
            "external",
            batch_size=t.eval_batch_size,
            candidates=candidates,
        )
    history: list[EpochLog] = []

    def evaluate_epoch(model: keras.Model, end: Any) -> None:
        log = EpochLog(end.epoch, end.loss, end.reg_loss, end.seconds)
        if end.last or end.epoch % eval_every == 0:
            with serving_tables(model, cfg.model.embedding):
                log = dataclasses.replace(
                    log,
                    valid=evals["valid"].evaluate(model),
                    test=evals["test"].evaluate(model),
                    extra={k: e.evaluate(model) for k, e in extra_evals.items()},
                )
        history.append(log)
        logger.info("%s epoch %d: %s", cfg.name, end.epoch, log)
        if on_epoch is not None:
            on_epoch(log)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ranking-") as tmp:
        model, _ = fit_ranking(
            cfg, task, out_dir or tmp, on_epoch=evaluate_epoch, jit_compile=jit_compile
        )
    return _result(cfg, model, history, time.perf_counter() - start, protocol)


def _result(
    cfg: TrainerConfig,
    model: keras.Model,
    history: list[EpochLog],
    seconds: float,
    protocol: str = "full",
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
        protocol=protocol,
        extra=dict(best.extra),
    )
