"""Wide & Deep (Cheng et al., DLRS 2016) over compressed embeddings.

The wide part is a linear logit: a 1-wide table per categorical feature, per bucketized
numeric and per hashed cross, plus a bias. The deep part concatenates each feature's
embedding (built by :func:`trainer.layers.factory.build_embedding` from the feature's
treatment: full, hashing, double/hybrid hashing, DPQ or MGQE) and feeds a ReLU MLP. The
two logits are added and trained with one logistic loss; the training loop applies FTRL to
:attr:`WideAndDeep.wide_variables` and Adagrad/Adam to the rest.

Inputs are the ids of :mod:`trainer.preprocessing` (see docs/ARCHITECTURE.md), keyed by
``transformed_name(feature)``.

Example:
    >>> spec = load_feature_spec("specs/features/synthetic.yaml")   # doctest: +SKIP
    >>> model = WideAndDeep(spec.to_dict(), table_rows)               # doctest: +SKIP
    >>> logits = model(batch)  # (batch,)                             # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.contracts.features import (
    HASH_KINDS,
    FeatureSpec,
    Treatment,
    transformed_name,
)
from trainer.layers.factory import (
    build_embedding,
    feature_embedding_config,
    ids_per_example,
)


@keras.saving.register_keras_serializable(package="compactrec")
class WideAndDeep(keras.Model):
    """Joint wide (linear over sparse + crossed ids) and deep (embeddings + MLP) model.

    Args:
        feature_spec: ``FeatureSpec.to_dict()`` of the (effective) feature spec.
        table_rows: Rows of each feature's id space (see :func:`table_rows_from_artifacts`).
        hidden_units: Widths of the ReLU layers (the paper: 1024, 512, 256).
        dropout: Dropout after each hidden layer.
    """

    def __init__(
        self,
        feature_spec: Mapping[str, Any],
        table_rows: Mapping[str, int],
        hidden_units: tuple[int, ...] | list[int] = (256, 128, 64),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_spec = dict(feature_spec)
        self.spec = FeatureSpec.from_dict(self.feature_spec, source="WideAndDeep")
        self.table_rows = {k: int(v) for k, v in table_rows.items()}
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)
        for f in self.spec.features:
            if f.treatment is not Treatment.NUMERIC and f.name not in self.table_rows:
                raise ValueError(f"`table_rows` has no entry for feature {f.name!r}")
        self.deep_embeddings: dict[str, keras.layers.Layer] = {}
        self.wide_tables: dict[str, keras.layers.Layer] = {}
        self._build_tables()
        self.mlp = [
            keras.layers.Dense(u, activation="relu", name=f"hidden_{i}")
            for i, u in enumerate(self.hidden_units)
        ]
        self.dropouts = [keras.layers.Dropout(self.dropout) for _ in self.hidden_units]
        self.deep_logit = keras.layers.Dense(1, name="deep_logit")
        self.wide_bias = self.add_weight(
            name="wide_bias", shape=(), initializer="zeros"
        )
        self._build_sublayers()

    def _build_sublayers(self) -> None:
        """Creates every sub-layer weight now, outside the model's name scope.

        Built lazily inside the first call, weights would be named
        ``wide_and_deep/emb_x/...`` in the trained model but ``emb_x/...`` in the same
        model loaded from ``.keras``; warm start and checkpoints match weights by path,
        so both must agree. (A lazy build inside Keras' symbolic first call would also
        drop MGQE's default ``row_tier`` assignment.)
        """
        for layer in [*self.deep_embeddings.values(), *self.wide_tables.values()]:
            layer.build()
        width = sum(
            getattr(self.deep_embeddings.get(f.name), "output_dim", 1)
            for f in self.spec.features
        )
        for dense in self.mlp:
            dense.build((None, width))
            width = dense.units
        self.deep_logit.build((None, width))

    def _build_tables(self) -> None:
        from trainer.config import EmbeddingConfig

        for f in self.spec.categorical:
            cfg = feature_embedding_config(f)
            rows = self.table_rows[f.name]
            extra = {"dictionary_size": rows - 1} if cfg.kind == "hybrid" else {}
            self.deep_embeddings[f.name] = build_embedding(
                cfg, rows, f"emb_{f.name}", **extra
            )
            wide_kind = cfg.kind if cfg.kind in HASH_KINDS else "full"
            wide_cfg = dataclasses.replace(cfg, kind=wide_kind, dim=1, combiner="sum")
            self.wide_tables[f.name] = build_embedding(
                wide_cfg, rows, f"wide_{f.name}", **extra
            )
        for f in self.spec.numeric:
            if f.treatment is Treatment.BUCKETIZED:
                rows = self.table_rows[f.name]
                cfg = EmbeddingConfig(kind="full", dim=f.embedding_dim)
                self.deep_embeddings[f.name] = build_embedding(
                    cfg, rows, f"emb_{f.name}"
                )
                self.wide_tables[f.name] = build_embedding(
                    dataclasses.replace(cfg, dim=1), rows, f"wide_{f.name}"
                )
        for c in self.spec.crosses:
            cfg = EmbeddingConfig(kind="full", dim=1)
            self.wide_tables[c.name] = build_embedding(
                cfg, c.hash_buckets, f"wide_{c.name}"
            )

    # ---------------------------------------------------------------------- forward

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> Any:
        """Dict of id tensors -> logits of shape (batch,)."""
        wide_terms = []
        for name, table in self.wide_tables.items():
            wide_terms.append(ops.reshape(table(inputs[transformed_name(name)]), (-1,)))
        wide = ops.sum(ops.stack(wide_terms, axis=-1), axis=-1) + self.wide_bias
        parts = []
        for f in self.spec.features:
            key = transformed_name(f.name)
            if f.name in self.deep_embeddings:
                emb = self.deep_embeddings[f.name](inputs[key], training=training)
                parts.append(ops.reshape(emb, (ops.shape(emb)[0], -1)))
            else:  # raw numeric
                parts.append(ops.reshape(ops.cast(inputs[key], "float32"), (-1, 1)))
        x = ops.concatenate(parts, axis=-1)
        for dense, drop in zip(self.mlp, self.dropouts, strict=True):
            x = drop(dense(x), training=training)
        deep = ops.reshape(self.deep_logit(x), (-1,))
        return wide + deep

    # ------------------------------------------------------------------ variables

    @property
    def wide_variables(self) -> list[Any]:
        """Trainable variables of the linear part (FTRL)."""
        out = [self.wide_bias]
        for table in self.wide_tables.values():
            out.extend(table.trainable_variables)
        return out

    @property
    def deep_variables(self) -> list[Any]:
        """Every other trainable variable (Adagrad / Adam)."""
        wide_ids = {id(v) for v in self.wide_variables}
        return [v for v in self.trainable_variables if id(v) not in wide_ids]

    def serving_bits(self) -> int:
        """Bits to serve the whole model (:func:`trainer.serving.tables.size_of`)."""
        from trainer.serving import tables

        layers = [*self.deep_embeddings.values(), *self.wide_tables.values()]
        return tables.size_of(self, {t.name: t for t in layers}).serving_bits

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "feature_spec": self.feature_spec,
            "table_rows": self.table_rows,
            "hidden_units": list(self.hidden_units),
            "dropout": self.dropout,
        }


def dummy_inputs(spec: FeatureSpec, batch: int = 2) -> dict[str, np.ndarray]:
    """Zero ids of the right shapes, to build a model's weights."""
    out: dict[str, np.ndarray] = {}
    for f in spec.categorical:
        n = ids_per_example(feature_embedding_config(f).kind)
        shape = (batch,) if n == 1 else (batch, n)
        out[transformed_name(f.name)] = np.zeros(shape, dtype="int64")
    for f in spec.numeric:
        dtype = "float32" if f.treatment is Treatment.NUMERIC else "int64"
        out[transformed_name(f.name)] = np.zeros((batch,), dtype=dtype)
    for c in spec.crosses:
        out[transformed_name(c.name)] = np.zeros((batch,), dtype="int64")
    return out
