"""The runner every local Beam job uses unless told otherwise (no Beam import here).

Beam 2.77's ``DirectRunner`` is a switching runner: it first tries the Prism runner,
which downloads its binary from GitHub at start-up (offline: "Unable to fetch remote
prism binary", after a network time-out), and only then falls back to the in-process
``FnApiRunner``. Our batch jobs (the stats job, the tf.Transform step) therefore run
on the ``FnApiRunner`` directly: with no ``--runner`` flag, or with
``--runner=DirectRunner``. Any other runner (``DataflowRunner``, ``PrismRunner`` when
asked for, ...) is passed through unchanged. The ``--direct_num_workers`` and
``--direct_running_mode`` flags keep their meaning on the ``FnApiRunner``.

Example:
    >>> batch_runner_args(["--direct_num_workers=2"])
    ['--runner=FnApiRunner', '--direct_num_workers=2']
    >>> batch_runner_args(["--runner", "DataflowRunner", "--project=p"])
    ['--runner', 'DataflowRunner', '--project=p']
"""

from __future__ import annotations

from collections.abc import Sequence

LOCAL_BATCH_RUNNER = "FnApiRunner"
_SWITCHING = ("directrunner", "direct", "switchingdirectrunner")


def runner_of(pipeline_args: Sequence[str]) -> str | None:
    """The value of the last ``--runner`` flag (``--runner=X`` or ``--runner X``)."""
    runner = None
    args = list(pipeline_args)
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
    return runner


def batch_runner_args(pipeline_args: Sequence[str]) -> list[str]:
    """Beam flags with an explicit runner that never tries Prism unless asked."""
    runner = runner_of(pipeline_args)
    if runner is not None and runner.lower() not in _SWITCHING:
        return list(pipeline_args)
    out, skip = [], False
    for a in pipeline_args:
        if skip:
            skip = False
            continue
        if a == "--runner":
            skip = True
            continue
        if not a.startswith("--runner="):
            out.append(a)
    return [f"--runner={LOCAL_BATCH_RUNNER}", *out]
