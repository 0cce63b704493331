"""Vertex AI Pipelines: submit and schedule the compiled pipeline.

:func:`submit_vertex` and :func:`schedule_vertex` are the operations of
:mod:`pipeline.client` through ``google.cloud.aiplatform`` (``PipelineJob.submit``,
``PipelineJob.create_schedule`` with a 5-field cron). They need a GCP project and
network, so the tests do not run them; :func:`to_vertex_cron` is tested.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pipeline.client import KFP_HOURLY_CRON, check_cron, check_spec

logger = logging.getLogger(__name__)


def to_vertex_cron(kfp_cron: str) -> str:
    """KFP's 6-field cron (seconds first) -> Vertex's 5-field cron.

    Raises:
        ValueError: if the seconds field is not ``0`` (Vertex has minute resolution).
    """
    check_cron(kfp_cron, 6)
    seconds, *rest = kfp_cron.split()
    if seconds != "0":
        raise ValueError(f"cron {kfp_cron!r}: Vertex schedules need seconds = 0")
    return " ".join(rest)


def submit_vertex(
    project: str,
    region: str,
    pipeline_spec_path: str,
    params: Mapping[str, Any],
    pipeline_root: str,
    run_name: str,
    service_account: str | None = None,
    experiment: str | None = None,
) -> str:
    """Submits one Vertex AI PipelineJob; returns its resource name (untested here)."""
    from google.cloud import aiplatform

    check_spec(pipeline_spec_path)
    job = aiplatform.PipelineJob(
        display_name=run_name,
        template_path=pipeline_spec_path,
        pipeline_root=pipeline_root,
        parameter_values=dict(params),
        project=project,
        location=region,
    )
    job.submit(service_account=service_account or None, experiment=experiment or None)
    logger.info("submitted Vertex pipeline job %s", job.resource_name)
    return str(job.resource_name)


def schedule_vertex(
    project: str,
    region: str,
    pipeline_spec_path: str,
    params: Mapping[str, Any],
    pipeline_root: str,
    name: str,
    cron: str = KFP_HOURLY_CRON,
    max_concurrency: int = 1,
    service_account: str | None = None,
) -> str:
    """Replaces the Vertex schedule called ``name`` (not run in tests).

    Vertex schedules cannot change their pipeline or parameters in place, so existing
    schedules with this display name are paused, the new one is created (on failure
    the old ones are resumed), then the old ones are deleted.
    Missed runs are not back-filled (Vertex never catches up).
    """
    from google.cloud import aiplatform

    check_spec(pipeline_spec_path)
    old = aiplatform.PipelineJobSchedule.list(
        filter=f'display_name="{name}"', project=project, location=region
    )
    job = aiplatform.PipelineJob(
        display_name=name,
        template_path=pipeline_spec_path,
        pipeline_root=pipeline_root,
        parameter_values=dict(params),
        project=project,
        location=region,
    )
    for sched in old:  # stop the old ones first: two schedules must not both fire
        sched.pause()
    try:
        created = job.create_schedule(
            cron=to_vertex_cron(cron),
            display_name=name,
            max_concurrent_run_count=max_concurrency,
            service_account=service_account or None,
        )
    except Exception:
        for sched in old:
            sched.resume()
        raise
    for sched in old:
        sched.delete()
    logger.info(
        "Vertex schedule %s replaces %d old one(s)", created.resource_name, len(old)
    )
    return str(created.resource_name)
