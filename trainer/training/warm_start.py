"""Hourly warm start: carry the previous hour's weights and optimizer slots forward.

The dictionaries change every hour (values promoted into or evicted from the top-k), so
tables indexed by dictionary row cannot be copied as they are. For every dictionary
feature the new row of every old row comes from the Beam job's old-row -> new-row remap
(``remap/<feature>.json``) when the new stats run continued from the previous model's
artifact, and otherwise from matching the two vocabulary files by value (dictionaries
built without ``--previous``). Then:

* rows of retained values (and the OOV row) are copied, in the weights **and** in every
  optimizer slot (Adagrad/FTRL accumulators, Adam moments);
* rows of values **promoted** into a hybrid dictionary start from the embedding the value
  had last hour through double hashing (beyond both papers), with fresh slots;
* other new rows keep their fresh initialisation; hash tables, centroids and dense layers
  are copied whole when their shapes agree.

MGQE tiers are a per-row property set from the new artifacts
(:func:`set_tiers_from_artifacts`), never copied.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.contracts import artifacts as artifacts_lib
from trainer.contracts.features import FeatureSpec, Treatment

logger = logging.getLogger(__name__)


def set_tiers_from_artifacts(model: Any, spec: FeatureSpec, artifact_dir: str) -> None:
    """Sets each MGQE layer's ``row_tier`` from the artifact (OOV row = last tier)."""
    for f in spec.categorical:
        if f.treatment is not Treatment.MGQE:
            continue
        fa = artifacts_lib.load_feature_artifacts(artifact_dir, f.name)
        tiers = np.append(np.asarray(fa.row_tier, dtype="int32"), f.num_tiers - 1)
        model.deep_embeddings[f.name].set_row_tiers(tiers)


def _vocab(artifact_dir: str, feature: str) -> list[str]:
    return list(artifacts_lib.load_feature_artifacts(artifact_dir, feature).values)


def row_mapping(old_vocab: Sequence[str], new_vocab: Sequence[str]) -> np.ndarray:
    """For each new row (OOV row last), the old row of the same value, or -1."""
    index = {v: i for i, v in enumerate(old_vocab)}
    mapping = np.array(
        [index.get(v, -1) for v in new_vocab] + [len(old_vocab)], dtype=np.int64
    )
    return mapping


