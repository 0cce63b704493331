"""``python -m reproduce.planner --dry-run``: the plans of the validation grid."""

from __future__ import annotations

import json

from reproduce import planner as validation
from trainer.contracts.features import load_feature_spec


def test_dry_run_plans_every_method_and_the_plan_is_never_worse(tmp_path):
    work = tmp_path / "work"
    argv = ["--quick", "--dry-run", "--events-per-hour", "1500", "--train-hours", "1"]
    assert (
        validation.main([*argv, "--budgets", "60", "90", "--work-dir", str(work)]) == 0
    )
    results = json.loads((work / "planner.json").read_text())["datasets"]["synthetic"]
    plans = {(p["budget"], p["method"]): p for p in results["plans"]}
    assert set(plans) == {(b, m) for b in (60.0, 90.0) for m in validation.METHODS}
    for (budget, method), p in plans.items():
        assert p["size_percent"] <= budget + 1e-9, (budget, method)
        # the unrestricted plan is optimal over a superset of the uniform candidates
        assert (
            plans[(budget, "planned")]["predicted_cost"] <= p["predicted_cost"] + 1e-9
        )
    for key, path in results["specs"].items():
        spec = load_feature_spec(path)
        if "uniform mgqe" in key:
            assert {f.treatment.value for f in spec.categorical} <= {
                "mgqe",
                "dpq",
                "full",
            }
    assert "planned size %" in (work / "planner.md").read_text()
