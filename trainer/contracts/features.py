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
import re
from collections.abc import Mapping, Sequence
from typing import Any

from trainer.contracts import typed_config

TIMESTAMP_KEY = "event_ts"
LABEL_KEY = "label"
MAX_CENTROIDS = 2**16
# Column names become file names (stats artifacts, vocabularies) and TF feature keys.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


class FeatureSpecError(ValueError):
    """A feature spec failed validation; the message names the file and field."""


class EmbeddingKind(enum.StrEnum):
    """THE list of compression kinds of an id table (trainer config ``embedding.kind``).

    The categorical :class:`Treatment` values of the feature spec are a subset; ``lrf``
    and ``sq`` exist only for the ranking models' tables.
    """

    FULL = "full"  # one row per id
    HASH = "hash"  # one salted hash into `hash_buckets` rows
    DOUBLE_HASH = "double_hash"  # two salted hashes (Zhang et al. 2020)
    HYBRID = "hybrid"  # top-k dictionary rows, the rest double-hashed
    LRF = "lrf"  # low-rank factorisation of the table
    SQ = "sq"  # post-training scalar quantization
    DPQ = "dpq"  # DPQ-VQ (Chen et al. 2020)
    MGQE = "mgqe"  # frequency tiers over DPQ (Kang et al. 2020)


EMBEDDING_KINDS = tuple(k.value for k in EmbeddingKind)
HASH_KINDS = tuple(
    k.value
    for k in (EmbeddingKind.HASH, EmbeddingKind.DOUBLE_HASH, EmbeddingKind.HYBRID)
)
QUANTIZED_KINDS = (EmbeddingKind.DPQ.value, EmbeddingKind.MGQE.value)


class Kind(enum.StrEnum):
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"


class Treatment(enum.StrEnum):
    """How a feature is turned into ids and embedded.

    A categorical treatment's value is its :class:`EmbeddingKind`.
    """

    FULL = EmbeddingKind.FULL.value  # dictionary rows (capped at top_k) + 1 OOV row
    HASH = EmbeddingKind.HASH.value
    DOUBLE_HASH = EmbeddingKind.DOUBLE_HASH.value  # summed or concatenated
    HYBRID = EmbeddingKind.HYBRID.value
    DPQ = EmbeddingKind.DPQ.value  # dictionary ids, DPQ-VQ embedding
    MGQE = EmbeddingKind.MGQE.value  # dictionary ids, frequency tiers, MGQE
    BUCKETIZED = "bucketized"  # numeric -> percentile bucket id
    NUMERIC = "numeric"  # numeric, standardized, fed to the deep part as-is


_CATEGORICAL_TREATMENTS = frozenset(t for t in Treatment if t.value in EMBEDDING_KINDS)
_NUMERIC_TREATMENTS = frozenset({Treatment.BUCKETIZED, Treatment.NUMERIC})


def embedding_kind(treatment: Treatment) -> str:
    """The :data:`EMBEDDING_KINDS` entry that embeds a feature of this treatment.

    A bucketized numeric's bucket ids get a full table; a plain numeric has none.
    """
    if treatment is Treatment.BUCKETIZED:
        return EmbeddingKind.FULL.value
    if treatment not in _CATEGORICAL_TREATMENTS:
        raise ValueError(f"treatment {treatment.value!r} has no embedding table")
    return treatment.value


def check_non_increasing(
    field: str,
    values: Sequence[int],
    symbol: str = "K",
    error: type[ValueError] = ValueError,
) -> None:
    """THE check of MGQE's ``K_1 >= ... >= K_m`` (and ``D_1 >= ... >= D_m``).

    MGQE paper (Kang et al. 2020): hotter tiers get at least as many centroids
    (variable K) or subspaces (variable D) as colder ones.

    Raises:
        error: ``"<field>: must not increase (K_1 >= K_2 >= ...), got [...]"``.
    """
    values = list(values)
    if any(b > a for a, b in zip(values, values[1:], strict=False)):
        raise error(
            f"{field}: must not increase ({symbol}_1 >= {symbol}_2 >= ...), "
            f"got {values}"
        )


