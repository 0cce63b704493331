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
import sys
import time
from typing import Any

from trainer.contracts import storage

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
    budget: str = ""  # data.budget: plan the spec at cold start (pipeline/replan.py)

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
            "budget": cfg.data.budget,
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
    spec, trainer_config = s.feature_spec, s.trainer_config
    if s.budget:  # cold start plans from this hour's stats; later hours keep it
        from pipeline import replan

        units = s.trainer_config.get("model", {}).get("hidden_units")
        spec = replan.cold_start_plan(
            s.logs, hour, spec, s.budget, s.workdir, not os.path.exists(prev), units
        )
        trainer_config = {**trainer_config, "feature_spec": spec}
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
        feature_spec=spec,
        previous_stats=previous_stats,
        trainer_config=trainer_config,
        blessing_metric=s.blessing_metric,
        min_value=s.min_value,
        max_regression=s.max_regression,
        accelerator_type="",
        accelerator_limit=0,
    )
    from components.lib import hour_record

    record = _record(hour, outputs, s, time.perf_counter() - t0)
    if s.budget:  # planned vs actual size, and the plan's predicted cost
        record["plan"] = replan.plan_record(s.workdir, record.get("serving_bits"))
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
    # kfp.local lays a run out as PIPELINE_ROOT/<run>/<task>/<output>.
    run_dir = os.path.dirname(os.path.dirname(serving.path))
    return {
        "hour": hour,
        "evaluation": os.path.join(run_dir, "evaluate-model", "evaluation"),
        "tensorboard": os.path.join(run_dir, "train-model", "model", "tensorboard"),
        "stats": out["stats"].path,
        "serving_model": serving.path,
        "size_bytes": serving.metadata.get("size_bytes"),
        "serving_bits": serving.metadata.get("serving_bits"),
        "compression_ratio": serving.metadata.get("compression_ratio"),
        "metrics": metrics,
        "blessed": bool(out["blessed"]),
        "seconds": round(seconds, 1),
    }


def log_dir(s: LocalSettings, hour: str) -> str:
    """``WORKDIR/logs/<hour>``: ``pipeline.log`` and one ``<task>.log`` per task."""
    return os.path.join(s.workdir, "logs", hour)


def failure_path(s: LocalSettings, hour: str) -> str:
    """Where a failed hour's record goes (removed when the hour later succeeds)."""
    return os.path.join(s.workdir, "hours", f"{hour}.failed.json")


def run_hour_logged(
    hour: str, s: LocalSettings, label: str = "", verbose: bool = False
) -> dict[str, Any]:
    """:func:`run_hour` in a child process, its output in per-task logs; never raises
    for a failed hour: returns a record with ``status: "failed"`` and the reason.

    Prints one line for the hour (live on a terminal): the stage and elapsed seconds
    while it runs, then RCE, AUC, bytes, blessing and per-stage seconds, or where and
    why it failed with the last lines of the failed task's log.
    """
    from pipeline import progress

    live = progress.Live(f"{label}{hour}  ")
    logs_at = log_dir(s, hour)
    stages_path = os.path.join(logs_at, "stages.json")
    if os.path.exists(s.result_path(hour)):
        rec = run_hour(hour, s)
        if os.path.exists(stages_path):
            with open(stages_path) as f:
                rec["stage_seconds"] = json.load(f)
        live.done(format_record(rec) + "  (done earlier)")
        return rec
    os.makedirs(logs_at, exist_ok=True)
    settings_path = os.path.join(logs_at, "settings.json")
    storage.write_text(settings_path, json.dumps(dataclasses.asdict(s), indent=1))
    command = [sys.executable, "-m", "pipeline.local", hour, settings_path]
    t0 = time.perf_counter()
    rc, logs = progress.run_logged(
        command, logs_at, live, verbose=verbose, describe=_events_of
    )
    stages = logs.stage_seconds()
    storage.write_text(stages_path, json.dumps(stages, indent=1, sort_keys=True))
    if rc == 0 and os.path.exists(s.result_path(hour)):
        if os.path.exists(failure_path(s, hour)):
            os.remove(failure_path(s, hour))
        with open(s.result_path(hour)) as f:
            rec = {**json.load(f), "stage_seconds": stages}
        live.done(format_record(rec))
        return rec
    rec = {
        "hour": hour,
        "status": "failed",
        **logs.failure(),
        "exit_code": rc,
        "stage_seconds": stages,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    storage.write_text(failure_path(s, hour), json.dumps(rec, indent=1))
    live.done(format_failure(rec))
    return rec


def _events_of(logs: Any) -> str:
    """The live line's event count, from the stats task's manifest once it exists."""
    for uri in logs.outputs.get("compute-stats", []):
        path = os.path.join(uri, "manifest.json")
        if os.path.exists(path):
            with open(path) as f:
                return f"  {json.load(f).get('events', 0):,} events"
    return ""


def replay_hours(
    hours: list[str], s: LocalSettings, label: str = "", verbose: bool = False
) -> list[dict[str, Any]]:
    """Runs hours in order (each in its own process, see :func:`run_hour_logged`);
    finished hours are skipped (their records are returned). A failed hour does not
    stop the replay: the next hour starts from the last registered model."""
    return [run_hour_logged(h, s, label=label, verbose=verbose) for h in hours]


def failed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "failed"]


