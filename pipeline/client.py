"""Small wrappers over ``kfp.Client``: submit and schedule the pipeline.

KFP:
    :func:`submit_run` creates one run of a compiled spec (sent inline, no upload).
    :func:`schedule` keeps exactly one recurring run per name. The KFP v2beta1 API has
    no update for recurring runs, so it lists runs with that display name and, unless
    one is identical (same spec, parameters, cron, concurrency, catch-up, enabled),
    disables the old ones, creates the new one, then deletes the old ones. If the
    create fails, the old ones are re-enabled, so a failed update never leaves the
    pipeline unscheduled.

Vertex AI Pipelines: the same operations are in :mod:`pipeline.vertex_client`.

``kfp.Client`` prints links to stdout; here they are logged instead, since this is a
library. Server and connection errors become :class:`PipelineClientError`. Hosts may
carry credentials (``http://user:password@host``): every message and log line here
shows them through :func:`trainer.contracts.redact.redact`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from trainer.contracts.redact import redact

logger = logging.getLogger(__name__)

KFP_HOURLY_CRON = "0 0 * * * *"  # seconds minutes hours day-of-month month day-of-week


class PipelineClientError(RuntimeError):
    """The pipeline service rejected a request or could not be reached."""


@dataclasses.dataclass(frozen=True)
class ScheduleResult:
    """What :func:`schedule` did.

    Attributes:
        recurring_run_id: The id of the (single) recurring run with that name.
        action: ``created``, ``replaced`` or ``unchanged``.
        replaced: Ids of the recurring runs that were deleted.
    """

    recurring_run_id: str
    action: str
    replaced: tuple[str, ...] = ()


# ------------------------------------------------------------------------------ KFP


def submit_run(
    host: str,
    pipeline_spec_path: str,
    params: Mapping[str, Any],
    experiment: str,
    run_name: str,
    pipeline_root: str | None = None,
) -> str:
    """Creates one run of a compiled pipeline; returns its run id.

    Raises:
        PipelineClientError: if the server rejects the run or cannot be reached.
        FileNotFoundError: if the spec does not exist.
    """
    check_host(host)
    check_spec(pipeline_spec_path)
    client = _connect(host)
    result = _call(
        "create run",
        host,
        client.create_run_from_pipeline_package,
        pipeline_spec_path,
        arguments=dict(params),
        run_name=run_name,
        experiment_name=experiment,
        pipeline_root=pipeline_root or None,
    )
    logger.info("submitted run %s (%s) to %s", result.run_id, run_name, redact(host))
    return str(result.run_id)


def schedule(
    host: str,
    pipeline_spec_path: str,
    params: Mapping[str, Any],
    name: str,
    experiment: str,
    cron: str = KFP_HOURLY_CRON,
    max_concurrency: int = 1,
    no_catchup: bool = True,
    pipeline_root: str | None = None,
) -> ScheduleResult:
    """Creates or updates the recurring run called ``name`` (see module docstring).

    Args:
        host: The KFP API endpoint.
        pipeline_spec_path: The compiled pipeline YAML.
        params: Pipeline arguments for every run.
        name: Display name; at most one recurring run has it afterwards.
        experiment: The experiment the recurring run belongs to (created if absent).
        cron: KFP cron with 6 fields, seconds first.
        max_concurrency: Runs allowed at once.
        no_catchup: True = after a pause, run only the latest missed interval.
        pipeline_root: Output root; None = the deployment default.

    Raises:
        PipelineClientError: on a server or connection error.
        ValueError: if ``cron`` does not have 6 fields.
    """
    check_cron(cron, 6)
    check_host(host)
    check_spec(pipeline_spec_path)
    client = _connect(host)
    exp = _call("create experiment", host, client.create_experiment, experiment)
    wanted = {
        "spec": _spec_dict(pipeline_spec_path),
        "params": dict(params),
        "cron": cron,
        "max_concurrency": max_concurrency,
        "no_catchup": no_catchup,
    }
    existing = _recurring_runs_named(client, host, name)
    if len(existing) == 1 and _same(existing[0], wanted):
        logger.info("recurring run %r is up to date", name)
        return ScheduleResult(existing[0].recurring_run_id, "unchanged")
    old_ids = tuple(rr.recurring_run_id for rr in existing)
    for rr_id in old_ids:
        _call("disable recurring run", host, client.disable_recurring_run, rr_id)
    try:
        created = _call(
            "create recurring run",
            host,
            client.create_recurring_run,
            exp.experiment_id,
            name,
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=no_catchup,
            params=dict(params),
            pipeline_package_path=pipeline_spec_path,
            pipeline_root=pipeline_root or None,
        )
    except PipelineClientError:
        for rr_id in old_ids:  # put the old schedule back
            _call("re-enable recurring run", host, client.enable_recurring_run, rr_id)
        raise
    for rr_id in old_ids:
        _call("delete recurring run", host, client.delete_recurring_run, rr_id)
    action = "replaced" if old_ids else "created"
    logger.info("recurring run %r %s: %s", name, action, created.recurring_run_id)
    return ScheduleResult(created.recurring_run_id, action, old_ids)


def _connect(host: str) -> Any:
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0"
        return _call("connect", host, lambda: kfp.Client(host=host))


def _call(
    what: str, host: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Calls ``fn``, logging what kfp prints and turning API errors into ours."""
    import kfp_server_api
    import urllib3

    out = io.StringIO()
    shown = redact(host)
    try:
        with contextlib.redirect_stdout(out):
            return fn(*args, **kwargs)
    except kfp_server_api.ApiException as e:
        raise PipelineClientError(
            redact(
                f"{what} failed: KFP API at {shown} answered HTTP {e.status}: "
                f"{_message(e)}"
            )
        ) from None
    except urllib3.exceptions.HTTPError as e:
        raise PipelineClientError(
            redact(f"{what} failed: cannot reach KFP at {shown}: {e}")
        ) from None
    finally:
        if out.getvalue().strip():
            logger.info("%s", redact(out.getvalue().strip()))


