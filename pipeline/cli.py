"""``python -m pipeline compile|submit|schedule|run-local|replay|demo``.

* ``compile`` writes the compiled KFP spec (``specs/hourly_training.yaml``).
* ``submit`` creates one run; ``schedule`` creates or updates the hourly recurring run.
  Both read ``--config specs/configs/pipeline.yaml`` and talk to KFP (``--host``, or
  ``kfp.host`` in the config) or to Vertex AI (``--vertex-project`` [``--region``]).
* ``run-local``, ``replay`` and ``demo`` run the pipeline on this machine
  (``pipeline/local.py``, ``pipeline/demo.py``, imported only when used).
* ``replan`` plans per-feature compression anew from the latest statistics and says
  which features would change (``pipeline/replan.py``).

Every command prints a one-line summary and returns 0, or prints ``error: ...`` to
stderr and returns 2 (bad input) or 1 (the service failed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_SPEC = os.path.join("specs", "hourly_training.yaml")
DEFAULT_CONFIG = os.path.join("specs", "configs", "pipeline.yaml")
KFP_SCHEDULED_HOUR = "[[ScheduledTime.2006-01-02T15]]"  # KFP fills in the tick's hour


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns the process exit code."""
    from trainer.contracts import redact

    redact.install()  # no credential in any log line or traceback
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from pipeline import client, config

    try:
        return int(args.handler(args) or 0)
    except (config.PipelineConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {redact.redact(e)}", file=sys.stderr)
        return 2
    except client.PipelineClientError as e:
        print(f"error: {redact.redact(e)}", file=sys.stderr)
        return 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Compile, run and schedule hourly training.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_compile(sub)
    _add_submit(sub)
    _add_schedule(sub)
    _add_local(sub)
    from pipeline import replan  # no TF/Beam: trainer.planning is pure Python

    replan.add_parser(sub)
    return parser.parse_args(argv)


def _add_compile(sub: Any) -> None:
    p = sub.add_parser("compile", help="write the compiled pipeline spec")
    p.add_argument(
        "--out", default=DEFAULT_SPEC, help=f"output YAML (default {DEFAULT_SPEC})"
    )
    p.set_defaults(handler=_compile)


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="pipeline config YAML")
    p.add_argument(
        "--pipeline-spec", default=DEFAULT_SPEC, help="compiled pipeline YAML"
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--host", help="KFP API endpoint (default: kfp.host of --config)"
    )
    target.add_argument(
        "--vertex-project", help="run on Vertex AI Pipelines in this project"
    )
    p.add_argument(
        "--region", help="Vertex region (default: vertex.region of --config)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter; VALUE is YAML (repeatable)",
    )


def _add_submit(sub: Any) -> None:
    p = sub.add_parser("submit", help="create one pipeline run")
    _add_target(p)
    p.add_argument(
        "--hour", help="YYYY-MM-DDTHH to train on (default: the last full hour)"
    )
    p.add_argument("--run-name", help="display name (default: hourly-training-HOUR)")
    p.set_defaults(handler=_submit)


def _add_schedule(sub: Any) -> None:
    p = sub.add_parser("schedule", help="create or update the hourly recurring run")
    _add_target(p)
    p.add_argument(
        "--name", help="recurring run name (default: schedule.name of --config)"
    )
    p.add_argument(
        "--cron", help="KFP 6-field cron (default: schedule.cron of --config)"
    )
    p.set_defaults(handler=_schedule)


def _add_local(sub: Any) -> None:
    p = sub.add_parser(
        "run-local", help="run the pipeline for one hour on this machine"
    )
    p.add_argument("--hour", required=True, help="YYYY-MM-DDTHH")
    _add_local_io(p)
    p.set_defaults(handler=_run_local)
    p = sub.add_parser("replay", help="run the pipeline hour by hour over a range")
    p.add_argument(
        "--hours", required=True, help="START:END, inclusive (YYYY-MM-DDTHH)"
    )
    _add_local_io(p)
    p.set_defaults(handler=_replay)
    p = sub.add_parser("demo", help="generate a synthetic stream and replay it locally")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--hours", type=int, default=4, help="hours to generate (default 4)")
    p.add_argument("--events-per-hour", type=int, default=20000, help="default 20000")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_verbose(p)
    p.set_defaults(handler=_demo)


def _add_verbose(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: ``python -m pipeline -v demo`` and ``... demo -v`` both work.
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="stream every task's output (default: one line per hour; the full "
        "output is in WORKDIR/logs/<hour>/<task>.log)",
    )


