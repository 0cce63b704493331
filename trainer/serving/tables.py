"""The served form of an embedding table and the serving size of a model: ONE place.

Every path that serves or sizes a model goes through this module: the wide-and-deep
export and the ranking export (:mod:`trainer.serving.export`,
:mod:`trainer.serving.ranking_export`), the ranking evaluation
(:mod:`trainer.evaluation.ranking`), the reproductions' tables and the reports.

* :func:`serving_layer` is THE post-training transformation of one trained table: DPQ /
  MGQE layers become a :class:`~trainer.layers.compact_embedding.CompactCodebookEmbedding`
  (codes + centroids, the query table dropped; DPQ, Chen, Li & Sun 2020, sec. 3; MGQE,
  Kang et al. 2020, sec. 3.3), a float table asked for scalar quantization (SQ, MGQE
  paper, Table 1) becomes a
  :class:`~trainer.layers.scalar_quantized_embedding.ScalarQuantizedEmbedding`, every
  other table is served as trained. :func:`sq_layer` is the one SQ step; the ranking
  evaluation uses the same layer's dequantized table in place
  (:func:`serving_tables`), so evaluated, sized and exported SQ models are one model.
* :func:`table_bits` and :func:`size_of` are THE size accounting of a model: each table's
  ``serving_bits()`` (the per-kind formulas of :mod:`trainer.serving.sizes`, MGQE
  paper, Table 1) plus 32 bits per remaining (dense) parameter; :func:`model_size` is
  the ranking models' "model size %" against the same model with float tables.

Example:
    >>> size = model_size(gmf, gmf.embedding_config)   # doctest: +SKIP
    >>> round(size.percent, 2)                          # GMF DPQ on ML-1M  # doctest: +SKIP
    30.42
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from keras import ops

from trainer.serving import sizes

__all__ = [
    "ModelSize",
    "ServingInfo",
    "compressed_roles",
    "model_size",
    "serving_layer",
    "serving_tables",
    "size_of",
    "sq_layer",
    "table_bits",
]


# ------------------------------------------------------------------ the served table


@dataclasses.dataclass
class ServingInfo:
    """What an export replaced, by table name, and the SQ tables' served values.

    Attributes:
        replaced: ``{name: "TrainedLayer -> ServingLayer"}``.
        sq_tables: ``{name: (n, d) float32}`` dequantized values of each SQ table: the
            reload check's reference model holds these
            (:func:`trainer.serving.checks.verify`).
    """

    replaced: dict[str, str] = dataclasses.field(default_factory=dict)
    sq_tables: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def sq_layer(layer: Any, bits: int, name: str | None = None) -> Any:
    """THE scalar quantization of a trained float table (MGQE paper, Table 1, SQ).

    Args:
        layer: A built layer with an ``embeddings`` ``(n, d)`` float table
            (:class:`~trainer.layers.full_embedding.FullEmbedding`).
        bits: Bits per value.
        name: Name of the new layer (default: ``layer.name``).

    Returns:
        A built ``ScalarQuantizedEmbedding`` (per-column min/max, ``2^b`` levels).
    """
    from trainer.layers.scalar_quantized_embedding import ScalarQuantizedEmbedding

    table = ops.convert_to_numpy(layer.embeddings)
    return ScalarQuantizedEmbedding.from_table(
        table, bits=int(bits), name=name or layer.name
    )


def dequantized_table(quantized: Any) -> np.ndarray:
    """Every row of a ``ScalarQuantizedEmbedding`` as float32 ``(n, d)`` (NumPy)."""
    arrays = quantized.export_compact()
    return quantized.compact_lookup(arrays, np.arange(quantized.num_rows))


def serving_layer(
    layer: Any,
    sq_bits: int | None = None,
    packed_codes: bool = False,
    name: str | None = None,
) -> tuple[Any, str] | None:
    """The serving form of one trained table, or None if it is served as trained.

    Args:
        layer: A built, trained embedding layer.
        sq_bits: Scalar-quantize this table (it must hold a float ``embeddings``
            table) to this many bits; None or 0: no SQ.
        packed_codes: Serve DPQ/MGQE codes bit-packed at ``ceil(log2 K)`` bits.
        name: Name of the new layer (default: ``layer.name``).

    Returns:
        ``(new_layer, description)`` (e.g. ``"MGQEEmbedding -> CompactCodebookEmbedding"``),
        or None for a table served as trained (full, hashing, hybrid, LRF without SQ).

    Raises:
        ValueError: if SQ is asked for a table without a float ``embeddings`` table.
    """
    from trainer.layers.compact_embedding import CompactCodebookEmbedding
    from trainer.layers.dpq_embedding import DPQEmbedding
    from trainer.layers.mgqe_embedding import MGQEEmbedding

    name = name or layer.name
    if isinstance(layer, DPQEmbedding | MGQEEmbedding):
        new = CompactCodebookEmbedding.from_arrays(
            layer.export_compact(), packed=packed_codes, name=name
        )
        return new, f"{type(layer).__name__} -> CompactCodebookEmbedding"
    if sq_bits:
        if not hasattr(layer, "embeddings"):
            raise ValueError(
                f"{layer.name}: scalar quantization needs a float table; "
                f"{type(layer).__name__} has none"
            )
        new = sq_layer(layer, sq_bits, name)
        return new, f"{type(layer).__name__} -> ScalarQuantizedEmbedding({sq_bits})"
    return None


def compressed_roles(tables: Mapping[str, Any], cfg: Any) -> list[str]:
    """The ranking tables the embedding config compresses (users only if asked)."""
    return [r for r in tables if cfg.compress_users or "user" not in r]


def sq_bits_by_role(model: Any, cfg: Any) -> dict[str, int]:
    """``{role: bits}`` of the tables an ``sq`` ranking model serves quantized."""
    if cfg.kind != "sq":
        return {}
    return {r: int(cfg.bits) for r in compressed_roles(model.embedding_tables(), cfg)}


@contextlib.contextmanager
def serving_tables(model: Any, cfg: Any) -> Iterator[None]:
    """Inside the block, an ``sq`` ranking model's tables hold their served values.

    Scalar quantization is post-training (MGQE paper, Table 1): the float tables train,
    and evaluation uses the dequantized table of :func:`sq_layer`, the layer the
    export serves. Other kinds are evaluated as they are. The float tables are restored
    on exit.

    Args:
        model: A ranking model (has ``embedding_tables()``).
        cfg: Its :class:`~trainer.config.EmbeddingConfig`.
    """
    saved = []
    tables = model.embedding_tables()
    for role, bits in sq_bits_by_role(model, cfg).items():
        layer = tables[role]
        saved.append((layer, ops.convert_to_numpy(layer.embeddings)))
        layer.embeddings.assign(dequantized_table(sq_layer(layer, bits)))
    try:
        yield
    finally:
        for layer, table in saved:
            layer.embeddings.assign(table)


# ---------------------------------------------------------------- size accounting


def table_bits(layer: Any, sq_bits: int | None = None) -> int:
    """Serving bits of one table: its ``serving_bits()``, or SQ's ``n d b + 2 d 32``.

    Args:
        layer: An embedding layer (trained or serving form).
        sq_bits: The table is served scalar-quantized at this many bits
            (:func:`trainer.serving.sizes.sq_bits`).
    """
    if sq_bits:
        return sizes.sq_bits(int(layer.num_rows), int(layer.output_dim), int(sq_bits))
    return int(layer.serving_bits())


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Serving size of a model (MGQE paper, Table 1; sec. 5.1 "model size").

    Attributes:
        table_bits: Serving bits of each embedding table, by name (role).
        full_table_bits: Bits of the same tables in the baseline (float32 tables).
        dense_params: Every other parameter (32 bits each in both models).
        percent: "Model size %", via :func:`trainer.serving.sizes.model_size_percent`.
    """

    table_bits: dict[str, int]
    full_table_bits: dict[str, int]
    dense_params: int
    percent: float

    @property
    def dense_bits(self) -> int:
        """Bits of the dense parameters."""
        return sizes.FLOAT_BITS * self.dense_params

    @property
    def serving_bits(self) -> int:
        """Total serving bits of the model."""
        return sum(self.table_bits.values()) + self.dense_bits

    @property
    def full_bits(self) -> int:
        """Total bits of the baseline model."""
        return sum(self.full_table_bits.values()) + self.dense_bits