def _hour_list(text: str) -> list[str]:
    from trainer.contracts.events import format_hour, parse_hour_range

    return [format_hour(h) for h in parse_hour_range(text)]


def format_stages(stages: dict[str, float] | None) -> str:
    """``stats 3 transform 10 train 12 ...`` (seconds, in pipeline order)."""
    from pipeline.progress import STAGES

    stages = stages or {}
    return " ".join(f"{k} {stages[k]:.0f}" for k in STAGES if k in stages)


def format_record(rec: dict[str, Any]) -> str:
    if rec.get("status") == "failed":
        return format_failure(rec)
    m = rec.get("metrics", {})
    line = (
        f"rce {m.get('rce', float('nan')):6.3f}  auc {m.get('auc', float('nan')):.4f}"
        f"  bytes {int(rec.get('size_bytes') or 0):>10,}  blessed {rec['blessed']!s:5}"
        f"  v{rec.get('registered_version') or '-'}"
    )
    stages = format_stages(rec.get("stage_seconds"))
    return line + (f"  [{stages}]" if stages else "") + f"  {rec.get('seconds'):.0f} s"


def format_failure(rec: dict[str, Any], tail: int = 12) -> str:
    """A failed hour in one screen: the task, the reason, the log and its last lines."""
    lines = [
        f"FAILED in {rec.get('failed_task') or 'the pipeline'} after "
        f"{rec.get('seconds', 0):.0f} s: {rec.get('reason') or 'no reason logged'}",
        f"    log: {rec.get('log')}"
        + (" (last lines:)" if rec.get("log_tail") else ""),
    ]
    lines += [f"    | {ln[:160]}" for ln in (rec.get("log_tail") or [])[-tail:]]
    return "\n".join(lines)


def run_local(args: argparse.Namespace) -> int:
    """``python -m pipeline run-local``: one hour."""
    s = settings_from_args(args)
    rec = run_hour_logged(_hour_list(args.hour)[0], s, verbose=_verbose(args))
    print(f"logs: {os.path.join(s.workdir, 'logs')}")
    return 1 if failed([rec]) else 0


def replay(args: argparse.Namespace) -> int:
    """``python -m pipeline replay``: hours START:END in order, resumable."""
    s = settings_from_args(args)
    records = replay_hours(_hour_list(args.hours), s, verbose=_verbose(args))
    bad = failed(records)
    print(
        f"{len(records) - len(bad)} of {len(records)} hours done"
        + (f", failed: {' '.join(r['hour'] for r in bad)}" if bad else "")
        + f"; logs: {os.path.join(s.workdir, 'logs')}"
    )
    return 1 if bad else 0


def _verbose(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "verbose", False))


def _child_main(argv: list[str]) -> int:
    """``python -m pipeline.local HOUR SETTINGS.json``: one hour, in this process.

    What :func:`run_hour_logged` runs; its stdout is the hour's logs.
    """
    import warnings

    # The components run with this virtualenv's packages on purpose (SubprocessRunner,
    # use_venv=False); kfp.local warns about their container base image on every task.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local")
    hour, settings_path = argv
    with open(settings_path) as f:
        s = LocalSettings(**json.load(f))
    run_hour(hour, s)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