def check_name(field: str, name: str, error: type[ValueError] = FeatureSpecError):
    """A column name must be a safe file name: ``[A-Za-z0-9_][A-Za-z0-9_.-]*``."""
    if not _SAFE_NAME.fullmatch(name):
        raise error(
            f"{field}: {name!r} is not a safe column name (letters, digits, '_', "
            "'.', '-'; not starting with '.' or '-'; at most 128 characters)"
        )


def _fail(field: str, message: str) -> FeatureSpecError:
    return FeatureSpecError(f"{field}: {message}")


def _positive(field: str, value: int) -> None:
    if value < 1:
        raise _fail(field, f"must be an integer >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """One feature and its treatment; every rule is checked on construction.

    Attributes:
        name: Column name in the event log (a safe file name, see :func:`check_name`).
        kind: ``categorical`` (string values) or ``numeric`` (float values).
        treatment: See :class:`Treatment`; default ``hybrid`` for a categorical and
            ``bucketized`` for a numeric feature.
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

    Raises:
        FeatureSpecError: ``"<field>: <message>"`` for any broken rule.
    """

    name: str
    kind: Kind = Kind.CATEGORICAL
    treatment: Treatment = None  # type: ignore[assignment]  # set from kind
    embedding_dim: int = 16
    top_k: int = 10_000
    hash_buckets: int = 2**14
    hash_combiner: str = "sum"
    tier_shares: tuple[float, ...] = (0.1,)
    tier_min_counts: tuple[int, ...] = ()
    num_subspaces: int = 8
    num_centroids: tuple[int, ...] = (256, 64)
    num_buckets: int = 10

    def __post_init__(self) -> None:
        check_name("name", self.name)
        if self.treatment is None:
            categorical = self.kind is Kind.CATEGORICAL
            default = Treatment.HYBRID if categorical else Treatment.BUCKETIZED
            object.__setattr__(self, "treatment", default)
        allowed = (
            _CATEGORICAL_TREATMENTS
            if self.kind is Kind.CATEGORICAL
            else _NUMERIC_TREATMENTS
        )
        if self.treatment not in allowed:
            raise _fail(
                "treatment",
                f"{self.treatment.value!r} is not valid for a {self.kind.value} "
                f"feature; use one of {sorted(t.value for t in allowed)}",
            )
        for field in (
            "embedding_dim",
            "top_k",
            "hash_buckets",
            "num_subspaces",
            "num_buckets",
        ):
            _positive(field, getattr(self, field))
        if self.hash_combiner not in ("sum", "concat"):
            raise _fail(
                "hash_combiner",
                f"must be 'sum' or 'concat', got {self.hash_combiner!r}",
            )
        self._check_tiers()
        if self.treatment in (Treatment.DPQ, Treatment.MGQE):
            if self.embedding_dim % self.num_subspaces:
                raise _fail(
                    "num_subspaces",
                    f"embedding_dim {self.embedding_dim} is not divisible by "
                    f"{self.num_subspaces}",
                )
        if self.treatment is Treatment.MGQE and len(self.num_centroids) not in (
            1,
            self.num_tiers,
        ):
            raise _fail(
                "num_centroids",
                f"needs one K per tier ({self.num_tiers} tiers), "
                f"got {list(self.num_centroids)}",
            )
        if self.hash_combiner == "concat" and self.embedding_dim % 2:
            raise _fail("embedding_dim", "must be even with hash_combiner concat")

    def _check_tiers(self) -> None:
        shares = list(self.tier_shares)
        if not all(0 < s < 1 for s in shares):
            raise _fail("tier_shares", f"must be shares in (0, 1), got {shares}")
        if any(b <= a for a, b in zip(shares, shares[1:], strict=False)):
            raise _fail("tier_shares", f"must increase, got {shares}")
        counts = list(self.tier_min_counts)
        if not all(c > 0 for c in counts):
            raise _fail("tier_min_counts", f"must be positive, got {counts}")
        if any(b >= a for a, b in zip(counts, counts[1:], strict=False)):
            raise _fail("tier_min_counts", f"must strictly decrease, got {counts}")
        ks = list(self.num_centroids)
        if not ks or not all(2 <= k <= MAX_CENTROIDS for k in ks):
            raise _fail(
                "num_centroids", f"must be integers in [2, {MAX_CENTROIDS}], got {ks}"
            )
        check_non_increasing("num_centroids", ks, "K", FeatureSpecError)

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
    """A crossed feature for the wide part: hashed cross of categorical (or bucketized
    numeric) features, each named once."""

    features: tuple[str, ...]
    hash_buckets: int = 2**14

    def __post_init__(self) -> None:
        if len(self.features) < 2:
            raise _fail("features", "needs at least two feature names")
        repeated = sorted({n for n in self.features if self.features.count(n) > 1})
        if repeated:
            raise _fail("features", f"crosses {repeated[0]!r} with itself")
        _positive("hash_buckets", self.hash_buckets)

    @property
    def name(self) -> str:
        return "_x_".join(self.features)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The whole feature spec: timestamp, labels, features and crosses.

    Raises:
        FeatureSpecError: on construction, naming the field of any broken rule.
    """

    name: str
    features: tuple[FeatureConfig, ...]
    timestamp_key: str = TIMESTAMP_KEY
    label_keys: tuple[str, ...] = (LABEL_KEY,)
    crosses: tuple[CrossConfig, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise _fail("name", "required non-empty string")
        if not self.features:
            raise _fail("features", "required non-empty list")
        check_name("timestamp_key", self.timestamp_key)
        if not self.label_keys:
            raise _fail("label_keys", "must be a non-empty list of names")
        for i, label in enumerate(self.label_keys):
            check_name(f"label_keys[{i}]", label)
            if label in self.label_keys[:i]:
                raise _fail(f"label_keys[{i}]", f"duplicate label {label!r}")
            if label == self.timestamp_key:
                raise _fail(f"label_keys[{i}]", f"{label!r} is also the timestamp_key")
        reserved = {self.timestamp_key, *self.label_keys}
        by_name: dict[str, FeatureConfig] = {}
        for i, f in enumerate(self.features):
            if f.name in by_name:
                raise _fail(f"features[{i}].name", f"duplicate feature {f.name!r}")
            if f.name in reserved:
                raise _fail(
                    f"features[{i}].name", f"{f.name!r} is the timestamp or a label"
                )
            by_name[f.name] = f
        seen_crosses: dict[frozenset[str], int] = {}
        for i, c in enumerate(self.crosses):
            for n in c.features:
                if n not in by_name:
                    raise _fail(f"crosses[{i}].features", f"unknown feature {n!r}")
                if by_name[n].treatment is Treatment.NUMERIC:
                    raise _fail(
                        f"crosses[{i}].features",
                        f"{n!r} is a plain numeric; cross categorical or "
                        "bucketized features",
                    )
            key = frozenset(c.features)
            if key in seen_crosses:
                raise _fail(
                    f"crosses[{i}].features",
                    f"same features as crosses[{seen_crosses[key]}]",
                )
            seen_crosses[key] = i

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
        return typed_config.to_plain(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<dict>") -> FeatureSpec:
        """Validates a parsed YAML/JSON mapping into a spec.

        Raises:
            FeatureSpecError: naming ``source`` and the offending field.
        """
        return typed_config.build(cls, raw, source=source, error=FeatureSpecError)


def load_feature_spec(path: str) -> FeatureSpec:
    """Reads and validates a YAML feature spec from a local path.

    Raises:
        FeatureSpecError: if the file is missing, a directory, not UTF-8, not YAML
            (duplicate keys included), or any field is invalid; the message names
            the file and the field.
    """
    raw = typed_config.load_yaml(path, "feature spec file", FeatureSpecError)
    return FeatureSpec.from_dict(raw, source=path)


def transformed_name(key: str) -> str:
    """Name of the transformed (id) column for a raw feature key (TFX convention)."""
    return f"{key}_xf"


def head_size(vocab_size: int, share: float) -> int:
    """Tier boundary for a share of the vocabulary: ``ceil(share * n)``.

    MGQE paper (Kang et al. 2020) splits the frequency-ranked vocabulary by hand-chosen
    shares (head = top 10 % by default) without stating the rounding; ceil is ours.
    """
    return min(vocab_size, math.ceil(share * vocab_size - 1e-9))


def tier_boundaries(vocab_size: int, shares: Sequence[float]) -> list[int]:
    """Cumulative end index of each tier but the last, for shares of a ranked vocab."""
    return [head_size(vocab_size, s) for s in shares]
