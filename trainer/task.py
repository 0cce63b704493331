"""Training entry point for every model: ``python -m trainer.task`` (also the container's).

Every model is built by :mod:`trainer.models.factory`, its optimizers by
:func:`trainer.training.optimizers.make_optimizer`, and trained by the one loop
(:func:`trainer.training.loop.train`).

**wide_deep**: ``run(config, train, artifacts, out, warm_start=None, hours=None)``
trains on either hourly events (``train`` = logs root and ``hours`` = ``START[:END]``)
or transformed TFRecords (``train`` = the transform step's output), with dictionaries,
tiers and bucket boundaries from the Beam stats artifact ``artifacts``.

**gmf, neumf, sasrec**: ``run(config, interactions, None, out)`` trains on a
SASRec-format interactions file (``user item`` per line, each user's lines in time
order, e.g. ``../shared/data/ml-1m/ml-1m.txt``): the training part of its
leave-last-two-out split (:mod:`trainer.data.sequences`), rows renumbered by frequency.

Both write into ``out``:

* ``model.keras`` — the trained model (``keras.saving.load_model`` reloads it);
* ``checkpoints/`` (model + optimizer slots; a killed run resumes from here);
* ``tensorboard/``; ``metadata.json`` (config, steps, loss, serving bits, ...);
  ``request.json`` (config and inputs asked for: rerunning into the same ``out`` returns
  or resumes that run only with the same request, and is refused otherwise).

wide_deep also writes ``artifacts/``, the stats artifact it used (vocabularies travel
with the model, so export and warm start need nothing else). The ranking models write
``ids.npz`` instead (``metadata["ids"]``; :func:`trainer.data.samples.id_arrays`: the
raw user / item id of every row, SASRec's histories). ``metadata`` also holds
``source`` (the interactions file), ``num_users``, ``num_items``, ``serving_bits`` and
``size_percent`` (:func:`trainer.serving.tables.model_size`).

An hour with no events is skipped with a warning and never trained on. With a
``TF_CONFIG`` naming several workers the model and optimizers live under a
MultiWorkerMirroredStrategy (:func:`trainer.training.loop.make_strategy`); give each worker
its own ``out`` (the chief's holds the model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from trainer import task_flags
from trainer.config import ConfigError, TrainerConfig, load_config, parse_overrides
from trainer.contracts import fingerprint, storage
from trainer.contracts.features import load_feature_spec

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
REQUEST_FILE = "request.json"  # what the run in this directory was asked to train
IDS_FILE = "ids.npz"  # ranking models: the raw user / item id of every row


def run(
    config: TrainerConfig,
    train: str,
    artifacts: str,
    out: str,
    warm_start: str | None = None,
    hours: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Trains one model; see the module docstring. Returns the metadata dict."""
    import tensorflow as tf

    from trainer import preprocessing
    from trainer.data import examples as data
    from trainer.models import factory
    from trainer.models.wide_deep import dummy_inputs
    from trainer.training import loop as train_loop
    from trainer.training import warm_start as warm
    from trainer.training.optimizers import make_optimizer

    if config.model.name in factory.RANKING_MODELS:
        if artifacts or warm_start or hours:
            raise ConfigError(
                f"model.name {config.model.name!r} trains on an interactions file "
                "alone; --artifacts, --warm-start and --hours are for wide_deep"
            )
        return _run_ranking(config, train, out, progress)
    if not artifacts:
        raise ConfigError("wide_deep needs the Beam stats artifact (--artifacts)")
    request = {
        "config": config.to_dict(),
        "train": train,
        "hours": hours,
        "artifacts": artifacts,
        "warm_start": warm_start,
    }
    finished = _claim(out, request)
    if finished is not None:
        return finished
    # Before any TF op: MultiWorkerMirroredStrategy must configure collectives first.
    strategy = train_loop.make_strategy()
    tf.keras.utils.set_random_seed(config.training.seed)
    spec = load_feature_spec(config.feature_spec)
    os.makedirs(out, exist_ok=True)
    local_artifacts = os.path.join(out, "artifacts")
    if not os.path.isdir(local_artifacts):
        storage.download_dir(artifacts, local_artifacts)
    transform = preprocessing.FeatureTransform(spec, local_artifacts)
    examples, source = _load_examples(train, hours, spec, transform)
    n = len(examples[spec.label_key])
    if n == 0:
        logger.warning("no events in %s; hour skipped, nothing trained", source)
        return {"skipped": True, "reason": f"no events in {source}", "examples": 0}
    rows = data.table_rows(spec, transform)
    _set_precision(config.training.mixed_precision)
    with strategy.scope():
        model = factory.build_model(
            config.model, feature_spec=spec.to_dict(), table_rows=rows
        )
        model(dummy_inputs(spec))
        warm.set_tiers_from_artifacts(model, spec, local_artifacts)
        groups = [
            (make_optimizer(config.wide_optimizer), lambda: model.wide_variables),
            (make_optimizer(config.optimizer), lambda: model.deep_variables),
        ]
        for opt, variables in groups:  # warm start copies slots into built optimizers
            opt.build(variables())
    warm_report = None
    if warm_start and not os.path.isdir(os.path.join(out, "checkpoints")):
        warm_report = warm.warm_start(model, groups, warm_start, spec, local_artifacts)
    elif not warm_start:
        # Cold start: begin at the base rate instead of p = 0.5, as production CTR
        # models do; otherwise the first steps only learn the bias.
        model.wide_bias.assign(_log_odds(examples[spec.label_key]))
    t = config.training
    ds = data.make_dataset(
        examples, spec.label_key, t.batch_size, t.seed, epochs=t.epochs
    )
    total = data.num_batches(examples, spec.label_key, t.batch_size, t.epochs)
    result = train_loop.train(model, ds, groups, t, out, total, progress, strategy)
    model.save(os.path.join(out, MODEL_FILE))
    meta = {
        "config": config.to_dict(),
        "feature_spec": spec.to_dict(),
        "source": source,
        "artifacts": artifacts,
        "table_rows": rows,
        "examples": n,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "final_loss": result.final_loss,
        "serving_bits": int(model.serving_bits()),
        "warm_start": warm_start,
        "warm_start_report": warm_report,
    }
    storage.write_text(
        storage.join(out, METADATA_FILE),
        json.dumps(meta, indent=1, sort_keys=True, default=str),
    )
    return meta


