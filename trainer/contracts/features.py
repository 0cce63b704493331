"""Feature spec: each feature's name, type and embedding treatment.

Pure Python (no TensorFlow, no Beam) so that Beam jobs, the trainer and the pipeline can
all import it. A spec lives in ``specs/features/*.yaml`` and is loaded with
:func:`load_feature_spec`, which validates every field and raises
:class:`FeatureSpecError` naming the file and the field on bad input.

Example:
    >>> spec = FeatureSpec.from_dict({
    ...     "name": "demo",
    ...     "features": [{"name": "user_id", "treatment": "hybrid", "top_k": 100,
    ...                   "hash_buckets": 1024}],
    ... })
    >>> spec.categorical_names
    ('user_id',)
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

TIMESTAMP_KEY = "event_ts"
LABEL_KEY = "label"
OOV_TOKEN = "[OOV]"  # written nowhere; documents that OOV gets a reserved row
MAX_CENTROIDS = 2**16


class FeatureSpecError(ValueError):
    """A feature spec failed validation; the message names the file and field."""


class Kind(enum.StrEnum):
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"


class Treatment(enum.StrEnum):
    """How a feature is turned into ids and embedded."""

    FULL = "full"  # one row per value in the (capped) dictionary, + 1 OOV row
    HASH = "hash"  # one salted hash into `hash_buckets` rows
    DOUBLE_HASH = "double_hash"  # two independent salted hashes, summed or concatenated
    HYBRID = "hybrid"  # top-k dictionary rows, the rest double-hashed
    DPQ = "dpq"  # dictionary ids, DPQ-VQ embedding
    MGQE = "mgqe"  # dictionary ids, frequency tiers, MGQE embedding
    BUCKETIZED = "bucketized"  # numeric -> percentile bucket id
    NUMERIC = "numeric"  # numeric, standardized, fed to the deep part as-is


_CATEGORICAL_TREATMENTS = {
    Treatment.FULL,
    Treatment.HASH,
    Treatment.DOUBLE_HASH,
    Treatment.HYBRID,
    Treatment.DPQ,
    Treatment.MGQE,
}
_NUMERIC_TREATMENTS = {Treatment.BUCKETIZED, Treatment.NUMERIC}


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """One feature and its treatment.

    Attributes:
        name: Column name in the event log.
        kind: ``categorical`` (string values) or ``numeric`` (float values).
        treatment: See :class:`Treatment`.
        embedding_dim: Output width of the feature's embedding.
        top_k: Dictionary size (``hybrid``; cap for ``full``/``dpq``/``mgqe``).
        hash_buckets: Rows per hash table (``hash``, ``double_hash``, ``hybrid``).
        hash_combiner: ``sum`` or ``concat`` for double hashing.
        tier_shares: MGQE tier boundaries as cumulative shares of the vocabulary,
            e.g. ``[0.1]`` = head is the top 10 %, tail the rest.
        tier_min_counts: Alternative to ``tier_shares``: count thresholds, descending.
        num_subspaces: D for DPQ/MGQE.
        num_centroids: K per tier for MGQE (K_1 >= ... >= K_m), or ``[K]`` for DPQ.
        num_buckets: Number of percentile buckets for ``bucketized`` numerics.
    """

    name: str
    kind: Kind = Kind.CATEGORICAL
    treatment: Treatment = Treatment.HYBRID
    embedding_dim: int = 16
    top_k: int = 10_000
    hash_buckets: int = 2**14
    hash_combiner: str = "sum"
    tier_shares: tuple[float, ...] = (0.1,)
    tier_min_counts: tuple[int, ...] = ()
    num_subspaces: int = 8
    num_centroids: tuple[int, ...] = (256, 64)
    num_buckets: int = 10

    @property
    def uses_dictionary(self) -> bool:
        return self.treatment in {
            Treatment.FULL,
            Treatment.HYBRID,
            Treatment.DPQ,
            Treatment.MGQE,
        }

    @property
    def num_tiers(self) -> int:
        if self.tier_min_counts:
            return len(self.tier_min_counts) + 1
        return len(self.tier_shares) + 1


@dataclasses.dataclass(frozen=True)
class CrossConfig:
    """A crossed feature for the wide part: hashed cross of categorical features."""

    features: tuple[str, ...]
    hash_buckets: int = 2**14

    @property
    def name(self) -> str:
        return "_x_".join(self.features)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The whole feature spec: timestamp, labels, features and crosses."""

    name: str
    features: tuple[FeatureConfig, ...]
    timestamp_key: str = TIMESTAMP_KEY
    label_keys: tuple[str, ...] = (LABEL_KEY,)
    crosses: tuple[CrossConfig, ...] = ()

    @property
    def categorical(self) -> tuple[FeatureConfig, ...]:
        return tuple(f for f in self.features if f.kind is Kind.CATEGORICAL)

    @property
    def numeric(self) -> tuple[FeatureConfig, ...]:
        return tuple(f for f in self.features if f.kind is Kind.NUMERIC)

    @property
    def categorical_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.categorical)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.numeric)

    @property
    def label_key(self) -> str:
        return self.label_keys[0]

    def feature(self, name: str) -> FeatureConfig:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature named {name!r} in spec {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<dict>") -> FeatureSpec:
        """Validates a parsed YAML/JSON mapping into a spec.

        Raises:
            FeatureSpecError: naming ``source`` and the offending field.
        """
        return _parse_spec(raw, source)


def load_feature_spec(path: str) -> FeatureSpec:
    """Reads and validates a YAML feature spec from a local path.

    Raises:
        FeatureSpecError: if the file is missing, not YAML, or any field is invalid.
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise FeatureSpecError(f"{path}: feature spec file not found") from e
    except yaml.YAMLError as e:
        raise FeatureSpecError(f"{path}: not valid YAML: {e}") from e
    return FeatureSpec.from_dict(raw, source=path)


def transformed_name(key: str) -> str:
    """Name of the transformed (id) column for a raw feature key (TFX convention)."""
    return f"{key}_xf"


# --------------------------------------------------------------------------- parsing


def _to_plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _fail(source: str, field: str, msg: str) -> FeatureSpecError:
    return FeatureSpecError(f"{source}: {field}: {msg}")


def _check_keys(raw: Mapping[str, Any], allowed: set[str], source: str, where: str):
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(
            source, where, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}"
        )


def _pos_int(value: Any, source: str, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(source, field, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _parse_feature(raw: Any, source: str, where: str) -> FeatureConfig:
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"must be a mapping, got {type(raw).__name__}")
    fields = {f.name for f in dataclasses.fields(FeatureConfig)}
    _check_keys(raw, fields, source, where)
    if "name" not in raw or not isinstance(raw["name"], str) or not raw["name"]:
        raise _fail(source, f"{where}.name", "required non-empty string")
    name = raw["name"]
    where = f"{where} ({name})"
    try:
        kind = Kind(raw.get("kind", "categorical"))
    except ValueError:
        raise _fail(
            source,
            f"{where}.kind",
            f"{raw.get('kind')!r} is not one of {[k.value for k in Kind]}",
        ) from None
    default_treatment = "hybrid" if kind is Kind.CATEGORICAL else "bucketized"
    try:
        treatment = Treatment(raw.get("treatment", default_treatment))
    except ValueError:
        raise _fail(
            source,
            f"{where}.treatment",
            f"{raw.get('treatment')!r} is not one of {[t.value for t in Treatment]}",
        ) from None
    allowed = (
        _CATEGORICAL_TREATMENTS if kind is Kind.CATEGORICAL else _NUMERIC_TREATMENTS
    )
    if treatment not in allowed:
        raise _fail(
            source,
            f"{where}.treatment",
            f"{treatment.value!r} is not valid for a {kind.value} feature; "
            f"use one of {sorted(t.value for t in allowed)}",
        )
    kw: dict[str, Any] = {"name": name, "kind": kind, "treatment": treatment}
    for key in (
        "embedding_dim",
        "top_k",
        "hash_buckets",
        "num_subspaces",
        "num_buckets",
    ):
        if key in raw:
            kw[key] = _pos_int(raw[key], source, f"{where}.{key}")
    if "hash_combiner" in raw:
        if raw["hash_combiner"] not in ("sum", "concat"):
            raise _fail(
                source,
                f"{where}.hash_combiner",
                f"must be 'sum' or 'concat', got {raw['hash_combiner']!r}",
            )
        kw["hash_combiner"] = raw["hash_combiner"]
    if "tier_shares" in raw:
        shares = raw["tier_shares"]
        if not isinstance(shares, list) or not all(
            isinstance(s, int | float) and 0 < s < 1 for s in shares
        ):
            raise _fail(
                source,
                f"{where}.tier_shares",
                f"must be a list of shares in (0, 1), got {shares!r}",
            )
        if any(b <= a for a, b in zip(shares, shares[1:], strict=False)):
            raise _fail(
                source, f"{where}.tier_shares", f"must increase, got {shares!r}"
            )
        kw["tier_shares"] = tuple(float(s) for s in shares)
    if "tier_min_counts" in raw:
        counts = raw["tier_min_counts"]
        if not isinstance(counts, list) or not all(
            isinstance(c, int) and c > 0 for c in counts
        ):
            raise _fail(
                source,
                f"{where}.tier_min_counts",
                f"must be positive integers, got {counts!r}",
            )
        if any(b >= a for a, b in zip(counts, counts[1:], strict=False)):
            raise _fail(
                source,
                f"{where}.tier_min_counts",
                f"must strictly decrease, got {counts!r}",
            )
        kw["tier_min_counts"] = tuple(counts)
    if "num_centroids" in raw:
        ks = raw["num_centroids"]
        if isinstance(ks, int):
            ks = [ks]
        if (
            not isinstance(ks, list)
            or not ks
            or not all(isinstance(k, int) and 2 <= k <= MAX_CENTROIDS for k in ks)
        ):
            raise _fail(
                source,
                f"{where}.num_centroids",
                f"must be integers in [2, {MAX_CENTROIDS}], got {raw['num_centroids']!r}",
            )
        if any(b > a for a, b in zip(ks, ks[1:], strict=False)):
            raise _fail(
                source,
                f"{where}.num_centroids",
                f"must not increase (K_1 >= K_2 ...), got {ks!r}",
            )
        kw["num_centroids"] = tuple(ks)
    cfg = FeatureConfig(**kw)
    if cfg.treatment in (Treatment.DPQ, Treatment.MGQE):
        if cfg.embedding_dim % cfg.num_subspaces:
            raise _fail(
                source,
                f"{where}.num_subspaces",
                f"embedding_dim {cfg.embedding_dim} is not divisible by {cfg.num_subspaces}",
            )
    if cfg.treatment is Treatment.MGQE and len(cfg.num_centroids) not in (
        1,
        cfg.num_tiers,
    ):
        raise _fail(
            source,
            f"{where}.num_centroids",
            f"needs one K per tier ({cfg.num_tiers} tiers), got {list(cfg.num_centroids)}",
        )
    if cfg.hash_combiner == "concat" and cfg.embedding_dim % 2:
        raise _fail(
            source, f"{where}.embedding_dim", "must be even with hash_combiner concat"
        )
    return cfg


def _parse_spec(raw: Any, source: str) -> FeatureSpec:
    if not isinstance(raw, Mapping):
        raise _fail(source, "<root>", f"must be a mapping, got {type(raw).__name__}")
    _check_keys(
        raw,
        {"name", "timestamp_key", "label_keys", "features", "crosses"},
        source,
        "<root>",
    )
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(source, "name", "required non-empty string")
    feats = raw.get("features")
    if not isinstance(feats, list) or not feats:
        raise _fail(source, "features", "required non-empty list")
    features = tuple(
        _parse_feature(f, source, f"features[{i}]") for i, f in enumerate(feats)
    )
    seen: set[str] = set()
    for i, f in enumerate(features):
        if f.name in seen:
            raise _fail(source, f"features[{i}].name", f"duplicate feature {f.name!r}")
        seen.add(f.name)
    labels = raw.get("label_keys", [LABEL_KEY])
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(x, str) and x for x in labels)
    ):
        raise _fail(
            source, "label_keys", f"must be a non-empty list of names, got {labels!r}"
        )
    ts = raw.get("timestamp_key", TIMESTAMP_KEY)
    if not isinstance(ts, str) or not ts:
        raise _fail(source, "timestamp_key", f"must be a non-empty string, got {ts!r}")
    reserved = {ts, *labels}
    for i, f in enumerate(features):
        if f.name in reserved:
            raise _fail(
                source, f"features[{i}].name", f"{f.name!r} is the timestamp or a label"
            )
    crosses = []
    for i, c in enumerate(raw.get("crosses") or []):
        where = f"crosses[{i}]"
        if not isinstance(c, Mapping):
            raise _fail(source, where, "must be a mapping")
        _check_keys(c, {"features", "hash_buckets"}, source, where)
        names = c.get("features")
        if not isinstance(names, list) or len(names) < 2:
            raise _fail(source, f"{where}.features", "needs at least two feature names")
        for n in names:
            if n not in seen:
                raise _fail(source, f"{where}.features", f"unknown feature {n!r}")
        buckets = _pos_int(
            c.get("hash_buckets", 2**14), source, f"{where}.hash_buckets"
        )
        crosses.append(CrossConfig(features=tuple(names), hash_buckets=buckets))
    return FeatureSpec(
        name=name,
        features=features,
        timestamp_key=ts,
        label_keys=tuple(labels),
        crosses=tuple(crosses),
    )


def head_size(vocab_size: int, share: float) -> int:
    """Tier boundary for a share of the vocabulary: ceil(share * n) (ALGORITHMS 2.1)."""
    return min(vocab_size, math.ceil(share * vocab_size - 1e-9))


def tier_boundaries(vocab_size: int, shares: Sequence[float]) -> list[int]:
    """Cumulative end index of each tier but the last, for shares of a ranked vocab."""
    return [head_size(vocab_size, s) for s in shares]
