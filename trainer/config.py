"""Trainer configuration: typed dataclasses parsed from ``specs/experiments/*.yaml``.

Model code takes these dataclasses, never raw dicts. :meth:`TrainerConfig.from_dict`
validates every field and raises :class:`ConfigError` naming the field path, e.g.
``experiments/gmf.yaml: model.embedding.kind: 'foo' is not one of [...]``.

Example:
    >>> cfg = TrainerConfig.from_dict({"name": "demo", "model": {"name": "gmf"}})
    >>> cfg.model.embedding.kind
    'full'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from trainer.contracts import typed_config
from trainer.contracts.features import EMBEDDING_KINDS, check_non_increasing

MODEL_NAMES = ("wide_deep", "gmf", "neumf", "sasrec")
# One meaning per name: trainer.training.optimizers.OPTIMIZERS (adam is dense Adam).
OPTIMIZER_NAMES = ("sgd", "adam", "lazy_adam", "sparse_adagrad", "sparse_ftrl")
MGQE_VARIANTS = ("shared", "unshared_k", "unshared_d")


class ConfigError(ValueError):
    """A trainer config failed validation; the message names the field."""


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {list(allowed)}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    """How categorical ids are embedded (the compression method).

    For the ranking models it is the treatment of the user/item tables. Wide-and-deep
    takes each feature's treatment from the feature spec instead (one spec per
    compression variant, e.g. ``specs/features/synthetic_full.yaml``).
    """

    kind: str = "full"
    dim: int = 64
    rank: int = 48  # lrf
    bits: int = 8  # sq
    num_subspaces: int = 64  # dpq / mgqe D
    num_centroids: tuple[int, ...] = (256,)  # dpq (K,), mgqe (K_1, ..., K_m)
    tier_shares: tuple[float, ...] = (0.1,)  # mgqe head share(s)
    mgqe_variant: str = "shared"
    num_subspaces_per_tier: tuple[int, ...] = ()  # mgqe unshared_d
    lookup: str = "masked"  # mgqe: masked | groupwise
    response_batchnorm: bool = False
    hash_buckets: int = 2**14  # hash, double_hash, hybrid
    top_k: int = 0  # hybrid dictionary size (0 = from the feature spec)
    combiner: str = "sum"
    shared_table: bool = False
    compress_users: bool = True  # ranking models: compress the user table(s) too

    def __post_init__(self) -> None:
        _one_of("kind", self.kind, EMBEDDING_KINDS)
        _one_of("mgqe_variant", self.mgqe_variant, MGQE_VARIANTS)
        _one_of("lookup", self.lookup, ("masked", "groupwise"))
        _one_of("combiner", self.combiner, ("sum", "concat"))
        for name in ("dim", "rank", "bits", "num_subspaces", "hash_buckets"):
            _positive(name, getattr(self, name))
        if self.kind in ("dpq", "mgqe") and self.dim % self.num_subspaces:
            raise ConfigError(
                f"num_subspaces: dim {self.dim} is not divisible by {self.num_subspaces}"
            )
        check_non_increasing("num_centroids", self.num_centroids, "K", ConfigError)
        if self.bits > 16:
            raise ConfigError(f"bits: at most 16, got {self.bits}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The backbone and its sizes."""

    name: str = "wide_deep"
    embedding: EmbeddingConfig = dataclasses.field(default_factory=EmbeddingConfig)
    hidden_units: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.0
    maxlen: int = 50  # sasrec
    num_blocks: int = 2  # sasrec
    num_heads: int = 1  # sasrec

    def __post_init__(self) -> None:
        _one_of("name", self.name, MODEL_NAMES)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        for u in self.hidden_units:
            _positive("hidden_units", u)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """One optimizer; wide_deep uses two (FTRL wide, Adagrad/Adam deep).

    The default is row-sparse (``lazy_adam``); the ranking specs name ``adam``.
    """

    name: str = "lazy_adam"
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    initial_accumulator_value: float = 0.1
    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        _one_of("name", self.name, OPTIMIZER_NAMES)
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Loop settings: batch, epochs or steps, checkpoints, seeds."""

    batch_size: int = 256
    epochs: int = 1
    max_steps: int = 0  # 0 = no limit
    checkpoint_every: int = 500
    log_every: int = 100
    seed: int = 0
    num_negatives: int = 4  # gmf/neumf training negatives per positive
    eval_batch_size: int = 1024
    mixed_precision: bool = False

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "epochs",
            "checkpoint_every",
            "log_every",
            "eval_batch_size",
        ):
            _positive(name, getattr(self, name))
        if self.max_steps < 0:
            raise ConfigError(f"max_steps: must be >= 0, got {self.max_steps}")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Everything one training run needs besides its data paths."""

    name: str
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    wide_optimizer: OptimizerConfig = dataclasses.field(
        default_factory=lambda: OptimizerConfig(name="sparse_ftrl", learning_rate=0.05)
    )
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    feature_spec: str = "specs/features/synthetic.yaml"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<dict>") -> TrainerConfig:
        """Validates a parsed mapping; raises :class:`ConfigError` naming the field."""
        return typed_config.build(cls, raw, source=source, error=ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return typed_config.to_plain(self)

    def replace(self, **sections: Any) -> TrainerConfig:
        return dataclasses.replace(self, **sections)


def parse_overrides(
    items: Sequence[str], sections: Sequence[str] | None = None
) -> dict[str, Any]:
    """``--set KEY=VALUE`` items -> dotted overrides for :func:`load_config`.

    Args:
        items: ``["training.max_steps=10", ...]``; each VALUE is read as YAML.
        sections: If given, the only top-level sections a KEY may name.

    Raises:
        ConfigError: naming the bad item (no ``=``, another section, not YAML).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if sections is not None and key.split(".")[0] not in sections:
            allowed = ", ".join(f"{s}.*" for s in sections)
            raise ConfigError(f"--set {item!r}: only {allowed} fields")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or "not valid YAML"
            raise ConfigError(
                f"--set {item!r}: VALUE is not YAML ({problem})"
            ) from None
    return out


def load_config(path: str, overrides: Mapping[str, Any] | None = None) -> TrainerConfig:
    """Reads ``specs/experiments/NAME.yaml``; ``overrides`` are dotted keys.

    Example: ``load_config(p, {"training.max_steps": 2})``.
    """
    raw = typed_config.load_yaml(path, "experiment config", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: <root>: must be a mapping, got {type(raw).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: i + 1])
                raise ConfigError(
                    f"{path}: {where}: is not a section (override {dotted})"
                )
        node[leaf] = value
    return TrainerConfig.from_dict(raw, source=path)
