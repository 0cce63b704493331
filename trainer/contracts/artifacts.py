"""The on-disk format of the Beam stats artifacts, its writers and THE loader.

One directory per run (``docs/ARCHITECTURE.md``)::

    DIR/manifest.json             written last: its presence marks a finished run
    DIR/vocab/<feature>.txt       line i = the value of dictionary row i
    DIR/vocab/<feature>.tiers     line i = MGQE tier of row i (0 = head)
    DIR/counts/<feature>.parquet  this run's (value, count), count desc, value asc
    DIR/state/<feature>.parquet   ranking weights (value, weight): exact counts in batch
                                  mode, exponentially decayed counts in continuous mode
    DIR/boundaries/<feature>.json numeric bucket boundaries
    DIR/remap/<feature>.json      continuous mode: old row -> new row, promoted, evicted
    DIR/dead_letter/*.jsonl       malformed events with source and reason

Vocabulary values never contain line breaks: :func:`is_vocab_safe` is the test (any
character ``str.splitlines`` splits on), and the stats job keeps such values out of the
dictionary (they take the OOV/hash path) instead of escaping them, so that TF's
``TextFileInitializer`` and Keras ``StringLookup`` read the file as is.

Pure Python + NumPy/pyarrow (no TensorFlow, no Beam); every path may be local or
``gs://`` (through :mod:`trainer.contracts.storage`).

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = write_vocab(d, "item", ["b", "a"])
    >>> read_vocab(d, "item")
    ['b', 'a']
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainer.contracts import storage

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
COUNTS_SCHEMA = pa.schema([("value", pa.string()), ("count", pa.int64())])
STATE_SCHEMA = pa.schema([("value", pa.string()), ("weight", pa.float64())])


class ArtifactError(ValueError):
    """An artifact directory is incomplete or inconsistent; the message names a file."""


@dataclasses.dataclass(frozen=True)
class FeatureArtifacts:
    """One categorical feature's dictionary as the trainer needs it.

    Attributes:
        name: Feature name.
        values: ``values[r]`` is the raw value of dictionary row ``r``.
        counts: float64 ``(V,)``, the weight that ranked each row: exact counts in batch
            mode, decayed counts in continuous mode.
        row_tier: int32 ``(V,)``, MGQE tier of each row (0 = head). The OOV row ``V``
            belongs to the last tier (not stored here).
        tier_sizes: Rows per tier.
        coverage: Share of this run's non-missing values that are in the dictionary.
        version: The artifact version from the manifest.
    """

    name: str
    values: list[str]
    counts: np.ndarray
    row_tier: np.ndarray
    tier_sizes: tuple[int, ...]
    coverage: float
    version: str

    @property
    def vocab_size(self) -> int:
        return len(self.values)

    @property
    def num_tiers(self) -> int:
        return len(self.tier_sizes)


@dataclasses.dataclass(frozen=True)
class Remap:
    """How dictionary rows moved between two consecutive continuous-mode runs.

    Attributes:
        old_to_new: Old row -> new row for every value kept in the dictionary.
        promoted: Values new in the dictionary, in rank order.
        evicted: Values that left the dictionary, in old row order.
        old_size: Old vocabulary size.
        new_size: New vocabulary size.
        previous_version: Version of the artifact the old rows come from.
    """

    old_to_new: dict[int, int]
    promoted: list[str]
    evicted: list[str]
    old_size: int
    new_size: int
    previous_version: str = ""

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(old_rows, new_rows)`` as int64 arrays, sorted by old row."""
        old = np.array(sorted(self.old_to_new), dtype=np.int64)
        new = np.array([self.old_to_new[int(r)] for r in old], dtype=np.int64)
        return old, new

    def gather_index(self) -> np.ndarray:
        """int64 ``(new_size,)``: old row each new row warm-starts from, -1 if none."""
        index = np.full(self.new_size, -1, dtype=np.int64)
        old, new = self.arrays()
        index[new] = old
        return index

    def to_dict(self) -> dict[str, Any]:
        old, new = self.arrays()
        return {
            "format_version": FORMAT_VERSION,
            "previous_version": self.previous_version,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_rows": old.tolist(),
            "new_rows": new.tolist(),
            "promoted": list(self.promoted),
            "evicted": list(self.evicted),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Remap:
        pairs = zip(raw["old_rows"], raw["new_rows"], strict=True)
        return cls(
            old_to_new={int(o): int(n) for o, n in pairs},
            promoted=[str(v) for v in raw["promoted"]],
            evicted=[str(v) for v in raw["evicted"]],
            old_size=int(raw["old_size"]),
            new_size=int(raw["new_size"]),
            previous_version=str(raw.get("previous_version", "")),
        )


# ------------------------------------------------------------------------------ paths


def _check_feature_name(feature: str) -> str:
    if not feature or "/" in feature or "\\" in feature or feature.startswith("."):
        raise ValueError(f"feature name {feature!r} cannot be used as a file name")
    return feature


def manifest_path(artifact_dir: str) -> str:
    return storage.join(artifact_dir, MANIFEST)


def vocab_path(artifact_dir: str, feature: str) -> str:
    return storage.join(artifact_dir, "vocab", f"{_check_feature_name(feature)}.txt")


def tiers_path(artifact_dir: str, feature: str) -> str:
    return storage.join(artifact_dir, "vocab", f"{_check_feature_name(feature)}.tiers")


def counts_path(artifact_dir: str, feature: str) -> str:
    return storage.join(
        artifact_dir, "counts", f"{_check_feature_name(feature)}.parquet"
    )


def state_path(artifact_dir: str, feature: str) -> str:
    return storage.join(
        artifact_dir, "state", f"{_check_feature_name(feature)}.parquet"
    )


def boundaries_path(artifact_dir: str, feature: str) -> str:
    return storage.join(
        artifact_dir, "boundaries", f"{_check_feature_name(feature)}.json"
    )


def remap_path(artifact_dir: str, feature: str) -> str:
    return storage.join(artifact_dir, "remap", f"{_check_feature_name(feature)}.json")


def dead_letter_dir(artifact_dir: str) -> str:
    return storage.join(artifact_dir, "dead_letter")


# ---------------------------------------------------------------------------- writers


def is_vocab_safe(value: str) -> bool:
    """True if ``value`` can be one vocabulary line (non-empty, no line break)."""
    return bool(value) and value.splitlines() == [value]


def write_vocab(artifact_dir: str, feature: str, values: Sequence[str]) -> str:
    """Writes the dictionary (line i = row i); returns the file's SHA-256.

    Raises:
        ValueError: if a value is empty, contains a line break or repeats.
    """
    bad = [v for v in values if not is_vocab_safe(v)]
    if bad:
        raise ValueError(
            f"{feature}: vocabulary values with line breaks or empty: {bad[:3]!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{feature}: vocabulary has duplicate values")
    data = "".join(f"{v}\n" for v in values).encode("utf-8")
    storage.write_bytes(vocab_path(artifact_dir, feature), data)
    return hashlib.sha256(data).hexdigest()


def write_tiers(artifact_dir: str, feature: str, row_tier: np.ndarray) -> None:
    """Writes one tier id per dictionary row."""
    text = "".join(f"{int(t)}\n" for t in np.asarray(row_tier).tolist())
    storage.write_text(tiers_path(artifact_dir, feature), text)


def _write_parquet(uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    # values are unique: dictionary encoding would only cost time
    pq.write_table(table, buf, compression="zstd", use_dictionary=False)
    storage.write_bytes(uri, buf.getvalue())


def write_counts(artifact_dir: str, feature: str, table: pa.Table) -> None:
    """Writes the full count table (``value``, ``count``) as given (caller sorts)."""
    _write_parquet(counts_path(artifact_dir, feature), table.select(["value", "count"]))


def write_state(artifact_dir: str, feature: str, table: pa.Table) -> None:
    """Writes the ranking weights (``value``, ``weight``) carried to the next run."""
    _write_parquet(state_path(artifact_dir, feature), table.select(["value", "weight"]))


def write_boundaries(
    artifact_dir: str, feature: str, boundaries: Sequence[float], **meta: Any
) -> None:
    """Writes strictly increasing bucket boundaries plus free-form metadata."""
    b = [float(x) for x in boundaries]
    if any(y <= x for x, y in zip(b, b[1:], strict=False)):
        raise ValueError(
            f"{feature}: boundaries must strictly increase, got {b[:5]}..."
        )
    payload = {"feature": feature, "boundaries": b, **meta}
    storage.write_text(
        boundaries_path(artifact_dir, feature), json.dumps(payload, indent=1)
    )


def write_remap(artifact_dir: str, feature: str, remap: Remap) -> None:
    storage.write_text(remap_path(artifact_dir, feature), json.dumps(remap.to_dict()))


def write_manifest(artifact_dir: str, manifest: Mapping[str, Any]) -> None:
    """Writes ``manifest.json``; call it last, it publishes the run."""
    text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
    storage.write_text(manifest_path(artifact_dir), text)


# ---------------------------------------------------------------------------- loaders


def load_manifest(artifact_dir: str) -> dict[str, Any]:
    """Reads ``manifest.json``.

    Raises:
        ArtifactError: if the manifest is missing (an unfinished or failed run).
    """
    uri = manifest_path(artifact_dir)
    try:
        manifest: dict[str, Any] = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise ArtifactError(
            f"{uri} not found: {artifact_dir} is not a finished stats artifact"
        ) from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{uri}: format_version {manifest.get('format_version')!r}, "
            f"this loader reads {FORMAT_VERSION}"
        )
    return manifest


def read_vocab(artifact_dir: str, feature: str) -> list[str]:
    """The dictionary values in row order."""
    text = storage.read_text(vocab_path(artifact_dir, feature))
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_tiers(artifact_dir: str, feature: str) -> np.ndarray:
    text = storage.read_text(tiers_path(artifact_dir, feature))
    return np.array([int(t) for t in text.split()], dtype=np.int32)


def _read_parquet(uri: str) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def load_counts(artifact_dir: str, feature: str) -> pa.Table:
    """This run's full count table (value, count), count desc, value asc."""
    return _read_parquet(counts_path(artifact_dir, feature))


def load_state(artifact_dir: str, feature: str) -> pa.Table:
    """The ranking weights (value, weight) carried to the next continuous run."""
    return _read_parquet(state_path(artifact_dir, feature))


def _row_weights(state: pa.Table, values: list[str], uri: str) -> np.ndarray:
    if not values:
        return np.zeros(0, dtype=np.float64)
    idx = pc.index_in(pa.array(values, pa.string()), value_set=state["value"])
    if idx.null_count:
        raise ArtifactError(f"{uri}: {idx.null_count} dictionary values have no weight")
    weights = state["weight"].combine_chunks()
    return np.asarray(
        weights.take(idx).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def load_feature_artifacts(artifact_dir: str, feature_name: str) -> FeatureArtifacts:
    """THE loader: one categorical feature's dictionary, weights and tiers.

    Args:
        artifact_dir: A finished stats artifact directory (local or ``gs://``).
        feature_name: A categorical feature whose treatment uses a dictionary.

    Returns:
        The :class:`FeatureArtifacts`, rows aligned across values, counts and tiers.

    Raises:
        ArtifactError: if the run is unfinished, the feature is unknown or has no
            dictionary, or the files disagree with each other.
    """
    manifest = load_manifest(artifact_dir)
    summary = manifest.get("features", {}).get(feature_name)
    if summary is None:
        raise ArtifactError(
            f"{manifest_path(artifact_dir)}: no categorical feature {feature_name!r}; "
            f"have {sorted(manifest.get('features', {}))}"
        )
    if not summary.get("uses_dictionary"):
        raise ArtifactError(
            f"{feature_name}: treatment {summary.get('treatment')!r} has no dictionary"
        )
    values = read_vocab(artifact_dir, feature_name)
    row_tier = read_tiers(artifact_dir, feature_name)
    if len(row_tier) != len(values) or len(values) != summary["vocab_size"]:
        raise ArtifactError(
            f"{vocab_path(artifact_dir, feature_name)}: {len(values)} rows, "
            f"{len(row_tier)} tiers, manifest says {summary['vocab_size']}"
        )
    num_tiers = len(summary["tier_sizes"])
    uri = state_path(artifact_dir, feature_name)
    return FeatureArtifacts(
        name=feature_name,
        values=values,
        counts=_row_weights(load_state(artifact_dir, feature_name), values, uri),
        row_tier=row_tier,
        tier_sizes=tuple(int(x) for x in np.bincount(row_tier, minlength=num_tiers)),
        coverage=float(summary["coverage"]),
        version=str(manifest["version"]),
    )


def load_boundaries(artifact_dir: str, feature: str) -> list[float]:
    """Bucket boundaries of a ``bucketized`` numeric feature (strictly increasing)."""
    raw = json.loads(storage.read_text(boundaries_path(artifact_dir, feature)))
    return [float(b) for b in raw["boundaries"]]


def load_remap(artifact_dir: str, feature: str) -> Remap:
    """The continuous-mode remap of one feature.

    Raises:
        ArtifactError: if the run was not a continuous one (no remap written).
    """
    uri = remap_path(artifact_dir, feature)
    try:
        raw = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise ArtifactError(f"{uri} not found: not a continuous-mode run") from None
    return Remap.from_dict(raw)
