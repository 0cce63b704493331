"""components.lib.vertex_registry: the Model.upload arguments (the upload needs GCP)."""

from __future__ import annotations

import inspect

import pytest

from components import images
from components.lib import vertex_registry
from components.lib.registry import ModelVersion


def _version(uri: str = "gs://b/reg/versions/7/abc/model") -> ModelVersion:
    return ModelVersion(
        version=7,
        model_uri=uri,
        checkpoint_uri=None,
        idempotency_key="2026-01-01T05",
        parent_version=6,
        created_at="2026-01-01T06:01:00+00:00",
        metadata={"hour": "2026-01-01T05", "metrics": {"auc": 0.71}},
    )


def test_upload_arguments_make_a_new_default_version_aliased_production() -> None:
    parent = "projects/p/locations/us-central1/models/123"
    args = vertex_registry.upload_arguments(
        _version(), "compactrec", parent_model=parent
    )

    assert args["artifact_uri"] == "gs://b/reg/versions/7/abc/model"
    assert args["parent_model"] == parent
    assert args["is_default_version"] is True
    assert args["version_aliases"] == ["production", "v7"]
    assert args["serving_container_image_uri"] == images.SERVING_IMAGE
    assert args["labels"] == {"registry-version": "7", "hour": "2026-01-01t05"}
    assert "auc" in args["version_description"]


def test_upload_arguments_are_accepted_by_model_upload() -> None:
    from google.cloud import aiplatform

    accepted = set(inspect.signature(aiplatform.Model.upload).parameters)
    args = vertex_registry.upload_arguments(_version(), "compactrec")
    assert set(args) <= accepted
    assert {"project", "location"} <= accepted  # what upload() adds


def test_local_models_are_rejected() -> None:
    with pytest.raises(ValueError, match="gs://"):
        vertex_registry.upload_arguments(_version("/tmp/model"), "compactrec")


def test_a_version_that_is_not_production_is_not_made_the_default() -> None:
    args = vertex_registry.upload_arguments(_version(), "compactrec", production=False)
    assert args["is_default_version"] is False
    assert args["version_aliases"] == ["v7"]
