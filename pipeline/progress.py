"""One hour of the local pipeline in a child process: logs per task, a live line.

kfp.local's ``SubprocessRunner`` runs every task as a subprocess of the process that
called the pipeline and prints the task's output (and its own executor-input and
status lines) to that process's stdout. :func:`run_logged` therefore runs the hour's
pipeline in a child process (``python -m pipeline.local HOUR SETTINGS``) whose stdout
and stderr come back through a pipe: every line goes to ``LOG_DIR/pipeline.log`` and to
``LOG_DIR/<task>.log`` of the task that printed it, kfp.local's status lines
(``Executing task 'x'`` / ``Task 'x' finished with status S``) give the current stage and
per-stage seconds, and the caller's :class:`Live` line shows the stage and elapsed
seconds. With ``verbose`` every line is also echoed, as kfp.local prints it.

CPU runs (no accelerator configured, as every local run is) get ``CUDA_VISIBLE_DEVICES=""``
and ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set them: TensorFlow's C++ start-up lines
and its ``failed call to cuInit`` error then stay out of the task logs. Python warnings
and errors are kept.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

# kfp task name -> the stage a user reads in the summary line and the report.
TASK_STAGES = {
    "resolve-hour": "resolve",
    "compute-stats": "stats",
    "resolve-production": "resolve",
    "transform-examples": "transform",
    "train-model": "train",
    "export-model": "export",
    "evaluate-model": "evaluate",
    "register-model": "register",
}
STAGES = ("stats", "transform", "train", "export", "evaluate", "register")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own log lines ("HH:MM:SS.mmm - INFO - ..."), not a traceback quoting them.
_START = re.compile(r" - [A-Z]+ - Executing task '([\w-]+)'")
_END = re.compile(r" - [A-Z]+ - Task '([\w-]+)' finished with status (\w+)")
_OUTPUTS = re.compile(r" - [A-Z]+ - Task '([\w-]+)' outputs:")
_URI = re.compile(r"uri='([^']+)'")
# The last line of a Python traceback, or a CLI's "error: ..." line.
_ERROR = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*|error: .+)"
)
# Left out of the tail shown on failure (still in the log): rules, blank lines and
# Python 3.11's ^^^^ markers under traceback lines.
_NOISE = re.compile(r"^(?:-{20,}|[\s^~]*)$")


def cpu_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with TensorFlow quiet and CUDA hidden.

    Values the user set win. ``PYTHONUNBUFFERED`` makes the child's lines arrive as they
    are printed, so the stage timings are those of the tasks.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    # 3 also drops the cuInit error TensorFlow logs when it finds no GPU; 2 keeps errors
    # where the user asked for a GPU.
    env.setdefault(
        "TF_CPP_MIN_LOG_LEVEL", "3" if not env["CUDA_VISIBLE_DEVICES"] else "2"
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclasses.dataclass
class TaskLogs:
    """Splits one hour's output into ``pipeline.log`` and one log per task, and times
    the tasks by kfp.local's status lines.

    ``clock`` is injectable so that the split and the timings are testable on a fixed
    transcript.
    """

    log_dir: str
    clock: Callable[[], float] = time.monotonic
    task: str | None = None
    failed_task: str | None = None
    task_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    outputs: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    _started: float = 0.0
    _outputs_of: str | None = None
    _files: dict[str, IO[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        self._files["pipeline"] = open(self.path("pipeline"), "w", encoding="utf-8")

    def path(self, task: str) -> str:
        return os.path.join(self.log_dir, f"{task}.log")

    def feed(self, raw: str) -> None:
        """One line of the child's output (with or without its newline)."""
        line = _ANSI.sub("", raw.rstrip("\n"))
        self._write("pipeline", line)
        if m := _START.search(line):
            self.task, self._started, self._outputs_of = m.group(1), self.clock(), None
            self._files.setdefault(
                self.task, open(self.path(self.task), "w", encoding="utf-8")
            )
        if self.task:
            self._write(self.task, line)
        if m := _END.search(line):
            name = m.group(1)
            self.task_seconds[name] = self.clock() - self._started
            if m.group(2) != "SUCCESS":
                self.failed_task = name
            self.task = None
        elif m := _OUTPUTS.search(line):
            self._outputs_of = m.group(1)
        elif self._outputs_of and (m := _URI.search(line)):
            self.outputs.setdefault(self._outputs_of, []).append(m.group(1))

    def _write(self, name: str, line: str) -> None:
        f = self._files[name]
        f.write(line + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage of :data:`STAGES` (and ``resolve``), one decimal."""
        out: dict[str, float] = {}
        for task, seconds in self.task_seconds.items():
            stage = TASK_STAGES.get(task, task)
            out[stage] = round(out.get(stage, 0.0) + seconds, 1)
        return out

    def failure(self, tail: int = 15) -> dict[str, Any]:
        """Where and why the hour failed: the task, the reason, its log and last lines."""
        task = self.failed_task or self.task
        path = self.path(task) if task else self.path("pipeline")
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip() for ln in f]
        reasons = [ln.strip() for ln in lines if _ERROR.match(ln.strip())]
        if not reasons and task:  # the orchestrator's own traceback names it
            with open(self.path("pipeline"), encoding="utf-8") as f:
                reasons = [ln.strip() for ln in f if _ERROR.match(ln.strip())]
        kept = [ln for ln in lines if not _NOISE.match(ln)]
        return {
            "failed_task": task,
            "reason": reasons[-1] if reasons else (kept[-1].strip() if kept else ""),
            "log": path,
            "log_tail": kept[-tail:],
        }


class Live:
    """One status line per hour and variant, rewritten in place on a terminal.

    Off a terminal (``make run | tee``, CI, tests) only the final line is printed, so
    a log of the run holds one line per hour.
    """

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()

    def update(self, text: str) -> None:
        if self.tty:
            with self._lock:
                self.stream.write("\r\033[K" + self.label + text)
                self.stream.flush()

    def done(self, text: str) -> None:
        with self._lock:
            if self.tty:
                self.stream.write("\r\033[K")
            self.stream.write(self.label + text + "\n")
            self.stream.flush()


def run_logged(
    command: Sequence[str],
    log_dir: str,
    live: Live,
    verbose: bool = False,
    env: dict[str, str] | None = None,
    describe: Callable[[TaskLogs], str] | None = None,
) -> tuple[int, TaskLogs]:
    """Runs ``command``, splitting its output into task logs; returns (exit code, logs).

    Args:
        command: The child process (one hour of the pipeline).
        log_dir: Where ``pipeline.log`` and the per-task logs go (created).
        live: The line that shows the current stage and elapsed seconds.
        verbose: Also echo every line to stdout (``-v``), as kfp.local prints it.
        env: The child's environment (default :func:`cpu_environment`).
        describe: Extra text for the live line (e.g. the hour's event count).
    """
    logs = TaskLogs(log_dir)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        env=env if env is not None else cpu_environment(),
        start_new_session=True,  # its task processes form one group: see finally
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            logs.feed(line)
            if verbose:
                sys.stdout.write(line)
                sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while reader.is_alive():
            reader.join(1.0)
            if not verbose:
                stage = TASK_STAGES.get(logs.task or "", logs.task or "starting")
                extra = describe(logs) if describe else ""
                live.update(f"{stage:<9} {time.monotonic() - t0:5.0f} s{extra}")
        rc = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: stop the hour and its task processes
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        logs.close()
    return rc, logs
