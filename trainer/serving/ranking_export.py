"""Serving export of the ranking backbones (GMF, NeuMF, SASRec) over RAW ids.

:func:`export_ranking_model` writes ONE SavedModel whose ``serving_default`` signature
takes ids in the raw id space of the data (e.g. ML-1M user and movie ids) and scores
explicit candidate lists, so a user can evaluate the model under any protocol:

    inputs:  ``user`` int64 ``(B,)``, ``items`` int64 ``(B, C)`` (pad with any unknown
             id, e.g. -1)
    outputs: ``logit`` float32 ``(B, C)``, one score per (user, candidate item);
             ``known`` bool ``(B, C)``, False where the user or the item has no row
             (its logit is 0 and means nothing). The data loader gives every item
             id ``1 .. max`` of the interactions file a row (one that never occurs
             is "known", an untrained row) and every user with an action.

Raw ids are mapped to the model's frequency-sorted rows by lookup tables saved in the
graph (:class:`RankingIds`). **SASRec's user** is resolved through the histories stored
in the export: each user's training items followed by the validation item (the
sequence the test split is scored after, SASRec, Kang & McAuley 2018, sec. III-G), the
last ``maxlen`` of them; so the export answers "what comes next for this user" for
every user of the training data. Users outside the data get ``known = False``.

Tables are exported in their serving form through THE one path,
:func:`trainer.serving.tables.serving_layer`: DPQ / MGQE become codes + centroids
(:class:`~trainer.layers.compact_embedding.CompactCodebookEmbedding`), an ``sq`` model's
compressed tables become 8-bit (``embedding.bits``)
:class:`~trainer.layers.scalar_quantized_embedding.ScalarQuantizedEmbedding`, the
others stay as trained. Sizes are :func:`trainer.serving.tables.model_size`, the
numbers of the reproduction tables. The reloaded export is checked against the trained
model (with its SQ tables dequantized, as evaluated) on a check batch of head, tail and
random users and items, within :data:`trainer.serving.checks.TOLERANCE`;
``export_metadata.json`` is written only when they agree.

Example:
    >>> ids = RankingIds.from_task(task, model)                      # doctest: +SKIP
    >>> meta = export_ranking_model(model, cfg.model, ids, "export/")  # doctest: +SKIP
    >>> scorer = scoring.load_ranking_scorer("export/")              # doctest: +SKIP
    >>> scorer([1, 2], [[1193, 661], [3408]])                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from trainer.models import ranking_common as rc
from trainer.serving import checks, scoring, tables

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RankingIds:
    """The raw id of every model row, and SASRec's stored histories.

    Attributes:
        user_ids: ``(num_users,)`` raw user id of each user row.
        item_ids: ``(num_items,)`` raw item id of each item row.
        histories: SASRec only: ``(num_users, maxlen)`` left-padded item rows + 1 (0 =
            padding) of each user's history; None for GMF / NeuMF.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    histories: np.ndarray | None = None

    @classmethod
    def from_task(cls, task: Any, model: Any) -> RankingIds:
        """The ids of a :class:`~trainer.data.samples.RankingTask` for ``model``.

        SASRec histories: training items + the validation item, last ``maxlen``.
        """
        from trainer.data.samples import padded_sequences

        histories = None
        if _is_sasrec(model):
            users = np.arange(task.num_users)
            histories = padded_sequences(task, users, model.maxlen, task.valid)
        return cls(
            np.asarray(task.user_ids, np.int64),
            np.asarray(task.item_ids, np.int64),
            histories,
        )


def is_ranking_model(model: Any) -> bool:
    """True for GMF, NeuMF and SASRec (the models this module exports)."""
    from trainer.models.sasrec import SASRec

    return isinstance(model, rc.UserItemRanker | SASRec)


def _is_sasrec(model: Any) -> bool:
    from trainer.models.sasrec import SASRec

    return isinstance(model, SASRec)


def _table_attr(model: Any, role: str, layer: Any) -> str:
    attr = f"{role}_embedding"
    if getattr(model, attr, None) is not layer:
        raise RuntimeError(f"{type(model).__name__}.{attr} is not its {role!r} table")
    return attr


