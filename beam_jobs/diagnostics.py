"""Per-feature diagnostics: hash collisions vs the formulas, manifest entries, summary.

For a feature hashed into ``B`` buckets, the *tail* is the set of distinct values of
this run that are not in the dictionary (all values for ``hash``/``double_hash``).
With ``n`` tail values the measured collision rate is ``(n - occupied buckets) / B``;
its expectation is the collision-rate formula of Zhang et al. 2020 (RecSys), Table 1,
``r(n, B) = n/B + expm1(n * log1p(-1/B))``. Double hashing behaves like one hash into
``B**2`` slots, so the pair ``(h1, h2)`` is measured against ``r(n, B**2)``; for hybrid
hashing ``n = |T| - k`` is the tail left after the dictionary.

Buckets come from ``trainer.preprocessing.hash_values`` (imported lazily: TensorFlow is
only needed here), the same SipHash the transform and serving use.

The module also renders what is reported per feature: :func:`feature_summary` is a
feature's manifest entry (sizes, coverage, OOV share, tiers, collisions, churn) and
:func:`format_summary` the job's printed summary.

Example:
    >>> round(collision_rate(4_000_000, 2**22), 4)
    0.339
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_jobs.frequencies import FeatureDictionary
from trainer.contracts.features import FeatureConfig, FeatureSpec, Treatment

_HASHED = {Treatment.HASH, Treatment.DOUBLE_HASH, Treatment.HYBRID}
_DOUBLE = {Treatment.DOUBLE_HASH, Treatment.HYBRID}


def collision_rate(n: int, buckets: int) -> float:
    """Expected collision rate r(n, B) = n/B - 1 + (1 - 1/B)**n, evaluated stably.

    Private copy of the formula: ``trainer.serving.sizes`` is not importable from ``beam_jobs``
    under the import rules of docs/ARCHITECTURE.md.
    """
    if n <= 0:
        return 0.0
    if buckets == 1:
        return float(n - 1)
    return n / buckets + math.expm1(n * math.log1p(-1.0 / buckets))


def measured_rate(bucket_ids: np.ndarray, num_buckets: int) -> tuple[float, int]:
    """``(rate, collisions)``; collisions = values - occupied buckets, rate = that/B."""
    n = len(bucket_ids)
    collisions = n - pc.count_distinct(pa.array(bucket_ids)).as_py() if n else 0
    return collisions / num_buckets, int(collisions)


def _entry(measured: tuple[float, int], n: int, buckets: int) -> dict[str, float]:
    expected = collision_rate(n, buckets)
    return {
        "buckets": buckets,
        "measured_rate": measured[0],
        "expected_rate": expected,
        "collisions": measured[1],
        "expected_collisions": expected * buckets,
    }


def hashing_diagnostics(
    config: FeatureConfig, tail: Sequence[str] | np.ndarray
) -> dict[str, Any]:
    """Measured vs expected collision rates of ``tail`` under the feature's hashing.

    Args:
        config: The feature; ``treatment`` and ``hash_buckets`` decide the hashing.
        tail: Distinct values not in the dictionary.

    Returns:
        ``{"tail_values": n}`` plus ``single`` (one hash into B) for hashed treatments
        and ``double`` (the pair into B**2) for double and hybrid hashing.
    """
    out: dict[str, Any] = {"tail_values": len(tail)}
    if config.treatment not in _HASHED:
        return out
    from trainer.preprocessing import hash_values  # lazy: TensorFlow

    b = config.hash_buckets
    tail = np.asarray(tail, dtype=object)
    h1 = hash_values(tail, b, 0)
    out["single"] = _entry(measured_rate(h1, b), len(tail), b)
    if config.treatment in _DOUBLE:
        h2 = hash_values(tail, b, 1)
        out["double"] = _entry(measured_rate(h1 * b + h2, b * b), len(tail), b * b)
    return out


def tail_values(fd: FeatureDictionary) -> np.ndarray:
    """Distinct values of this run that are not in the dictionary."""
    values = fd.counts.table["value"]
    if fd.values:
        values = pc.filter(
            values,
            pc.invert(pc.is_in(values, value_set=pa.array(fd.values, pa.string()))),
        )
    # bytes skip a per-value encode in hash_values
    return np.asarray(pc.cast(values, pa.binary()).to_pylist(), dtype=object)


def diagnose(config: FeatureConfig, fd: FeatureDictionary) -> FeatureDictionary:
    """Adds diagnostics (OOV share, collision rates) to a feature's dictionary."""
    diag = hashing_diagnostics(config, tail_values(fd))
    diag["oov_share"] = fd.oov_share
    diag["approximate"] = fd.counts.error > 0
    return dataclasses.replace(fd, diagnostics=diag)


def _diagnose_item(
    item: tuple[str, FeatureDictionary], spec: FeatureSpec
) -> tuple[str, FeatureDictionary]:
    name, fd = item
    return name, diagnose(spec.feature(name), fd)


