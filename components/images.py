"""The single place that names container images, their tag and accelerator defaults.

Both images hold this repository installed as a package, plus kfp (components use
``install_kfp_package=False``); ``trainer/Dockerfile`` builds them (``make image``).
Bump :data:`TAG` on every release; the compiled spec in ``specs/`` records it.
"""

from __future__ import annotations

REPOSITORY = "us-docker.pkg.dev/compactrec/images"
TAG = "0.1.0"

# TensorFlow + CUDA: train, export, evaluate, register.
TRAINER_IMAGE = f"{REPOSITORY}/compactrec-trainer-gpu:{TAG}"
# Apache Beam + tensorflow-transform (CPU): feature stats and the transform.
BEAM_IMAGE = f"{REPOSITORY}/compactrec-beam:{TAG}"

# Vertex AI prebuilt TensorFlow serving image (components/lib/vertex_registry.py).
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"

# Defaults for the training task; specs/configs/pipeline.yaml may override them.
ACCELERATOR_TYPE = "NVIDIA_TESLA_T4"
ACCELERATOR_LIMIT = 1