def build_ranking_serving_model(
    trained: Any, packed_codes: bool = False
) -> tuple[Any, tables.ServingInfo]:
    """A copy of ``trained`` with its embedding tables in serving form.

    Args:
        trained: A built GMF, NeuMF or SASRec.
        packed_codes: Bit-packed DPQ/MGQE codes.

    Returns:
        ``(serving_model, info)``; every other weight is copied from ``trained``.
    """
    cfg = trained.embedding_config
    serving = type(trained).from_config(trained.get_config())
    sq_bits = tables.sq_bits_by_role(trained, cfg)
    info = tables.ServingInfo()
    pairs: list[tuple[Any, Any]] = []
    for role, layer in trained.embedding_tables().items():
        served = tables.serving_layer(
            layer, sq_bits.get(role), packed_codes, layer.name
        )
        if served is None:
            continue
        new, info.replaced[role] = served
        if role in sq_bits:
            info.sq_tables[role] = tables.dequantized_table(new)
        attr = _table_attr(serving, role, serving.embedding_tables()[role])
        old = getattr(serving, attr)
        setattr(serving, attr, new)
        serving._tracker.untrack(old)
        pairs.append((layer, new))
    _copy_other_weights(serving, trained, pairs)
    return serving, info


def _copy_other_weights(dst: Any, src: Any, pairs: list[tuple[Any, Any]]) -> None:
    """Copies every weight of ``src`` but the replaced tables ``(src, dst)``, in order."""
    skip_src = {id(w) for old, _ in pairs for w in old.weights}
    skip_dst = {id(w) for _, new in pairs for w in new.weights}
    a = [w for w in src.weights if id(w) not in skip_src]
    b = [w for w in dst.weights if id(w) not in skip_dst]
    if len(a) != len(b) or any(
        tuple(x.shape) != tuple(y.shape) for x, y in zip(a, b, strict=True)
    ):
        raise RuntimeError(
            f"serving model has {len(b)} weights besides its compact tables, the "
            f"trained one {len(a)}; the model structure changed"
        )
    for x, y in zip(a, b, strict=True):
        y.assign(x)


class RankingServingModule(tf.Module):
    """The saved object: raw ids -> rows -> ``score_items`` of the serving model.

    Args:
        model: The serving model (GMF, NeuMF or SASRec with serving tables).
        ids: The raw ids of the rows (and SASRec's histories).
    """

    def __init__(self, model: Any, ids: RankingIds) -> None:
        super().__init__(name="ranking_serving")
        self.model_variables = list(model.variables)
        self._score = model.score_items
        self.sasrec = ids.histories is not None
        self.users = _lookup(ids.user_ids)
        self.items = _lookup(ids.item_ids)
        if self.sasrec:
            self.histories = tf.Variable(
                np.asarray(ids.histories, np.int32), trainable=False, name="histories"
            )

    def serve(self, user: tf.Tensor, items: tf.Tensor) -> dict[str, tf.Tensor]:
        """Raw ``user (B,)`` and ``items (B, C)`` -> ``{"logit", "known"}`` ``(B, C)``."""
        user_row = self.users.lookup(user)
        item_row = self.items.lookup(items)
        known = (user_row >= 0)[:, None] & (item_row >= 0)
        u = tf.cast(tf.maximum(user_row, 0), tf.int32)
        i = tf.cast(tf.maximum(item_row, 0), tf.int32)
        if self.sasrec:
            logit = self._score(tf.gather(self.histories, u), i + 1, training=False)
        else:
            logit = self._score(u, i, training=False)
        logit = tf.where(known, tf.cast(logit, tf.float32), 0.0)
        return {"logit": logit, "known": known}

    def signatures(self) -> dict[str, Any]:
        """Concrete functions by signature key, for ``tf.saved_model.save``."""
        fn = tf.function(
            self.serve,
            input_signature=[
                tf.TensorSpec([None], tf.int64, name="user"),
                tf.TensorSpec([None, None], tf.int64, name="items"),
            ],
        )
        return {scoring.SERVING_SIGNATURE: fn.get_concrete_function()}


def _lookup(raw_ids: np.ndarray) -> tf.lookup.StaticHashTable:
    keys = np.asarray(raw_ids, np.int64)
    if len(np.unique(keys)) != len(keys):
        raise ValueError("raw ids must be distinct, one per row")
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys), tf.constant(np.arange(len(keys), dtype=np.int64))
    )
    return tf.lookup.StaticHashTable(init, default_value=-1)