def size_of(
    model: Any,
    tables: Mapping[str, Any],
    sq_bits: Mapping[str, int] | None = None,
    full_table_bits: Mapping[str, int] | None = None,
) -> ModelSize:
    """THE size of a model: its tables' serving bits + 32 bits per dense parameter.

    Args:
        model: The model (its ``weights``).
        tables: Its embedding tables by name; every weight of theirs counts as table.
        sq_bits: ``{name: bits}`` of the tables served scalar-quantized.
        full_table_bits: Baseline bits per table; default ``32 n d`` (float table of
            the same rows and width), or the table's own bits for a table without
            rows (hashing).

    Returns:
        The :class:`ModelSize`.
    """
    sq_bits = sq_bits or {}
    table_ids = {id(w) for layer in tables.values() for w in layer.weights}
    dense = sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in table_ids)
    bits = {n: table_bits(layer, sq_bits.get(n)) for n, layer in tables.items()}
    given = full_table_bits or {}
    full = {
        n: int(given[n]) if n in given else _float_table_bits(layer, bits[n])
        for n, layer in tables.items()
    }
    percent = sizes.model_size_percent(bits.values(), dense, full.values())
    return ModelSize(bits, full, dense, percent)


def _float_table_bits(layer: Any, own_bits: int) -> int:
    if not hasattr(layer, "num_rows"):
        return own_bits
    return sizes.full_bits(int(layer.num_rows), int(layer.output_dim))


def model_size(model: Any, cfg: Any) -> ModelSize:
    """Size of a ranking model (GMF, NeuMF, SASRec) against its float-table twin.

    ``sq`` tables count at their quantized size (:func:`sq_bits_by_role`).

    Args:
        model: A built ranking model (has ``embedding_tables()``).
        cfg: Its :class:`~trainer.config.EmbeddingConfig`.

    Example:
        >>> model_size(GMF(6040, 3416, cfg), cfg).percent   # doctest: +SKIP
    """
    return size_of(model, model.embedding_tables(), sq_bits_by_role(model, cfg))
