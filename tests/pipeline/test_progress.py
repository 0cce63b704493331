"""pipeline.progress: kfp.local's output split into per-task logs, stage seconds,
the failure summary, and a real child process run through run_logged."""

from __future__ import annotations

import io
import itertools
import sys
import textwrap

from pipeline import progress

C, R = "\x1b[96m", "\x1b[0m"  # kfp.local colours task names


def _status(task: str, what: str) -> str:
    if what == "start":
        return f"02:12:35.915 - INFO - Executing task {C}'{task}'{R}"
    return (
        f"02:12:39.236 - INFO - Task {C}'{task}'{R} finished with status "
        f"\x1b[92m{what}{R}"
    )


TRANSCRIPT = [
    _status("compute-stats", "start"),
    "    [KFP Executor 2026 INFO]: counting",
    _status("compute-stats", "SUCCESS"),
    f"02:12:39.237 - INFO - Task {C}'compute-stats'{R} outputs:",
    "    stats: Dataset( name='stats',",
    "                    uri='/w/kfp-root/run/compute-stats/stats',",
    "--------------------------------------------------------------------------------",
    _status("train-model", "start"),
    "    Traceback (most recent call last):",
    '      File "x.py", line 1, in <module>',
    "    trainer.contracts.events.MissingPartitionError: no partition hour=05",
    _status("train-model", "FAILURE"),
    "RuntimeError: Task 'train-model' finished with status FAILURE",
]


def test_task_logs_split_time_and_explain_a_failure(tmp_path):
    ticks = itertools.count(0.0, 2.5)  # a deterministic clock: +2.5 s per status line
    logs = progress.TaskLogs(str(tmp_path), clock=lambda: next(ticks))
    for line in TRANSCRIPT:
        logs.feed(line + "\n")
    logs.close()

    assert logs.task_seconds == {"compute-stats": 2.5, "train-model": 2.5}
    assert logs.stage_seconds() == {"stats": 2.5, "train": 2.5}
    assert logs.outputs == {"compute-stats": ["/w/kfp-root/run/compute-stats/stats"]}
    stats_log = (tmp_path / "compute-stats.log").read_text()
    assert "counting" in stats_log and "MissingPartition" not in stats_log
    assert "\x1b[" not in (tmp_path / "pipeline.log").read_text()  # colours stripped
    assert len((tmp_path / "pipeline.log").read_text().splitlines()) == len(TRANSCRIPT)

    failure = logs.failure()
    assert failure["failed_task"] == "train-model"
    assert failure["reason"] == (
        "trainer.contracts.events.MissingPartitionError: no partition hour=05"
    )
    assert failure["log"] == str(tmp_path / "train-model.log")
    assert failure["log_tail"][-1].endswith("finished with status FAILURE")


def test_run_logged_runs_a_child_and_prints_one_line_off_a_terminal(tmp_path):
    child = textwrap.dedent(
        f"""
        import os, sys
        print({_status("compute-stats", "start")!r})
        print("cuda:", repr(os.environ["CUDA_VISIBLE_DEVICES"]), file=sys.stderr)
        print("    ValueError: bad hour")
        print({_status("compute-stats", "FAILURE")!r})
        sys.exit(3)
        """
    )
    out = io.StringIO()  # not a terminal: no live updates, one final line
    live = progress.Live("  full  2026-01-01T00  ", stream=out)
    rc, logs = progress.run_logged([sys.executable, "-c", child], str(tmp_path), live)
    live.done("FAILED")

    assert rc == 3
    assert out.getvalue() == "  full  2026-01-01T00  FAILED\n"
    assert logs.failure()["reason"] == "ValueError: bad hour"
    text = (tmp_path / "compute-stats.log").read_text()
    assert "cuda: ''" in text  # stderr kept, CUDA hidden for a CPU run


def test_cpu_environment_keeps_what_the_user_set():
    env = progress.cpu_environment({"PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["TF_CPP_MIN_LOG_LEVEL"] == "3"
    gpu = progress.cpu_environment({"CUDA_VISIBLE_DEVICES": "0"})
    assert gpu["CUDA_VISIBLE_DEVICES"] == "0" and gpu["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert (
        progress.cpu_environment({"TF_CPP_MIN_LOG_LEVEL": "0"})["TF_CPP_MIN_LOG_LEVEL"]
        == "0"
    )


def test_live_rewrites_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    live = progress.Live("  mgqe  2026-01-01T00  ", stream=out)
    live.update("train        12 s")
    live.update("evaluate     30 s")
    live.done("rce 2.886")
    assert out.getvalue().split("\r\x1b[K") == [
        "",
        "  mgqe  2026-01-01T00  train        12 s",
        "  mgqe  2026-01-01T00  evaluate     30 s",
        "  mgqe  2026-01-01T00  rce 2.886\n",
    ]