def export_ranking_model(
    trained: Any,
    ids: RankingIds,
    out: str,
    *,
    packed_codes: bool = False,
    model_dir: str | None = None,
) -> dict[str, Any]:
    """Writes the raw-id serving SavedModel of a ranking model and verifies it.

    Args:
        trained: A built, trained GMF, NeuMF or SASRec.
        ids: Raw ids of its rows (:meth:`RankingIds.from_task`).
        out: Local export directory; must not hold a SavedModel yet.
        packed_codes: Serve DPQ/MGQE codes bit-packed at ``ceil(log2 K)`` bits.
        model_dir: The trained model's directory, recorded in the metadata.

    Returns:
        The export metadata, also written to ``out/export_metadata.json``.

    Raises:
        FileExistsError: if ``out`` already holds a SavedModel.
        ValueError: if ``ids`` does not match the model's tables.
        trainer.serving.checks.ExportCheckError: if the reloaded export's scores differ
            from the trained model's by more than :data:`checks.TOLERANCE`.
    """
    if os.path.exists(os.path.join(out, "saved_model.pb")):
        raise FileExistsError(f"{out} already holds a SavedModel; use a new --out")
    _check_ids(trained, ids)
    serving, info = build_ranking_serving_model(trained, packed_codes)
    module = RankingServingModule(serving, ids)
    tf.saved_model.save(module, out, signatures=module.signatures())
    check = checks.verify_ranking(out, trained, ids)
    size = tables.model_size(trained, trained.embedding_config)
    served = tables.size_of(serving, serving.embedding_tables())
    if served.serving_bits != size.serving_bits:
        raise RuntimeError(
            f"exported tables hold {served.serving_bits} bits, the accounting says "
            f"{size.serving_bits}"
        )
    result = {
        "model_dir": model_dir,
        "model": trained.name,
        "embedding": rc.embedding_config_dict(trained.embedding_config),
        "num_users": len(ids.user_ids),
        "num_items": len(ids.item_ids),
        "user_input": "history (stored: training items + validation item)"
        if ids.histories is not None
        else "user id",
        "size_bytes": scoring.savedmodel_bytes(out),
        "serving_bits": size.serving_bits,
        "full_embedding_bits": size.full_bits,
        "model_size_percent": size.percent,
        "compression_ratio": size.full_bits / size.serving_bits,
        "model_bits_by_table": {**size.table_bits, "dense": size.dense_bits},
        "full_bits_by_table": {**size.full_table_bits, "dense": size.dense_bits},
        "compact_layers": info.replaced,
        "packed_codes": packed_codes,
        "signatures": [scoring.SERVING_SIGNATURE],
        "check": check,
    }
    with open(os.path.join(out, scoring.EXPORT_METADATA), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    logger.info("exported %s -> %s: %d bytes", trained.name, out, result["size_bytes"])
    return result


def _check_ids(trained: Any, ids: RankingIds) -> None:
    items = trained.num_items
    users = getattr(trained, "num_users", None)
    bad = []
    if len(ids.item_ids) != items:
        bad.append(f"{len(ids.item_ids)} item ids for {items} item rows")
    if users is not None and len(ids.user_ids) != users:
        bad.append(f"{len(ids.user_ids)} user ids for {users} user rows")
    if _is_sasrec(trained) != (ids.histories is not None):
        bad.append("SASRec needs stored histories, the others none")
    if ids.histories is not None and ids.histories.shape != (
        len(ids.user_ids),
        trained.maxlen,
    ):
        bad.append(f"histories of shape {ids.histories.shape}")
    if bad:
        raise ValueError("ids do not match the model: " + "; ".join(bad))


def load_ids(model_dir: str, meta: Mapping[str, Any], model: Any) -> RankingIds:
    """The raw ids of a ``trainer.task`` ranking model directory.

    Reads ``ids.npz`` (``user_ids``, ``item_ids``, SASRec ``histories``) if the model
    directory has one, else rebuilds them from the training data named in
    ``metadata.json`` (``data``: a SASRec-format file; the renumbering of
    :func:`trainer.data.samples.prepare_task` is deterministic).
    """
    path = os.path.join(model_dir, "ids.npz")
    if os.path.isfile(path):
        with np.load(path) as z:
            hist = z["histories"] if "histories" in z.files else None
            return RankingIds(z["user_ids"], z["item_ids"], hist)
    source = meta.get("data") or meta.get("source")
    if not source:
        raise ValueError(
            f"{model_dir}: no ids.npz and metadata.json names no training data; "
            "the raw ids of the rows are unknown"
        )
    from trainer.data.samples import prepare_task
    from trainer.data.sequences import load_sasrec

    return RankingIds.from_task(prepare_task(load_sasrec(str(source))), model)
