"""Flag checks of ``python -m trainer.task``: before ``--out`` is claimed, before TF.

:func:`check_inputs` returns the training input of the config's model (wide_deep's
``--train``, a ranking model's ``--interactions``) or raises
:class:`~trainer.config.ConfigError` naming the flag, which the CLI prints as one
``error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse
import os

from trainer.config import ConfigError, TrainerConfig
from trainer.contracts import storage
from trainer.contracts.features import load_feature_spec


def check_inputs(config: TrainerConfig, args: argparse.Namespace) -> str:
    """The training input of ``config``'s model; a missing or misplaced flag is an error.

    Raises:
        ConfigError: naming the flag.
    """
    if config.model.name == "wide_deep":
        if args.interactions:
            raise ConfigError("--interactions: wide_deep trains on --train logs")
        for flag, value in (("--train", args.train), ("--artifacts", args.artifacts)):
            if not value:
                raise ConfigError(f"{flag}: required to train wide_deep")
        load_feature_spec(config.feature_spec)  # an error names the file and field
        _check_paths(args)
        return args.train
    given = [
        f for f in ("train", "artifacts", "hours", "warm_start") if getattr(args, f)
    ]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag}: {config.model.name} trains on --interactions only")
    if not args.interactions:
        raise ConfigError(f"--interactions: required to train {config.model.name}")
    if not os.path.isfile(args.interactions) and "://" not in args.interactions:
        raise ConfigError(f"--interactions: {args.interactions}: no such file")
    _check_out(args.out)
    return args.interactions


def _check_paths(args: argparse.Namespace) -> None:
    """wide_deep's inputs are readable and ``--out`` writable, before ``--out`` is
    claimed and before TensorFlow starts.

    Raises:
        ConfigError: naming the flag and the path.
    """
    from trainer.contracts import artifacts, events

    if args.hours:
        try:
            events.parse_hour_range(args.hours)
        except ValueError as e:
            raise ConfigError(f"--hours: {e}") from None
    for flag, path in (("--train", args.train), ("--warm-start", args.warm_start)):
        if path and not storage.is_gcs(path) and not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            raise ConfigError(f"{flag} {path}: {what}")
    try:
        artifacts.load_manifest(args.artifacts)
    except (OSError, ValueError) as e:  # ArtifactError, bad JSON, unreadable
        raise ConfigError(f"--artifacts {args.artifacts}: {e}") from None
    _check_out(args.out)


def _check_out(out: str) -> None:
    """``out`` is (or can become) a writable local directory; gs:// passes."""
    problem = storage.local_dir_problem(out)
    if problem:
        raise ConfigError(f"--out {out}: {problem}")
