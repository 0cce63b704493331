"""Run the hourly pipeline on this machine: one hour, or a range of hours in order.

Each hour runs the compiled-equivalent ``hourly_training`` pipeline through ``kfp.local``
with the ``SubprocessRunner`` (every component in its own Python process, as in a
cluster, with this virtualenv's packages) and the Beam DirectRunner inside the
components. A replay is **resumable and idempotent**: each finished hour leaves
``WORKDIR/hours/<hour>.json``; re-running skips those hours, and the registry itself
refuses a second version for an hour it already registered. Each hour warm-starts from
the model that is ``production`` in ``WORKDIR/registry`` and continues the previous
hour's dictionary state (``--previous`` of the stats job).

Example:
    ``python -m pipeline replay --hours 2026-01-01T00:2026-01-01T03 --logs LOGS --workdir W``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_EXPERIMENT = os.path.join(REPO, "specs", "experiments", "synthetic_hybrid.yaml")


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    """What a local run needs besides the hour."""

    logs: str
    workdir: str
    feature_spec: str
    trainer_config: dict[str, Any]
    blessing_metric: str = "auc"
    min_value: float = 0.5
    max_regression: float = 0.005

    @property
    def registry(self) -> str:
        return os.path.join(self.workdir, "registry")

    def result_path(self, hour: str) -> str:
        return os.path.join(self.workdir, "hours", f"{hour}.json")


def settings_from_args(
    args: argparse.Namespace, experiment: str | None = None
) -> LocalSettings:
    """Builds settings from CLI args (``--config`` for blessing, ``--spec``)."""
    from trainer.config import load_config

    blessing: dict[str, Any] = {}
    if getattr(args, "config", None):
        from pipeline.config import load_config as load_pipeline_config

        cfg = load_pipeline_config(args.config)
        b = cfg.blessing
        blessing = {
            "blessing_metric": b.metric,
            "min_value": b.min_value,
            "max_regression": b.max_regression,
        }
        experiment = experiment or cfg.data.trainer_config or None
    trainer_cfg = load_config(experiment or DEFAULT_EXPERIMENT)
    spec = _resolve(getattr(args, "spec", None) or trainer_cfg.feature_spec)
    trainer_dict = trainer_cfg.to_dict()
    trainer_dict["feature_spec"] = spec
    return LocalSettings(
        logs=os.path.abspath(args.logs),
        workdir=os.path.abspath(args.workdir),
        feature_spec=spec,
        trainer_config=trainer_dict,
        **blessing,
    )


def _resolve(path: str) -> str:
    """An absolute path: as given, else relative to the repository (specs/...)."""
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path)
    return os.path.join(REPO, path)


def _previous_hour(hour: str) -> str:
    from trainer.contracts import events

    return events.format_hour(events.parse_hour(hour) - dt.timedelta(hours=1))


def run_hour(hour: str, s: LocalSettings) -> dict[str, Any]:
    """Runs ``hourly_training`` for one hour with kfp.local; returns the hour's record.

    Raises:
        RuntimeError: if a step fails (kfp.local's message names the task); the
            registry is left as it was (registration is the last step).
    """
    import kfp.local

    from pipeline import hourly

    done = s.result_path(hour)
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    prev = s.result_path(_previous_hour(hour))
    previous_stats = ""
    if os.path.exists(prev):
        with open(prev) as f:
            previous_stats = json.load(f).get("stats", "")
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=os.path.join(s.workdir, "kfp-root"),
        raise_on_error=True,
    )
    t0 = time.perf_counter()
    outputs = hourly.hourly_training(
        hour=hour,
        logs_root=s.logs,
        registry_uri=s.registry,
        feature_spec=s.feature_spec,
        previous_stats=previous_stats,
        trainer_config=s.trainer_config,
        blessing_metric=s.blessing_metric,
        min_value=s.min_value,
        max_regression=s.max_regression,
        accelerator_type="",
        accelerator_limit=0,
    )
    from components.lib import hour_record

    record = _record(hour, outputs, s, time.perf_counter() - t0)
    # Names the model the registry holds for the hour (a racing run may have won);
    # create-only, so two runs of one hour keep one record.
    return hour_record.publish(
        done, hour_record.with_registration(record, s.registry, hour)
    )


def _record(
    hour: str, outputs: Any, s: LocalSettings, seconds: float
) -> dict[str, Any]:
    out = outputs.outputs if hasattr(outputs, "outputs") else outputs
    serving = out["serving_model"]
    metrics = dict(out["metrics"].metadata)
    return {
        "hour": hour,
        "stats": out["stats"].path,
        "serving_model": serving.path,
        "size_bytes": serving.metadata.get("size_bytes"),
        "serving_bits": serving.metadata.get("serving_bits"),
        "compression_ratio": serving.metadata.get("compression_ratio"),
        "metrics": metrics,
        "blessed": bool(out["blessed"]),
        "seconds": round(seconds, 1),
    }


def replay_hours(
    hours: list[str],
    s: LocalSettings,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs hours in order; finished hours are skipped (their records are returned)."""
    records = []
    for hour in hours:
        rec = run_hour(hour, s)
        records.append(rec)
        if progress:
            progress(rec)
    return records


def _hour_list(text: str) -> list[str]:
    from trainer.contracts.events import format_hour, parse_hour_range

    return [format_hour(h) for h in parse_hour_range(text)]


def format_record(rec: dict[str, Any]) -> str:
    m = rec.get("metrics", {})
    return (
        f"{rec['hour']}  rce {m.get('rce', float('nan')):7.3f}  auc {m.get('auc', float('nan')):.4f}"
        f"  bytes {rec.get('size_bytes') or 0:>11,}  blessed {rec['blessed']!s:5}"
        f"  version {rec.get('registered_version')}  ({rec.get('seconds')} s)"
    )


def run_local(args: argparse.Namespace) -> int:
    """``python -m pipeline run-local``: one hour."""
    s = settings_from_args(args)
    rec = run_hour(_hour_list(args.hour)[0], s)
    print(format_record(rec))
    return 0


def replay(args: argparse.Namespace) -> int:
    """``python -m pipeline replay``: hours START:END in order, resumable."""
    s = settings_from_args(args)
    replay_hours(
        _hour_list(args.hours),
        s,
        progress=lambda r: print(format_record(r), flush=True),
    )
    return 0