def _remap_rows(new: np.ndarray, old: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    out = new.copy()
    keep = mapping >= 0
    out[np.flatnonzero(keep)] = old[mapping[keep]]
    return out


def _restore_previous(prev_dir: str) -> tuple[Any, list[Any]]:
    import keras
    import tensorflow as tf

    from trainer.config import TrainerConfig
    from trainer.training import loop as train_loop
    from trainer.training.optimizers import make_optimizer

    prev = keras.saving.load_model(os.path.join(prev_dir, "model.keras"))
    with open(os.path.join(prev_dir, "metadata.json")) as f:
        meta = json.load(f)
    cfg = TrainerConfig.from_dict(meta["config"])
    opts = [
        make_optimizer(cfg.wide_optimizer),
        make_optimizer(cfg.optimizer),
    ]
    opts[0].build(prev.wide_variables)
    opts[1].build(prev.deep_variables)
    latest = tf.train.latest_checkpoint(os.path.join(prev_dir, "checkpoints"))
    if latest:
        ckpt = train_loop.make_checkpoint(prev, opts)
        ckpt.restore(latest).expect_partial()
    else:
        logger.warning("%s has no checkpoint; optimizer slots start fresh", prev_dir)
    return prev, opts


def warm_start(
    model: Any,
    groups: Sequence[tuple[Any, Any]],
    prev_dir: str,
    spec: FeatureSpec,
    artifact_dir: str,
) -> dict[str, Any]:
    """Copies weights and slots of the model in ``prev_dir`` into ``model``.

    Args:
        model: The new, built wide-and-deep model.
        groups: Its ``(optimizer, variables_fn)`` pairs (optimizers already built).
        prev_dir: Directory of the previous model (``trainer.task`` output).
        spec: The feature spec.
        artifact_dir: The new stats artifact.

    Returns:
        A report: per feature, rows kept, promoted and fresh; variables copied.
    """
    prev, prev_opts = _restore_previous(prev_dir)
    prev_vars = {v.path: v for v in prev.weights}
    opt_of: dict[int, Any] = {}
    for (opt, fn), prev_opt in zip(groups, prev_opts, strict=True):
        for v in fn():
            opt_of[id(v)] = (opt, prev_opt)
    sourced = _feature_mappings(spec, prev_dir, artifact_dir)
    mappings = {name: m for name, (m, _) in sourced.items()}
    report: dict[str, Any] = {"copied": 0, "remapped": 0, "skipped": [], "features": {}}
    for var in model.weights:
        old = prev_vars.get(var.path)
        if old is None:
            report["skipped"].append(var.path)
            continue
        feature = _feature_of(var.path, mappings)
        if "row_tier" in var.path:
            continue
        new_val, old_val = np.asarray(var.numpy()), np.asarray(old.numpy())
        remap = feature is not None and _is_row_table(var.path, spec.feature(feature))
        if remap:
            m = mappings[feature]
            if old_val.shape[0] != m.max(initial=-1) + 1 or new_val.shape[0] != len(m):
                report["skipped"].append(var.path)
                continue
            var.assign(_remap_rows(new_val, old_val, m))
            report["remapped"] += 1
        elif new_val.shape == old_val.shape:
            var.assign(old_val)
            report["copied"] += 1
        else:
            report["skipped"].append(var.path)
            continue
        if id(var) in opt_of:
            _copy_slots(
                var, old, opt_of[id(var)], mappings.get(feature) if remap else None
            )
    for name, m in mappings.items():
        promoted = _promote_hybrid_rows(model, spec.feature(name), m, artifact_dir)
        report["features"][name] = {
            "rows": int(len(m)),
            "kept": int((m >= 0).sum()),
            "promoted_from_hash": promoted,
            "fresh": int((m < 0).sum()) - promoted,
            "rows_from": sourced[name][1],
        }
    logger.info("warm start from %s: %s", prev_dir, report["features"])
    return report


def _feature_mappings(
    spec: FeatureSpec, prev_dir: str, artifact_dir: str
) -> dict[str, tuple[np.ndarray, str]]:
    """Per dictionary feature, the old row of every new row (OOV row last) or -1, and
    where that came from (``"remap"`` or ``"values"``).

    When the new stats run continued from the previous model's artifact (``--previous``),
    its ``remap/<feature>.json`` says it: the Beam job's own record of which rows moved.
    Otherwise (a batch-mode dictionary, or a remap against another artifact) the rows
    are matched by value, which the remap equals where both exist.
    """
    prev_artifacts = os.path.join(prev_dir, "artifacts")
    out = {}
    for f in spec.categorical:
        if f.uses_dictionary:
            old = artifacts_lib.load_feature_artifacts(prev_artifacts, f.name)
            remap = _remap_from(artifact_dir, f.name, old.version)
            if remap is not None and remap.old_size == len(old.values):
                out[f.name] = (np.append(remap.gather_index(), remap.old_size), "remap")
            else:
                new = _vocab(artifact_dir, f.name)
                out[f.name] = (row_mapping(old.values, new), "values")
    return out


def _remap_from(artifact_dir: str, feature: str, previous_version: str) -> Any:
    """The artifact's remap of ``feature`` if it continues ``previous_version``."""
    try:
        remap = artifacts_lib.load_remap(artifact_dir, feature)
    except artifacts_lib.ArtifactError:  # a batch-mode run writes none
        return None
    return remap if remap.previous_version == previous_version else None


def _feature_of(path: str, mappings: dict[str, np.ndarray]) -> str | None:
    for name in mappings:
        if f"emb_{name}/" in path or f"wide_{name}/" in path:
            return name
    return None


def _is_row_table(path: str, feature: Any) -> bool:
    """Tables indexed by dictionary row (not hash tables, centroids or tiers)."""
    leaf = path.rsplit("/", 1)[-1]
    if feature.treatment is Treatment.HYBRID:
        return "dictionary" in leaf
    return leaf in ("embeddings", "query_table", "queries", "table")


def _copy_slots(
    var: Any, old: Any, opts: tuple[Any, Any], mapping: np.ndarray | None
) -> None:
    new_opt, old_opt = opts
    try:
        old_slots = old_opt.slots(old)
    except KeyError:
        return
    for name, slot in new_opt.slots(var).items():
        if name not in old_slots:
            continue
        old_val = old_slots[name].numpy()
        if mapping is None:
            if tuple(slot.shape) == old_val.shape:
                slot.assign(old_val)
        else:
            slot.assign(_remap_rows(slot.numpy(), old_val, mapping))


def _promote_hybrid_rows(
    model: Any, feature: Any, mapping: np.ndarray, artifact_dir: str
) -> int:
    """New hybrid dictionary rows start from the value's former double-hashed embedding."""
    if feature.treatment is not Treatment.HYBRID:
        return 0
    from trainer import preprocessing

    new_rows = np.flatnonzero(mapping[:-1] < 0)
    if not len(new_rows):
        return 0
    values = np.asarray(_vocab(artifact_dir, feature.name), dtype=object)[new_rows]
    hash_ids = np.stack(
        [preprocessing.hash_values(values, feature.hash_buckets, i) for i in (0, 1)],
        axis=-1,
    )
    # Hash tables were copied from the previous model above, so the layer's own
    # double-hashed path still gives each value the embedding it had last hour.
    model.deep_embeddings[feature.name].promote_rows(new_rows, hash_ids)
    model.wide_tables[feature.name].promote_rows(new_rows, hash_ids)
    return int(len(new_rows))