def _add_local_io(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logs", required=True, help="event log root")
    p.add_argument(
        "--workdir", required=True, help="directory for artifacts and registry"
    )
    p.add_argument("--config", help="pipeline config YAML")
    p.add_argument("--spec", help="feature spec YAML")
    _add_verbose(p)


# -------------------------------------------------------------------------- handlers


def _compile(args: argparse.Namespace) -> int:
    from kfp import compiler

    from pipeline.hourly import hourly_training

    parent = os.path.dirname(os.path.abspath(args.out))
    _check_dir("--out", parent)
    os.makedirs(parent, exist_ok=True)
    compiler.Compiler().compile(hourly_training, args.out)
    print(f"compiled hourly_training -> {args.out}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from pipeline import client, vertex_client

    cfg = _load(args)
    hour = args.hour or _last_full_hour()
    params = _parameters(cfg, args, hour=hour, hour_lag=0)
    run_name = args.run_name or f"hourly-training-{hour}"
    if args.vertex_project:
        name = vertex_client.submit_vertex(
            **_vertex(args, cfg), pipeline_spec_path=args.pipeline_spec,
            params=params, run_name=run_name, experiment=cfg.vertex.experiment,
        )  # fmt: skip
        print(f"submitted Vertex pipeline job {name} for hour {hour}")
        return 0
    host = _host(args, cfg)
    run_id = client.submit_run(
        host, args.pipeline_spec, params, cfg.kfp.experiment, run_name,
        cfg.kfp.pipeline_root,
    )  # fmt: skip
    print(f"submitted run {run_id} ({run_name}) to {_shown(host)}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from pipeline import client, vertex_client

    cfg = _load(args)
    name = args.name or cfg.schedule.name
    cron = args.cron or cfg.schedule.cron
    if args.vertex_project:  # Vertex cannot fill in the hour: "" = the run's hour
        resource = vertex_client.schedule_vertex(
            **_vertex(args, cfg), pipeline_spec_path=args.pipeline_spec,
            params=_parameters(cfg, args, hour="", hour_lag=2), name=name, cron=cron,
            max_concurrency=cfg.schedule.max_concurrency,
        )  # fmt: skip
        print(f"scheduled {name!r} on Vertex: {resource}")
        return 0
    host = _host(args, cfg)
    params = _parameters(cfg, args, hour=KFP_SCHEDULED_HOUR, hour_lag=2)
    result = client.schedule(
        host, args.pipeline_spec, params, name, cfg.kfp.experiment, cron,
        cfg.schedule.max_concurrency, cfg.schedule.no_catchup, cfg.kfp.pipeline_root,
    )  # fmt: skip
    print(f"recurring run {name!r} {result.action}: {result.recurring_run_id} ({cron})")
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from pipeline import local

    _check_local_io(args)
    return _exit_code(local.run_local(args))


def _replay(args: argparse.Namespace) -> int:
    from pipeline import local

    _check_local_io(args)
    return _exit_code(local.replay(args))


def _demo(args: argparse.Namespace) -> int:
    from pipeline import demo

    _check_dir("--out", args.out)
    return _exit_code(demo.main(args))


def _check_local_io(args: argparse.Namespace) -> None:
    """Fails before any task starts on local-run inputs that cannot work.

    Raises:
        ValueError: naming the flag (or the config / spec file and its field).
    """
    from pipeline import local
    from trainer.contracts import features, storage

    if not storage.is_gcs(args.logs) and not os.path.isdir(args.logs):
        what = "is not a directory" if os.path.exists(args.logs) else "does not exist"
        raise ValueError(f"--logs {args.logs}: {what}")
    _check_dir("--workdir", args.workdir)
    settings = local.settings_from_args(args)  # loads --config and the trainer config
    features.load_feature_spec(settings.feature_spec)


def _check_dir(flag: str, path: str) -> None:
    """``path`` is (or can become) a writable local directory; gs:// passes."""
    from trainer.contracts import storage

    problem = storage.local_dir_problem(path)
    if problem:
        raise ValueError(f"{flag} {path}: {problem}")


# --------------------------------------------------------------------------- helpers


def _exit_code(result: Any) -> int:
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _load(args: argparse.Namespace) -> Any:
    from pipeline import config

    return config.load_config(args.config)


def _shown(host: str) -> str:
    from trainer.contracts.redact import redact

    return redact(host)


def _host(args: argparse.Namespace, cfg: Any) -> str:
    host = args.host or cfg.kfp.host
    if not host:
        raise ValueError("no KFP host: pass --host or set kfp.host in the config")
    return str(host)


def _vertex(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    if not cfg.vertex.pipeline_root:
        raise ValueError(
            "Vertex runs need vertex.pipeline_root (gs://...) in the config"
        )
    return {
        "project": args.vertex_project,
        "region": args.region or cfg.vertex.region,
        "pipeline_root": cfg.vertex.pipeline_root,
        "service_account": cfg.vertex.service_account or None,
    }


def _last_full_hour() -> str:
    from trainer.contracts import events

    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return events.format_hour(now - dt.timedelta(hours=1))


def _parameters(cfg: Any, args: argparse.Namespace, hour: str, hour_lag: int) -> dict:
    """Pipeline arguments: the config's, then ``--param`` overrides (names checked)."""
    import yaml

    from pipeline.hourly import hourly_training
    from trainer import config as trainer_config

    if hour and not hour.startswith("[["):
        from trainer.contracts import events

        events.parse_hour(hour)  # fail here, not inside the pipeline
    raw = {"name": "hourly"}
    if cfg.data.trainer_config:
        raw = trainer_config.load_config(cfg.data.trainer_config).to_dict()
    params = {**cfg.parameters(hour, raw), "hour_lag": hour_lag}
    known = set(hourly_training.component_spec.inputs or {})
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(
                f"--param {item!r}: expected NAME=VALUE, NAME one of {sorted(known)}"
            )
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or "not valid YAML"
            raise ValueError(
                f"--param {item!r}: VALUE is not YAML ({problem})"
            ) from None
    return params
