"""The run report of a small REAL run, rendered in headless Chromium.

Two synthetic hours x 2,000 events through the hourly pipeline (kfp.local + DirectRunner)
for two variants, plus one hour whose partition is missing, run through the CLI
(``python -m pipeline replay``): it fails, prints where and why, exits 1, and the report
shows it as failed. The page is then loaded in Debian's ``chromium`` (``.ci/run``
installs it) with a probe script that records console errors and uncaught errors
(resources that fail to load included) and, on ``load``, writes what it found into the
DOM, which ``--dump-dom`` prints: every image decoded, the tables and slices present,
and nothing wider than the window.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from beam_jobs import synthetic
from pipeline import demo, local, report
from trainer.config import load_config

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOURS = ["2026-01-01T00", "2026-01-01T01"]
MISSING = "2026-01-01T05"  # no partition: the stats task fails
WIDTH = 1280

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", (e) => {
  __errors.push(String(e.message || (e.target && (e.target.src || e.target.href))));
}, true);
window.addEventListener("unhandledrejection", (e) => __errors.push(String(e.reason)));
const __err = console.error;
console.error = (...a) => { __errors.push(a.map(String).join(" ")); __err(...a); };
window.addEventListener("load", () => {
  const tables = {};
  for (const t of document.querySelectorAll("table[id]")) {
    tables[t.id] = [...t.rows].map((r) => [...r.cells].map((c) => c.textContent.trim()));
  }
  const probe = document.createElement("pre");
  probe.id = "__probe";
  probe.textContent = JSON.stringify({
    errors: __errors,
    images: [...document.images].map((i) => [i.complete, i.naturalWidth, i.alt]),
    tables,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  });
  document.body.appendChild(probe);
});
</script>"""


def _settings(out: str, variant: str) -> local.LocalSettings:
    experiment = dict(demo.VARIANTS)[variant]
    ns = argparse.Namespace(
        logs=os.path.join(out, "logs"),
        workdir=os.path.join(out, variant),
        config=None,
        spec=None,
    )
    s = local.settings_from_args(ns, experiment=experiment)
    # Fewer steps; the same pipeline.
    cfg = load_config(experiment, {"training.batch_size": 256, "training.epochs": 1})
    trainer = {**cfg.to_dict(), "feature_spec": s.feature_spec}
    return local.LocalSettings(**{**s.__dict__, "trainer_config": trainer})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[str, dict, subprocess.CompletedProcess]:
    out = str(tmp_path_factory.mktemp("report_run"))
    cfg = synthetic.SyntheticConfig(seed=5, events_per_hour=2000)
    synthetic.write_stream(os.path.join(out, "logs"), cfg, hours=3)  # 02: eval only
    results = {
        v: local.replay_hours(HOURS, _settings(out, v)) for v in ("full", "mgqe")
    }
    s = _settings(out, "mgqe")
    cli = subprocess.run(
        [sys.executable, "-m", "pipeline", "replay", "--hours", f"{MISSING}:{MISSING}"]
        + ["--logs", s.logs, "--workdir", s.workdir],
        capture_output=True,
        text=True,
        timeout=600,
    )
    with open(local.failure_path(s, MISSING)) as f:
        results["mgqe"].append(json.load(f))
    return report.write_report(out, results), results, cli


def test_a_failed_hour_is_one_screen_and_exit_code_1(run):
    _, _, cli = run
    assert cli.returncode == 1, cli.stderr
    lines = cli.stdout.splitlines()
    assert len(lines) <= 20, cli.stdout  # one screen, not kfp.local's transcript
    assert lines[0].startswith(f"{MISSING}  FAILED in compute-stats after ")
    assert "MissingPartitionError" in lines[0] or "partition" in lines[0], lines[0]
    assert re.search(rf"log: \S+/logs/{MISSING}/compute-stats\.log", lines[1])
    assert lines[-1].startswith("0 of 1 hours done, failed: " + MISSING)


def test_the_hours_that_ran_have_stage_seconds_and_logs(run):
    path, results, _ = run
    for variant in ("full", "mgqe"):
        for rec in results[variant][:2]:
            assert rec.get("status") != "failed", rec
            assert set(rec["stage_seconds"]) >= {"stats", "transform", "train"}
            assert all(v >= 0 for v in rec["stage_seconds"].values())
    out = os.path.dirname(path)
    for task in ("compute-stats", "train-model", "evaluate-model"):
        log = os.path.join(out, "full", "logs", HOURS[0], f"{task}.log")
        with open(log) as f:
            text = f.read()
        assert f"Executing task '{task}'" in text and "finished with status" in text
        assert "failed call to cuInit" not in text  # CPU run: CUDA hidden


@pytest.mark.skipif(  # never on CI: .ci/run installs chromium, and a missing one fails
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install -y chromium)",
)
def test_report_renders_in_headless_chromium(run, tmp_path):
    path, records, _ = run
    probe = os.path.join(os.path.dirname(path), "report_probe.html")
    with open(path, encoding="utf-8") as f:
        page = f.read()
    with open(probe, "w", encoding="utf-8") as f:  # beside it: relative links work
        f.write(page.replace("<head>", "<head>" + PROBE, 1))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={WIDTH},900",
            "--virtual-time-budget=5000",
            "--dump-dom",
            "file://" + probe,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="__probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    seen = json.loads(html.unescape(found.group(1)))

    assert seen["errors"] == []
    assert len(seen["images"]) == 3
    assert all(complete and width > 0 for complete, width, _ in seen["images"])
    assert seen["scrollWidth"] <= seen["innerWidth"] == WIDTH  # fits the page

    tables = seen["tables"]
    assert {"results", "slices", "hashing", "stages", "registry", "failures"} <= set(
        tables
    )
    results = {(r[0], r[1]): r for r in tables["results"][1:]}
    assert results[(HOURS[1], "mgqe")][2] == "ok"
    full = records["full"][0]["metrics"]
    assert results[(HOURS[0], "full")][3:5] == [
        f"{full['rce']:.3f}",
        f"{full['auc']:.4f}",
    ]  # RCE and AUC of the run, as the browser shows them
    assert results[(MISSING, "mgqe")][2] == "failed in compute-stats"
    classes = {r[1] for r in tables["slices"][2:]}
    assert classes == {"head", "tail", "unseen", "missing"}
    features = {r[0] for r in tables["slices"][2:]}
    assert {"item_id", "user_id"} <= features
    assert len(tables["hashing"]) > 1 and len(tables["stages"]) == 1 + 5
    assert tables["failures"][1][:3] == ["mgqe", MISSING, "compute-stats"]