def _run_ranking(
    config: TrainerConfig,
    interactions: str,
    out: str,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Trains GMF, NeuMF or SASRec on a SASRec-format interactions file; see the module
    docstring for what it writes."""
    from trainer.data.samples import prepare_task
    from trainer.data.sequences import load_sasrec
    from trainer.serving.tables import model_size
    from trainer.training import loop as train_loop
    from trainer.training.fit import fit_ranking

    request = {"config": config.to_dict(), "train": interactions}
    finished = _claim(out, request)
    if finished is not None:
        return finished
    strategy = train_loop.make_strategy()
    task = prepare_task(load_sasrec(interactions))
    _set_precision(config.training.mixed_precision)
    os.makedirs(out, exist_ok=True)
    model, result = fit_ranking(config, task, out, strategy, progress)
    model.save(os.path.join(out, MODEL_FILE))
    _write_ids(out, task, config)
    size = model_size(model, config.model.embedding)
    meta = {
        "config": config.to_dict(),
        "source": interactions,
        "num_users": task.num_users,
        "num_items": task.num_items,
        "ids": IDS_FILE,
        "examples": int(task.train_offsets[-1]),
        "trained_examples": result.examples,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "final_loss": result.final_loss,
        "serving_bits": int(size.serving_bits),
        "size_percent": size.percent,
    }
    storage.write_text(
        storage.join(out, METADATA_FILE),
        json.dumps(meta, indent=1, sort_keys=True, default=str),
    )
    return meta


def _write_ids(out: str, task: Any, config: TrainerConfig) -> None:
    """``ids.npz``: :func:`trainer.data.samples.id_arrays` of ``task``."""
    import io

    import numpy as np

    from trainer.data.samples import id_arrays

    sasrec = config.model.name == "sasrec"
    buf = io.BytesIO()
    np.savez(buf, **id_arrays(task, config.model.maxlen if sasrec else None))
    storage.write_bytes(storage.join(out, IDS_FILE), buf.getvalue())


def _claim(out: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """Claims ``out`` for ``request``; the metadata of a run it already finished."""
    _claim_out_dir(out, request)
    done = storage.join(out, METADATA_FILE)
    if not storage.exists(done):
        return None
    logger.info("%s already trained; returning its metadata", out)
    return json.loads(storage.read_text(done))


def _claim_out_dir(out: str, request: dict[str, Any]) -> None:
    """Records what ``out`` trains; refuses an ``out`` holding a run of other settings.

    A finished or killed run in ``out`` is returned or resumed only when its config,
    inputs and warm start are the ones asked for now; anything else would silently
    hand back (or continue) a different model. ``request.json`` is created
    create-only, so of two writers racing with other settings exactly one wins.

    Raises:
        ConfigError: naming ``out`` and the settings that differ.
    """
    request = fingerprint.canonical(request)
    path = storage.join(out, REQUEST_FILE)
    if storage.exists(path):
        stored = json.loads(storage.read_text(path))
    elif storage.exists(
        storage.join(out, METADATA_FILE)
    ):  # written before REQUEST_FILE
        stored = {
            "config": json.loads(storage.read_text(storage.join(out, METADATA_FILE)))[
                "config"
            ]
        }
        request = {"config": request["config"]}
    else:
        text = json.dumps(request, indent=1, sort_keys=True)
        if storage.create_if_absent(path, text.encode("utf-8")):
            return
        stored = json.loads(storage.read_text(path))  # another writer claimed it first
    diffs = _differences(stored, request)
    if diffs:
        shown = ", ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise ConfigError(
            f"{out} holds a run with other settings ({shown}); "
            "give a new output directory or remove that one"
        )


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}.{key}" if prefix else str(key)
            out += _differences(a.get(key), b.get(key), name)
        return out
    return [] if a == b else [prefix or "<value>"]


def _set_precision(mixed: bool) -> None:
    """mixed_float16 on GPUs when asked for (logits and the loss stay float32)."""
    import keras
    import tensorflow as tf

    if mixed and tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    elif mixed:
        logger.warning("training.mixed_precision is set but no GPU is present: float32")


def _log_odds(labels: Any, eps: float = 1e-4) -> float:
    import numpy as np

    p = float(np.clip(np.mean(labels), eps, 1 - eps))
    return float(np.log(p / (1 - p)))


def _load_examples(
    train: str, hours: str | None, spec: Any, transform: Any
) -> tuple[dict, str]:
    from trainer.contracts import events
    from trainer.data import examples as data

    if hours:
        table, _bad = data.read_events(train, events.parse_hour_range(hours), spec)
        return data.transform_raw(
            data.table_to_raw(table, spec), transform
        ), f"{train}@{hours}"
    return data.read_transformed(train), train


# ------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.task",
        description="Train any model of an experiment spec: wide_deep on event logs "
        "(--train, --artifacts), gmf / neumf / sasrec on an interactions file "
        "(--interactions).",
    )
    p.add_argument(
        "--spec", required=True, help="experiment YAML (specs/experiments/NAME.yaml)"
    )
    p.add_argument(
        "--train", help="wide_deep: logs root (with --hours) or TFRecord dir"
    )
    p.add_argument("--hours", help="START[:END] hours of the logs to train on")
    p.add_argument("--artifacts", help="wide_deep: Beam stats artifact directory")
    p.add_argument(
        "--interactions",
        help="gmf/neumf/sasrec: 'user item' lines, each user's in time order "
        "(SASRec's ml-1m.txt, e.g. ../shared/data/ml-1m/ml-1m.txt)",
    )
    p.add_argument("--warm-start", help="previous model directory to warm start from")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.max_steps=10 (YAML value)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.contracts import redact

    redact.install()  # no credential in any log line or traceback
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        overrides = parse_overrides(args.set)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.spec, overrides)
        train = task_flags.check_inputs(config, args)
        meta = run(
            config,
            train,
            args.artifacts,
            args.out,
            args.warm_start,
            args.hours,
            progress=print,
        )
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {redact.redact(e)}", file=sys.stderr)
        return 2
    keys = (
        "examples trained_examples steps resumed_from final_loss serving_bits skipped"
    )
    print(json.dumps({k: meta[k] for k in keys.split() if k in meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
