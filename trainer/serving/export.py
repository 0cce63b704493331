"""Exports a trained model as ONE raw-feature serving SavedModel, compact embeddings.

``python -m trainer.serving.export --model MODEL_DIR --out EXPORT_DIR`` (library:
:func:`export_serving_model`). The ``serving_default`` signature takes the RAW feature
values of :func:`trainer.preprocessing.serving_input_signature` (``tf.string`` per
categorical, ``""`` = missing; ``float32`` per numeric, NaN = missing), runs
:class:`trainer.preprocessing.FeatureTransform` (vocabulary files become SavedModel
assets) and the wide-and-deep model, and returns ``{"probability": (batch,), "logit":
(batch,)}``. A second signature, ``transform_features``, returns the ids only. A
ranking model directory (GMF, NeuMF, SASRec trained by ``trainer.task``) is exported by
:mod:`trainer.serving.ranking_export` instead: raw user and item ids in, one score per
(user, candidate item) out.

Embeddings are saved in their serving form (:func:`trainer.serving.tables.serving_layer`,
the one path the ranking export also takes): DPQ / MGQE layers become
:class:`~trainer.layers.compact_embedding.CompactCodebookEmbedding` (integer codes +
centroids; the query table is not saved); the deep tables of ``full`` features become
:class:`~trainer.layers.scalar_quantized_embedding.ScalarQuantizedEmbedding` when SQ is
asked for; hashing, hybrid and full tables stay as trained (already their compact form).

The export is reloaded and its scores compared with the trained Keras model's
(:mod:`trainer.serving.checks`, :data:`~trainer.serving.checks.TOLERANCE`);
``export_metadata.json`` is written only when they agree, so its presence marks a
usable export. Scoring and reading a finished export: :mod:`trainer.serving.scoring`. Layout of
the export directory::

    saved_model.pb variables/ assets/ fingerprint.pb   the SavedModel (``size_bytes``)
    assets.extra/artifacts/   manifest, vocab/<f>.txt, vocab/<f>.tiers (eval slicing)
    export_metadata.json      sizes, bits, compression, the check, the feature spec

Size baseline (``full_embedding_bits``): the same model with every table of a
dictionary feature (full, DPQ, MGQE, hybrid; deep and wide) replaced by a float32
table of ``V + 1`` rows (``V`` = the artifact's vocabulary size) of the same width,
every other table (hash, bucket, cross) as exported, plus the dense parameters, all at
32 bits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer import preprocessing
from trainer.contracts.features import FeatureSpec, Treatment
from trainer.serving import checks as export_checks
from trainer.serving import ranking_export, scoring, sizes, tables
from trainer.serving.scoring import savedmodel_bytes
from trainer.serving.tables import ServingInfo

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
TRANSFORM_SIGNATURE = "transform_features"
BASELINE = (
    "float32 (V+1)-row tables for every dictionary feature (deep and wide), other "
    "tables as exported, dense parameters at 32 bits"
)


def export_serving_model(
    model_dir: str,
    artifacts: str | None,
    out: str,
    *,
    sq_bits: int | None = None,
    packed_codes: bool = False,
    check_events: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Writes the serving SavedModel of ``model_dir`` to ``out`` and verifies it.

    Args:
        model_dir: A ``trainer.task`` output (``model.keras``, ``metadata.json``).
        artifacts: The stats artifact the model was trained with; None means
            ``model_dir/artifacts``. Its vocabularies must match the model's tables.
        out: Local export directory; must not hold a SavedModel yet.
        sq_bits: Scalar-quantize the deep tables of ``full`` features to this many
            bits. None: ``model.embedding.bits`` if the training config's embedding
            kind is ``"sq"``, else no SQ.
        packed_codes: Serve DPQ/MGQE codes bit-packed at ``ceil(log2 K)`` bits.
        check_events: Extra raw events (``data.table_to_raw`` layout) to verify on,
            besides a probe batch from the vocabularies (head, tail, unseen, missing)
            and up to 1,024 events of the training source when it is readable.

    Returns:
        The export metadata, also written to ``out/export_metadata.json``.

    Raises:
        FileExistsError: if ``out`` already holds a SavedModel.
        ValueError: if ``artifacts`` does not match the model's vocabularies.
        trainer.serving.checks.ExportCheckError: if the reloaded export's logits or
            probabilities differ from the trained model's by more than
            :data:`trainer.serving.checks.TOLERANCE`.
    """
    artifacts = artifacts or os.path.join(model_dir, "artifacts")
    if os.path.exists(os.path.join(out, "saved_model.pb")):
        raise FileExistsError(f"{out} already holds a SavedModel; use a new --out")
    trained, meta = load_trained(model_dir)
    if ranking_export.is_ranking_model(trained):
        if sq_bits is not None:
            raise ValueError(
                "--sq-bits is for wide-and-deep models; a ranking model is served "
                "scalar-quantized when trained with embedding.kind 'sq'"
            )
        return ranking_export.export_ranking_model(
            trained,
            ranking_export.load_ids(model_dir, meta, trained),
            out,
            packed_codes=packed_codes,
            model_dir=model_dir,
        )
    transform = preprocessing.FeatureTransform(trained.spec, artifacts)
    export_checks.check_vocabularies(trained, transform, artifacts)
    sq_bits = _resolve_sq_bits(meta, sq_bits)
    serving, info = build_serving_model(trained, sq_bits, packed_codes)
    module = ServingModule(transform, serving)
    tf.saved_model.save(module, out, signatures=module.signatures())
    raw = export_checks.check_batch(
        trained.spec, transform, artifacts, meta, check_events
    )
    check = export_checks.verify(out, trained, info, transform, raw)
    manifest = _copy_slicing_artifacts(
        artifacts, os.path.join(out, scoring.EXTRA_ARTIFACTS)
    )
    result = {
        "model_dir": model_dir,
        "artifacts": artifacts,
        "artifact_version": manifest.get("version"),
        "size_bytes": savedmodel_bytes(out),
        "keras_model_bytes": os.path.getsize(os.path.join(model_dir, MODEL_FILE)),
        "trained_serving_bits": int(trained.serving_bits()),
        **_size_fields(serving, transform.vocabulary_sizes),
        "compact_layers": info.replaced,
        "sq_bits": sq_bits,
        "packed_codes": packed_codes,
        "signatures": [scoring.SERVING_SIGNATURE, TRANSFORM_SIGNATURE],
        "feature_spec": trained.spec.to_dict(),
        "check": check,
    }
    with open(os.path.join(out, scoring.EXPORT_METADATA), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    logger.info("exported %s -> %s: %d bytes", model_dir, out, result["size_bytes"])
    return result


def _size_fields(serving: Any, vocabulary_sizes: Mapping[str, int]) -> dict[str, Any]:
    bits, full = table_bits(serving, vocabulary_sizes)
    return {
        "serving_bits": sum(bits.values()),
        "full_embedding_bits": sum(full.values()),
        "baseline": BASELINE,
        "compression_ratio": sum(full.values()) / sum(bits.values()),
        "model_bits_by_table": bits,
        "full_bits_by_table": full,
    }


# ---------------------------------------------------------------- the serving model


def load_trained(model_dir: str) -> tuple[Any, dict[str, Any]]:
    """The trained model of a ``trainer.task`` output and its metadata."""
    # Imported to register the Keras classes.
    from trainer.models import gmf, neumf, sasrec, wide_deep  # noqa: F401

    path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {model_dir} is not a trained model")
    meta_path = os.path.join(model_dir, "metadata.json")
    meta = {}
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    return keras.saving.load_model(path), meta


def build_serving_model(
    trained: Any, sq_bits: int | None = None, packed_codes: bool = False
) -> tuple[Any, ServingInfo]:
    """A copy of ``trained`` with its embeddings in serving form (module docstring).

    Args:
        trained: A built ``WideAndDeep``.
        sq_bits: Scalar-quantize deep ``full`` categorical tables to this many bits.
        packed_codes: Bit-packed DPQ/MGQE codes.

    Returns:
        ``(serving_model, info)``; every weight the serving model shares with
        ``trained`` is copied, the replaced layers are built from their exports.
    """
    from trainer.models.wide_deep import WideAndDeep, dummy_inputs

    serving = WideAndDeep.from_config(trained.get_config())
    info = ServingInfo()
    for f in trained.spec.categorical:
        layer = trained.deep_embeddings[f.name]
        bits = sq_bits if f.treatment is Treatment.FULL else None
        served = tables.serving_layer(layer, bits, packed_codes, f"emb_{f.name}")
        if served is None:
            continue
        new, info.replaced[f.name] = served
        if bits:
            info.sq_tables[f.name] = tables.dequantized_table(new)
        old = serving.deep_embeddings[f.name]
        serving.deep_embeddings[f.name] = new
        serving._tracker.untrack(old)  # never built: keep it out of the saved object
    serving(dummy_inputs(trained.spec))
    _copy_weights(serving, trained, set(info.replaced))
    return serving, info


def _copy_weights(dst: Any, src: Any, skip: set[str]) -> None:
    """Copies every weight of ``src`` into ``dst`` layer by layer, except ``skip``."""
    pairs = [(dst.wide_tables[k], src.wide_tables[k]) for k in dst.wide_tables]
    pairs += [
        (dst.deep_embeddings[k], src.deep_embeddings[k])
        for k in dst.deep_embeddings
        if k not in skip
    ]
    pairs += list(zip(dst.mlp, src.mlp, strict=True)) + [
        (dst.deep_logit, src.deep_logit)
    ]
    for d, s in pairs:
        d.set_weights(s.get_weights())
    dst.wide_bias.assign(src.wide_bias)
    copied = sum(len(d.weights) for d, _ in pairs) + 1
    replaced = sum(len(dst.deep_embeddings[k].weights) for k in skip)
    if copied + replaced != len(dst.weights):
        raise RuntimeError(
            f"serving model has {len(dst.weights)} weights, copied {copied} + "
            f"{replaced} compact; the model structure changed"
        )


class ServingModule(tf.Module):
    """The saved object: ``transform_features``, plus ``serving_default`` with a model.

    The Keras model is held through a bound method, not tracked as a child, so that
    ``tf.saved_model.save`` does not also trace Keras' default signature for it (a
    second copy of the graph, +190 kB); its variables are tracked as a list instead.

    Args:
        transform: The raw -> ids :class:`~trainer.preprocessing.FeatureTransform`.
        model: The serving model (ids -> logits), or None for the transform only.

    Example:
        >>> module = ServingModule(transform, serving_model)  # doctest: +SKIP
        >>> sigs = module.signatures()  # doctest: +SKIP
        >>> tf.saved_model.save(module, out, signatures=sigs)  # doctest: +SKIP
    """

    def __init__(self, transform: Any, model: Any = None) -> None:
        super().__init__(name="serving")
        self.transform = transform
        self.spec: FeatureSpec = transform.spec
        self.model_variables = list(model.variables) if model is not None else []
        self._forward = model.__call__ if model is not None else None

    def serve(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Raw features -> ``{"probability", "logit"}``, each ``(batch,)``."""
        logit = self._forward(self.transform(raw), training=False)
        return {"probability": tf.sigmoid(logit), "logit": logit}

    def transform_features(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Raw features -> ids (``trainer.preprocessing`` layout)."""
        return self.transform(raw)

    def signatures(self) -> dict[str, Any]:
        """Concrete functions by signature key, for ``tf.saved_model.save``."""
        sig = [preprocessing.serving_input_signature(self.spec)]
        out = {
            TRANSFORM_SIGNATURE: tf.function(
                self.transform_features, input_signature=sig
            )
        }
        if self._forward is not None:
            out[scoring.SERVING_SIGNATURE] = tf.function(
                self.serve, input_signature=sig
            )
        return {k: fn.get_concrete_function() for k, fn in out.items()}


# ---------------------------------------------------------------------------- sizes


def table_bits(
    serving: Any, vocabulary_sizes: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """Serving bits and full-embedding baseline bits per table, plus ``"dense"``.

    Tables are named by layer (``emb_<f>``, ``wide_<f>``). Serving bits are
    :func:`trainer.serving.tables.size_of` (each layer's ``serving_bits()``, MGQE paper
    Table 1; ``"dense"`` is 32 bits per remaining parameter). The baseline is in the
    module docstring.
    """
    layers: dict[str, Any] = {}
    full: dict[str, int] = {}
    groups = [(n, layer, True) for n, layer in serving.deep_embeddings.items()]
    groups += [(n, layer, False) for n, layer in serving.wide_tables.items()]
    for name, layer, deep in groups:
        layers[layer.name] = layer
        rows = vocabulary_sizes.get(name)
        if rows is not None:
            width = int(layer.output_dim) if deep else 1
            full[layer.name] = sizes.full_bits(rows + 1, width)
        else:
            full[layer.name] = tables.table_bits(layer)
    size = tables.size_of(serving, layers, full_table_bits=full)
    bits = {**size.table_bits, "dense": size.dense_bits}
    return bits, {**size.full_table_bits, "dense": size.dense_bits}


# -------------------------------------------------------------------------- helpers


def _resolve_sq_bits(meta: Mapping[str, Any], sq_bits: int | None) -> int | None:
    if sq_bits is not None:
        return int(sq_bits)
    embedding = meta.get("config", {}).get("model", {}).get("embedding", {})
    return int(embedding.get("bits", 8)) if embedding.get("kind") == "sq" else None


def _copy_slicing_artifacts(artifacts: str, dest: str) -> dict[str, Any]:
    """Copies the manifest and the vocab/tier files (not counts/state) for slicing."""
    from trainer.contracts import artifacts as artifacts_lib
    from trainer.contracts import storage

    manifest = artifacts_lib.load_manifest(artifacts)
    os.makedirs(os.path.join(dest, "vocab"), exist_ok=True)
    storage.write_text(
        os.path.join(dest, artifacts_lib.MANIFEST),
        json.dumps(manifest, indent=1, sort_keys=True),
    )
    for name, summary in manifest.get("features", {}).items():
        if summary.get("uses_dictionary"):
            for src in (
                artifacts_lib.vocab_path(artifacts, name),
                artifacts_lib.tiers_path(artifacts, name),
            ):
                target = os.path.join(dest, "vocab", os.path.basename(src))
                storage.write_bytes(target, storage.read_bytes(src))
    return manifest


# ------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.serving.export",
        description="Export a trained model as one raw-feature serving SavedModel.",
    )
    p.add_argument("--model", required=True, help="trainer.task output directory")
    p.add_argument("--artifacts", help="stats artifact (default: MODEL/artifacts)")
    p.add_argument("--out", required=True, help="export directory (new)")
    p.add_argument("--sq-bits", type=int, help="scalar-quantize full tables to B bits")
    p.add_argument(
        "--packed-codes", action="store_true", help="bit-packed DPQ/MGQE codes"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints a JSON summary; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        info = export_serving_model(
            args.model,
            args.artifacts,
            args.out,
            sq_bits=args.sq_bits,
            packed_codes=args.packed_codes,
        )
    except (
        FileNotFoundError,
        FileExistsError,
        ValueError,
        export_checks.ExportCheckError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keys = (
        "size_bytes",
        "keras_model_bytes",
        "serving_bits",
        "full_embedding_bits",
        "compression_ratio",
        "model_size_percent",
        "check",
    )
    print(json.dumps({k: info[k] for k in keys if k in info}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