class HashingDiagnostics(
    beam.PTransform[
        beam.PCollection[tuple[str, FeatureDictionary]],
        beam.PCollection[tuple[str, FeatureDictionary]],
    ]
):
    """Attaches :func:`diagnose` output to each categorical feature's dictionary."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self._spec = spec

    def expand(self, dictionaries):
        return dictionaries | "Diagnose" >> beam.Map(_diagnose_item, self._spec)


# ---------------------------------------------------------------- manifest and summary


def feature_summary(
    config: FeatureConfig, fd: FeatureDictionary, sha: str | None
) -> dict[str, Any]:
    """The manifest entry of one categorical feature."""
    num_tiers = config.num_tiers if config.uses_dictionary else 0
    tiers = fd.row_tier if fd.row_tier is not None else []
    tier_sizes = [int((tiers == t).sum()) for t in range(num_tiers)]
    rule = (
        {"min_counts": list(config.tier_min_counts)}
        if config.tier_min_counts
        else {"shares": list(config.tier_shares)}
    )
    update = fd.update
    return {
        "treatment": config.treatment.value,
        "uses_dictionary": config.uses_dictionary,
        "k": config.top_k if config.uses_dictionary else 0,
        "vocab_size": len(fd.values),
        "total_count": fd.counts.total,
        "missing_count": fd.counts.missing,
        "distinct": fd.counts.table.num_rows,
        "count_error_bound": fd.counts.error,
        "coverage": fd.coverage,
        "oov_share": fd.oov_share,
        "tier_sizes": tier_sizes,
        "tier_rule": rule,
        "rejected_values": fd.rejected,
        "vocab_sha256": sha,
        "diagnostics": fd.diagnostics,
        "continuous": None
        if update is None
        else {
            "jaccard": update.jaccard,
            "churn": update.churn,
            "promoted": len(update.remap.promoted),
            "evicted": len(update.remap.evicted),
            "moved": sum(o != n for o, n in update.remap.old_to_new.items()),
        },
    }


def _rate(entry: dict[str, Any] | None, key: str) -> str:
    if not entry or key not in entry:
        return "-"
    e = entry[key]
    return f"{e['measured_rate']:.3g}/{e['expected_rate']:.3g}"


def _accounting_lines(manifest: dict[str, Any]) -> list[str]:
    """Per hour ``read = events + dead`` (and files with unknown rows), skipped files."""
    lines = []
    for hour, e in sorted(manifest.get("hours", {}).items()):
        unknown = (
            f", {e['unknown_row_files']} files with unknown rows"
            if e["unknown_row_files"]
            else ""
        )
        lines.append(
            f"  hour {hour}: read {e['read']} = {e['events']} events + {e['dead']} dead "
            f"in {e['files']} files{unknown} (bad share {e['bad_share']:.3%})"
        )
    skipped = manifest.get("skipped_files", [])
    if skipped:
        lines.append(
            f"  WARNING: {len(skipped)} files not read, e.g. {skipped[0]['source']} "
            f"({skipped[0]['why']}); --strict makes this an error"
        )
    return lines


def format_summary(manifest: dict[str, Any]) -> str:
    """Human-readable run summary: totals, then one line per feature.

    Columns: distinct values, dictionary size / k, coverage, OOV share, tier sizes,
    collision rate measured/expected for one hash and for the pair, churn.
    """
    lines = [
        f"stats {manifest['version']} ({manifest['mode']}) hours "
        f"{manifest['source_hours'][0]}..{manifest['source_hours'][-1]}: "
        f"{manifest['events']} events, {manifest['dead_letters']} dead letters "
        f"(worst hour {manifest['bad_share']:.3%})",
        *_accounting_lines(manifest),
        f"{'feature':<14}{'treatment':<12}{'distinct':>10}{'vocab/k':>14}{'coverage':>10}"
        f"{'oov':>8}  {'tiers':<16}{'hash r meas/exp':<20}{'double r':<20}churn",
    ]
    for name, f in sorted(manifest["features"].items()):
        diag = f["diagnostics"]
        churn = f"{f['continuous']['churn']:.3f}" if f["continuous"] else "-"
        lines.append(
            f"{name:<14}{f['treatment']:<12}{f['distinct']:>10}"
            f"{str(f['vocab_size']) + '/' + str(f['k']):>14}"
            f"{f['coverage']:>10.3f}{f['oov_share']:>8.3f}  {str(f['tier_sizes']):<16}"
            f"{_rate(diag, 'single'):<20}{_rate(diag, 'double'):<20}{churn}"
        )
    for name, n in sorted(manifest["numeric"].items()):
        lines.append(
            f"{name:<14}{'bucketized':<12}{n['count']:>10} "
            f"boundaries={n['num_boundaries']} ({n['method']})"
        )
    return "\n".join(lines)
