"""Checks that a serving export reproduces the trained model's scores.

Before the export, :func:`check_vocabularies` refuses a stats artifact whose
vocabularies do not give the model's table sizes. After it, :func:`verify` reloads the
SavedModel, scores a check batch through its raw-feature signature
(:func:`trainer.serving.scoring.load_scorer`) and compares logits and probabilities with the
trained Keras model's on the same events, within :data:`TOLERANCE`; the reference is
the trained model with its scalar-quantized tables swapped in (dequantized) when SQ was
asked for. A difference raises :class:`ExportCheckError`, and
``export_metadata.json`` is then not written.

The check batch (:func:`check_batch`) is :func:`probe_events`, deterministic raw
events that visit every id path of every feature (dictionary head and tail, unseen
values, ``""``, bucket edges, NaN), plus up to 1,024 events of the training source
when it is readable, plus any events the caller passes.

Ranking exports (:mod:`trainer.serving.ranking_export`) are checked by
:func:`verify_ranking`: the logits of head, tail and random users and items through the
reloaded raw-id signature against the trained model's (:func:`reference_logits`, SQ
tables dequantized as evaluated), and an unknown item must come back flagged.

Example:
    >>> raw = check_batch(spec, transform, artifacts, meta, None)  # doctest: +SKIP
    >>> check = verify(out, trained, info, transform, raw)  # doctest: +SKIP
    >>> check["max_abs_logit_diff"] <= TOLERANCE  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from trainer.contracts.features import FeatureSpec, Kind
from trainer.data import examples as data
from trainer.serving import tables
from trainer.serving.scoring import load_ranking_scorer, load_scorer
from trainer.serving.tables import ServingInfo

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5
_SOURCE_EVENTS = 1024
_PROBE_EVENTS = 256
_CHECK_USERS = 64
_CHECK_ITEMS = 48


class ExportCheckError(RuntimeError):
    """The reloaded SavedModel does not reproduce the trained model's scores."""


def check_vocabularies(trained: Any, transform: Any, artifacts: str) -> None:
    """Refuses an artifact whose vocabularies do not match the model's tables.

    Args:
        trained: The trained ``WideAndDeep``.
        transform: The :class:`~trainer.preprocessing.FeatureTransform` of
            ``artifacts``.
        artifacts: The stats artifact directory (named in the error).

    Raises:
        ValueError: naming each feature whose table rows differ, as
            ``(artifact rows, model rows)``.
    """
    rows = data.table_rows(trained.spec, transform)
    bad = {
        k: (v, trained.table_rows.get(k))
        for k, v in rows.items()
        if trained.table_rows.get(k) != v
    }
    if bad:
        raise ValueError(
            f"{artifacts}: vocabularies do not match the model's tables "
            f"(feature: (artifact rows, model rows)) {bad}; export with the artifact "
            "the model was trained on"
        )