def _message(e: Any) -> str:
    try:
        return str(json.loads(e.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(e.body or e.reason)


def _recurring_runs_named(client: Any, host: str, name: str) -> list[Any]:
    flt = json.dumps(
        {
            "predicates": [
                {"operation": "EQUALS", "key": "display_name", "string_value": name}
            ]
        }
    )
    found: list[Any] = []
    token = ""
    for _ in range(100):  # pages of 100: bounded
        page = _call(
            "list recurring runs",
            host,
            client.list_recurring_runs,
            page_token=token,
            page_size=100,
            filter=flt,
        )
        found.extend(rr for rr in page.recurring_runs or [] if rr.display_name == name)
        token = page.next_page_token or ""
        if not token:
            break
    return found


def _same(rr: Any, wanted: Mapping[str, Any]) -> bool:
    cron = (
        rr.trigger.cron_schedule.cron
        if rr.trigger and rr.trigger.cron_schedule
        else None
    )
    params = rr.runtime_config.parameters if rr.runtime_config else None
    return (
        rr.pipeline_spec == wanted["spec"]
        and (params or {}) == wanted["params"]
        and cron == wanted["cron"]
        and str(rr.max_concurrency) == str(wanted["max_concurrency"])
        and bool(rr.no_catchup) == wanted["no_catchup"]
        and rr.mode in (None, "ENABLE")
    )


def _spec_dict(path: str) -> dict[str, Any]:
    """The spec as kfp.Client sends it: the YAML put through the PipelineSpec proto."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    with open(path, encoding="utf-8") as f:
        doc = next(yaml.safe_load_all(f))
    spec = json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    return dict(json_format.MessageToDict(spec))


def check_spec(path: str) -> None:
    """The compiled spec exists and parses as a PipelineSpec, before any network.

    Raises:
        FileNotFoundError: if it does not exist.
        ValueError: naming the file if it is not a compiled pipeline.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"compiled pipeline spec not found: {path} "
            "(run `python -m pipeline compile`)"
        )
    from google.protobuf import json_format

    try:
        _spec_dict(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except StopIteration:
        raise ValueError(f"{path}: empty, not a compiled pipeline spec") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({_one_line(e)})") from None
    except (json_format.ParseError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path}: not a compiled pipeline spec ({_one_line(e)}); "
            "run `python -m pipeline compile`"
        ) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def check_host(host: str) -> None:
    """``host`` is an http(s) URL with a host name (checked before connecting)."""
    import urllib.parse

    parsed = urllib.parse.urlsplit(host)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"KFP host {redact(host)!r}: expected an http:// or https:// URL"
        )


def check_cron(cron: str, fields: int) -> None:
    if len(cron.split()) != fields:
        raise ValueError(f"cron {cron!r} must have {fields} fields")
