"""Mirror a registered version into the Vertex AI Model Registry (optional).

:func:`upload_arguments` is pure and tested; :func:`upload` calls
``google.cloud.aiplatform.Model.upload`` and needs GCP credentials and network, so no
test runs it. Each registry version becomes a version of one Vertex model
(``parent_model``), carrying the aliases ``production`` and ``v<N>``.

Example:
    >>> from components.lib.registry import ModelVersion
    >>> v = ModelVersion(3, "gs://b/reg/versions/3/a/model", None, "2026-01-01T05", 2,
    ...                  "2026-01-01T06:00:00+00:00", {"hour": "2026-01-01T05"})
    >>> upload_arguments(v, display_name="compactrec")["version_aliases"]
    ['production', 'v3']
"""

from __future__ import annotations

import logging
import re
from typing import Any

from components import images
from components.lib import registry
from components.lib.registry import PRODUCTION, ModelVersion

logger = logging.getLogger(__name__)

_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


def _label(value: Any) -> str:
    """Vertex label values: lowercase letters, digits, ``-`` and ``_``, <= 63 chars."""
    return _LABEL_BAD.sub("-", str(value).lower())[:63]


def upload_arguments(
    version: ModelVersion,
    display_name: str,
    parent_model: str | None = None,
    serving_image: str = images.SERVING_IMAGE,
    production: bool = True,
) -> dict[str, Any]:
    """The keyword arguments of ``aiplatform.Model.upload`` for ``version``.

    Args:
        version: A registered version whose model lives on GCS.
        display_name: The Vertex model's display name.
        parent_model: Resource name of the existing Vertex model; None = create it.
        serving_image: The prediction container.
        production: Whether our registry's ``production`` alias points at
            ``version``. A late, older hour is registered without moving it (see
            components.lib.registry), so its Vertex copy is neither the default
            version nor aliased ``production``.

    Raises:
        ValueError: if the model is not on GCS (Vertex reads ``gs://`` only).
    """
    if not version.model_uri.startswith("gs://"):
        raise ValueError(f"Vertex needs a gs:// model, got {version.model_uri!r}")
    metrics = version.metadata.get("metrics") or {}
    return {
        "display_name": display_name,
        "artifact_uri": version.model_uri,
        "serving_container_image_uri": serving_image,
        "parent_model": parent_model,
        "is_default_version": production,
        "version_aliases": [PRODUCTION] * production + [f"v{version.version}"],
        "version_description": f"registry v{version.version}, hour "
        f"{version.metadata.get('hour', '?')}, metrics {metrics}",
        "labels": {
            "registry-version": _label(version.version),
            "hour": _label(version.metadata.get("hour", "unknown")),
        },
    }


def mirror(
    version: ModelVersion,
    project: str,
    region: str,
    registry_uri: str | None = None,
    display_name: str = "compactrec",
) -> str | None:
    """Mirrors a registered version into Vertex AI when a project is configured.

    Args:
        version: The version just registered in our registry.
        project: GCP project; ``""`` (the default config) means "not configured" and
            nothing is uploaded.
        region: Vertex AI region.
        registry_uri: Our registry: the Vertex copy becomes the default version
            and is aliased ``production`` only if our ``production`` alias points
            at ``version`` (None: assume it does).
        display_name: The Vertex model that collects the versions (its first upload
            creates it; later uploads become its versions).

    Returns:
        The Vertex model version's resource name, or ``None`` when not configured.
    """
    if not project:
        return None
    from google.cloud import aiplatform

    production = registry_uri is None or (
        registry.get_alias(registry_uri) == version.version
    )

    existing = aiplatform.Model.list(
        filter=f'display_name="{display_name}"', project=project, location=region
    )
    parent = existing[0].resource_name if existing else None
    return upload(
        project,
        region,
        version,
        display_name,
        parent_model=parent,
        production=production,
    )


def upload(
    project: str,
    region: str,
    version: ModelVersion,
    display_name: str,
    parent_model: str | None = None,
    production: bool = True,
) -> str:
    """Uploads ``version`` to Vertex AI; returns the model version's resource name."""
    from google.cloud import aiplatform

    kwargs = upload_arguments(
        version, display_name, parent_model, production=production
    )
    model = aiplatform.Model.upload(project=project, location=region, **kwargs)
    logger.info(
        "uploaded registry v%d to Vertex as %s", version.version, model.resource_name
    )
    return str(model.versioned_resource_name)