def verify(
    out: str,
    trained: Any,
    info: ServingInfo,
    transform: Any,
    raw: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Reloads the export and compares it with the (SQ-adjusted) trained model.

    Args:
        out: The export directory (the SavedModel is written, the metadata not yet).
        trained: The trained ``WideAndDeep``; SQ tables are swapped in for the
            reference and restored afterwards.
        info: What :func:`trainer.serving.export.build_serving_model` replaced;
            ``info.sq_tables`` holds the dequantized SQ tables.
        transform: The raw -> ids :class:`~trainer.preprocessing.FeatureTransform`.
        raw: The check batch (:func:`check_batch`).

    Returns:
        The check: ``events``, ``max_abs_logit_diff``, ``max_abs_probability_diff``,
        ``tolerance`` and ``reference``.

    Raises:
        ExportCheckError: if logits or probabilities differ by more than
            :data:`TOLERANCE`.
    """
    ids = data.transform_raw(raw, transform)
    features = {k: v for k, v in ids.items() if k not in trained.spec.label_keys}
    backup = {}
    for name, table in info.sq_tables.items():  # reference = trained with SQ tables
        backup[name] = trained.deep_embeddings[name].get_weights()
        trained.deep_embeddings[name].set_weights([table])
    try:
        reference = keras.ops.convert_to_numpy(trained(features, training=False))
    finally:
        for name, weights in backup.items():
            trained.deep_embeddings[name].set_weights(weights)
    exported = load_scorer(out)(raw)
    logit_diff = float(np.max(np.abs(exported["logit"] - reference), initial=0.0))
    prob = 1.0 / (1.0 + np.exp(-reference.astype(np.float64)))
    prob_diff = float(np.max(np.abs(exported["probability"] - prob), initial=0.0))
    check = {
        "events": int(len(reference)),
        "max_abs_logit_diff": logit_diff,
        "max_abs_probability_diff": prob_diff,
        "tolerance": TOLERANCE,
        "reference": "trained model"
        + (" with SQ-dequantized tables" if info.sq_tables else ""),
    }
    if not (logit_diff <= TOLERANCE and prob_diff <= TOLERANCE):
        raise ExportCheckError(
            f"{out}: exported scores differ from the trained model's (max |logit diff| "
            f"{logit_diff:.3g}, max |probability diff| {prob_diff:.3g} > {TOLERANCE}); "
            "export_metadata.json not written"
        )
    return check


def check_batch(
    spec: FeatureSpec,
    transform: Any,
    artifacts: str,
    meta: Mapping[str, Any],
    extra: Mapping[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Probe events + up to 1,024 source events + ``extra``, concatenated.

    Args:
        spec: The model's feature spec.
        transform: The :class:`~trainer.preprocessing.FeatureTransform` of
            ``artifacts`` (its vocabulary sizes and bucket boundaries).
        artifacts: The stats artifact directory (its vocabularies).
        meta: The trained model's ``metadata.json``; its ``source``
            (``ROOT@HOURS``) names the training events.
        extra: More raw events (``data.table_to_raw`` layout, labels optional), or
            None.

    Returns:
        Raw events in the ``data.table_to_raw`` layout, labels 0 where not given.
    """
    from trainer.contracts import artifacts as artifacts_lib

    vocabularies = {
        n: artifacts_lib.read_vocab(artifacts, n) for n in transform.vocabulary_sizes
    }
    parts = [probe_events(spec, vocabularies, transform.boundaries)]
    source = _source_events(spec, str(meta.get("source", "")))
    if source is not None:
        parts.append(source)
    if extra is not None:
        n = len(extra[spec.features[0].name])
        labels = {k: np.zeros(n, np.float32) for k in spec.label_keys}
        parts.append({k: np.asarray({**labels, **extra}[k]) for k in parts[0]})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def probe_events(
    spec: FeatureSpec,
    vocabularies: Mapping[str, Sequence[str]],
    boundaries: Mapping[str, Sequence[float]],
    n: int = _PROBE_EVENTS,
) -> dict[str, np.ndarray]:
    """Deterministic raw events that visit every id path of every feature.

    Categoricals cycle through dictionary values (first rows = head, last rows =
    tail), unseen values and ``""``; numerics through the bucket boundaries, values
    between and beyond them, and NaN. Labels are 0.

    Example:
        >>> raw = probe_events(spec, {"item": ["a", "b"]}, {})  # doctest: +SKIP
    """
    rng = np.random.default_rng(0)
    raw: dict[str, np.ndarray] = {}
    for f in spec.features:
        if f.kind is Kind.CATEGORICAL:
            vocab = list(vocabularies.get(f.name, []))
            pool = (
                vocab[:8] + vocab[-8:] + [f"unseen-{i}" for i in range(4)] + ["", "0"]
            )
            column = np.asarray([pool[i % len(pool)] for i in range(n)], dtype=object)
        else:
            edges = [float(b) for b in boundaries.get(f.name, [])] or [0.0]
            pool = edges + [e + 0.5 for e in edges] + [-1e9, 1e9, float("nan")]
            column = np.asarray([pool[i % len(pool)] for i in range(n)], np.float32)
        raw[f.name] = column[rng.permutation(n)]
    for key in spec.label_keys:
        raw[key] = np.zeros(n, np.float32)
    return raw


def _source_events(spec: FeatureSpec, source: str) -> dict[str, np.ndarray] | None:
    """Up to 1,024 events of the training source ``ROOT@HOURS``, None if unreadable."""
    from trainer.contracts import events

    root, sep, hours = source.rpartition("@")
    if not sep:
        return None
    try:
        table, _bad = data.read_events(root, events.parse_hour_range(hours), spec)
    except (OSError, ValueError) as e:
        logger.warning(
            "training source %s not readable (%s); probe events only", source, e
        )
        return None
    return data.table_to_raw(table.slice(0, _SOURCE_EVENTS), spec)


# ----------------------------------------------------------------- ranking exports


def check_candidates(
    ids: Any, n_users: int = _CHECK_USERS, n_items: int = _CHECK_ITEMS
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic raw check candidates: head, tail and random users and items.

    Returns:
        ``(users (U,), items (U, C))`` raw ids; the last column is an unknown item.
    """
    rng = np.random.default_rng(0)
    nu, ni = len(ids.user_ids), len(ids.item_ids)
    u_rows = np.unique(
        np.concatenate(
            [np.arange(min(8, nu)), np.arange(max(nu - 8, 0), nu)]
            + [rng.integers(0, nu, size=n_users)]
        )
    )[:n_users]
    i_rows = np.concatenate(
        [
            np.arange(min(8, ni))[None, :].repeat(len(u_rows), 0),
            np.arange(max(ni - 8, 0), ni)[None, :].repeat(len(u_rows), 0),
            rng.integers(0, ni, size=(len(u_rows), n_items - 17)),
        ],
        axis=1,
    )
    unknown = int(np.max(ids.item_ids)) + 1
    items = np.concatenate(
        [ids.item_ids[i_rows], np.full((len(u_rows), 1), unknown, np.int64)], axis=1
    )
    return ids.user_ids[u_rows], items


def reference_logits(
    trained: Any, ids: Any, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """The trained model's logits (SQ tables dequantized) for raw known ids."""
    row_of_user = {int(r): i for i, r in enumerate(ids.user_ids)}
    row_of_item = {int(r): i for i, r in enumerate(ids.item_ids)}
    u = np.asarray([row_of_user[int(x)] for x in users], np.int64)
    i = np.vectorize(lambda x: row_of_item[int(x)])(items).astype(np.int64)
    with tables.serving_tables(trained, trained.embedding_config):
        if ids.histories is not None:
            out = trained.score_items(ids.histories[u], i + 1, training=False)
        else:
            out = trained.score_items(u, i, training=False)
        return keras.ops.convert_to_numpy(out)


def verify_ranking(out: str, trained: Any, ids: Any) -> dict[str, Any]:
    """Reloads the export and compares its scores with the trained model's.

    Raises:
        ExportCheckError: above :data:`TOLERANCE`, or an unknown item
            not flagged.
    """
    users, items = check_candidates(ids)
    reference = reference_logits(trained, ids, users, items[:, :-1])
    scorer = load_ranking_scorer(out)
    got, known = scorer.score_matrix(users, items)
    diff = float(np.max(np.abs(got[:, :-1] - reference), initial=0.0))
    flags_ok = bool(known[:, :-1].all() and not known[:, -1].any())
    check = {
        "pairs": int(reference.size),
        "max_abs_logit_diff": diff,
        "tolerance": TOLERANCE,
        "unknown_ids_flagged": flags_ok,
        "reference": "trained model"
        + (" with SQ-dequantized tables" if tables.sq_bits_by_role(
            trained, trained.embedding_config) else ""),
    }  # fmt: skip
    if not (diff <= TOLERANCE and flags_ok):
        raise ExportCheckError(
            f"{out}: exported scores differ from the trained model's (max |logit diff| "
            f"{diff:.3g} > {TOLERANCE}, unknown ids flagged: {flags_ok}); "
            "export_metadata.json not written"
        )
    return check
