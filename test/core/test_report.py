"""Evaluation statistics and reports on hand-made episode lists (evaluate.py, report.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.costs import COMPONENT_NAMES
from safevla_core.evaluate import (
    aggregate,
    cost_distribution,
    format_report,
    logistic_fit,
    spl,
    success_cost_correlation,
)
from safevla_core.report import (
    comparison_table,
    markdown_report,
    write_comparison,
    write_eval_report,
)


def ep(success: float, cost: float, length: float = 20.0, spl_value: float | None = None) -> dict:
    e = {
        "success": success,
        "cumulative_cost": cost,
        "robot_cost": cost,
        "object_cost": 0.0,
        "length": length,
        **dict.fromkeys(COMPONENT_NAMES, 0.0),
    }
    if spl_value is not None:
        e["spl"] = spl_value
    return e


def test_spl_per_episode():
    assert spl(1.0, 4.0, 5.0) == pytest.approx(0.8)  # 4 / max(5, 4)
    assert spl(1.0, 4.0, 3.0) == pytest.approx(1.0)  # p < l (grid rounding): capped at 1
    assert spl(0.0, 4.0, 4.0) == 0.0
    assert spl(1.0, float("nan"), 3.0) == 0.0
    assert spl(1.0, 0.0, 0.0) == 1.0  # already at the goal (PickUp)
    assert spl(1.0, 0.0, 0.3) == 1.0  # ... even if the base drifted while turning
    with pytest.raises(ValueError):
        spl(1.0, -1.0, 2.0)


def test_cost_distribution_bins_split_and_tail():
    episodes = [ep(1, 0), ep(1, 3), ep(0, 12), ep(0, 150), ep(1, 10)]
    d = cost_distribution(episodes)
    # Bins [0,1) [1,2) [2,5) [5,10) [10,20) [20,50) [50,100) [100,inf):
    # 0 -> bin 0; 3 -> bin 2; 12 -> bin 4; 150 -> bin 7; 10 -> bin 4 (10 is in [10, 20)).
    assert d["all"]["counts"] == [1, 0, 1, 0, 2, 0, 0, 1]
    assert d["success"]["counts"] == [1, 0, 1, 0, 1, 0, 0, 0]
    assert d["failure"]["counts"] == [0, 0, 0, 0, 1, 0, 0, 1]
    # "> 10" is strict: 12 and 150 of 5 episodes -> 0.4; successes: none of 0, 3, 10 -> 0.
    assert d["all"]["share_above_threshold"] == pytest.approx(0.4)
    assert d["success"]["share_above_threshold"] == 0.0
    assert d["failure"]["max"] == 150.0 and d["success"]["max"] == 10.0
    only_success = cost_distribution([ep(1, 2)])
    assert only_success["failure"]["n"] == 0 and math.isnan(only_success["failure"]["max"])
    with pytest.raises(ValueError):
        cost_distribution([])


def test_pearson_correlation_hand_worked():
    # success [1, 1, 0, 0], cost [0, 2, 4, 6]: deviations s = +-0.5, c = [-3, -1, 1, 3];
    # cov sum = -1.5 - 0.5 - 0.5 - 1.5 = -4; sum s^2 = 1; sum c^2 = 20 -> r = -4 / sqrt(20).
    # t = r sqrt(n - 2) / sqrt(1 - r^2) = -2.828; df = 2: p = 1 - |t| / sqrt(t^2 + 2) = 0.1056.
    c = success_cost_correlation([ep(1, 0), ep(1, 2), ep(0, 4), ep(0, 6)])
    assert c["pearson_r"] == pytest.approx(-4 / math.sqrt(20))
    t = abs(c["pearson_r"]) * math.sqrt(2) / math.sqrt(1 - c["pearson_r"] ** 2)
    assert c["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert c["logistic_slope"] < 0  # more cost, fewer successes in this sample


def test_correlation_undefined_for_one_outcome():
    c = success_cost_correlation([ep(1, 0), ep(1, 3), ep(1, 5)])
    assert math.isnan(c["pearson_r"]) and "both outcomes" in c["note"]


def test_logistic_fit_binary_predictor_closed_form():
    # With x in {0, 1} the MLE is a = logit(p0), b = logit(p1) - logit(p0).
    # x = 0: 3 of 4 succeed -> a = ln(0.75 / 0.25) = ln 3; x = 1: 1 of 4 -> logit = -ln 3,
    # so b = -2 ln 3.
    x = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=float)
    a, b = logistic_fit(x, y)
    assert a == pytest.approx(math.log(3), abs=1e-4)
    assert b == pytest.approx(-2 * math.log(3), abs=1e-4)
    with pytest.raises(ValueError, match="degenerate"):
        logistic_fit(x, np.ones(8))
    with pytest.raises(ValueError):
        logistic_fit(x, np.full(8, 0.5))


def test_aggregate_and_reports(tmp_path):
    episodes = [ep(1, 0, 10, 0.9), ep(0, 12, 30, 0.0), ep(1, 2, 20, 0.6)]
    r = aggregate(episodes)
    # SR 2/3; cost (0 + 12 + 2) / 3 = 4.667; SPL (0.9 + 0 + 0.6) / 3 = 0.5; length 20.
    assert r["success_rate"] == pytest.approx(2 / 3)
    assert r["cumulative_cost"] == pytest.approx(14 / 3)
    assert r["spl"] == pytest.approx(0.5)
    assert r["episode_length"] == 20.0
    text = format_report(r)
    assert "spl" in text and "pearson" in text
    md = markdown_report(r, "unit")
    assert "| success_rate | 0.667 |" in md and "## Cumulative-cost distribution" in md
    paths = write_eval_report(r, tmp_path / "rep", title="unit")
    for key in ("cost_plot", "success_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pearson" in paths["markdown"].read_text()


def test_comparison_table_cost_change():
    ppo = aggregate([ep(1, 10), ep(0, 10)])
    lag = aggregate([ep(1, 2), ep(0, 2)])
    table = comparison_table({"ppo": ppo, "ppo_lag": lag})
    # (2 - 10) / 10 = -80%.
    assert "| ppo_lag | 0.500 | 2.000 | 0.000 | 2.000 |" in table and "-80.0%" in table


def test_write_comparison(tmp_path):
    reports = {"ppo": aggregate([ep(1, 10), ep(0, 3)]), "ppo_lag": aggregate([ep(1, 1)])}
    paths = write_comparison(reports, tmp_path, preamble="# run\n")
    text = paths["markdown"].read_text()
    assert text.startswith("# run") and "SafeVLA (ppo_lag) | 0.865" in text
    assert paths["cost_plot"].read_bytes()[:4] == b"\x89PNG"


def test_paper_table_gives_the_rows_of_the_task():
    from safevla_core.report import paper_table

    pickup = paper_table("pickup")
    assert pickup.startswith("## The paper (Table 1, Safety-PickUp)")
    assert "| FLaRe (ppo) | 0.912 | 5.526 | 1.55 |" in pickup
    assert "| SafeVLA (ppo_lag) | 0.928 | 0.246 | 0.126 |" in pickup
    assert "0.865" not in pickup  # ObjNav's SafeVLA row
    assert "| SPOC (IL) | 0.43 | 13.199 | 0.305 |" in paper_table()
    with pytest.raises(KeyError):
        paper_table("rearrange")


def test_converged_cost_is_the_mean_of_the_last_quarter(tmp_path):
    import json as _json

    from safevla_core.compare import converged_cost

    rows = [{"iteration": i + 1} for i in range(3)]  # no episode finished: skipped
    costs = [9, 9, 9, 9, 4, 6, 2, 8]
    rows += [{"iteration": 4 + i, "cumulative_cost": c} for i, c in enumerate(costs)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(_json.dumps(r) for r in rows))
    # 8 logged costs, last 25% = the last 2: (2 + 8) / 2 = 5
    assert converged_cost(tmp_path) == 5.0
    (tmp_path / "metrics.jsonl").write_text(_json.dumps({"iteration": 1}))
    with pytest.raises(ValueError, match="no episode finished"):
        converged_cost(tmp_path)


def test_bootstrap_ci_of_a_success_rate():
    from safevla_core.evaluate import bootstrap_ci

    # 100 successes in 200 episodes: SR 0.5, binomial standard error sqrt(0.25 / 200) = 0.0354,
    # so a 95% interval is about 0.5 +- 1.96 * 0.0354 = [0.431, 0.569]
    lo, hi = bootstrap_ci([1.0, 0.0] * 100)
    assert lo == pytest.approx(0.431, abs=0.015) and hi == pytest.approx(0.569, abs=0.015)
    assert bootstrap_ci([3.0] * 10) == [3.0, 3.0]  # no spread, no interval
    assert all(math.isnan(v) for v in bootstrap_ci([1.0]))


def test_per_target_type_and_wrong_end_share():
    eps = [ep(1.0, 0.0), ep(0.0, 4.0), ep(1.0, 2.0)]
    for e, t, wrong in zip(eps, ["Mug", "Sofa", "Sofa"], [0.0, 1.0, 0.0], strict=True):
        e["target_type"], e["wrong_end"] = t, wrong
    report = aggregate(eps)
    assert report["per_target_type"] == {
        "Mug": {"episodes": 1.0, "success_rate": 1.0, "cumulative_cost": 0.0},
        "Sofa": {"episodes": 2.0, "success_rate": 0.5, "cumulative_cost": 3.0},  # (4 + 2) / 2
    }
    assert report["wrong_end_share"] == pytest.approx(1 / 3)
    text = markdown_report(report)
    assert "| Sofa | 2 | 0.500 | 3.00 |" in text


def test_oracle_success_and_target_seen_shares():
    # (seen, reached the success region, success): never saw it / saw it only / reached it
    # without ending there / success
    rows = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 1.0, 1.0)]
    eps = []
    for (seen, oracle, success), t in zip(rows, ["Mug", "Mug", "Sofa", "Sofa"], strict=True):
        e = ep(success, 0.0)
        e.update(target_type=t, target_seen=seen, oracle_success=oracle)
        eps.append(e)
    report = aggregate(eps)
    assert report["target_seen_share"] == pytest.approx(3 / 4)
    assert report["oracle_success_rate"] == pytest.approx(2 / 4)
    assert report["per_target_type"]["Mug"]["target_seen"] == pytest.approx(0.5)
    assert report["per_target_type"]["Mug"]["oracle_success"] == 0.0
    assert report["per_target_type"]["Sofa"]["oracle_success"] == 1.0
    text = markdown_report(report)
    assert "| target | episodes | SR | cumulative cost | target_seen | oracle_success |" in text
    assert "| Mug | 2 | 0.000 | 0.00 | 0.500 | 0.000 |" in text
    assert "oracle_success_rate" in format_report(report)
    # a report written before these fields (one episode lacks them) leaves them out
    del eps[0]["oracle_success"]
    report = aggregate(eps)
    assert "oracle_success_rate" not in report and "target_seen_share" in report
    assert "oracle_success" not in report["per_target_type"]["Mug"]
    assert "| target | episodes | SR | cumulative cost | target_seen |" in markdown_report(report)


def test_outcomes_put_every_episode_in_one_class():
    from safevla_core.evaluate import OUTCOME_CLASSES, outcomes

    # (seen, oracle, success, wrong_end, length), v8's classes in miniature
    rows = [
        (1.0, 1.0, 1.0, 0.0, 30.0),  # success
        (1.0, 1.0, 1.0, 0.0, 50.0),  # success
        (1.0, 1.0, 0.0, 1.0, 40.0),  # reached the region, ended elsewhere
        (1.0, 0.0, 0.0, 1.0, 42.0),  # saw it, wrong end
        (0.0, 0.0, 0.0, 1.0, 10.0),  # never saw it, wrong end
        (0.0, 0.0, 0.0, 1.0, 33.0),  # never saw it, wrong end
        (0.0, 0.0, 0.0, 1.0, 60.0),  # never saw it, wrong end
        (0.0, 0.0, 0.0, 0.0, 300.0),  # never saw it, step cap
    ]
    eps = []
    for seen, oracle, success, wrong_end, length in rows:
        e = ep(success, 0.0, length=length)
        e.update(target_seen=seen, oracle_success=oracle, wrong_end=wrong_end)
        eps.append(e)
    got = outcomes(eps)
    assert got is not None and list(got) == [c[0] for c in OUTCOME_CLASSES]
    assert sum(g["episodes"] for g in got.values()) == len(rows)
    assert got["success"] == {"episodes": 2.0, "share": 0.25, "median_length": 40.0}
    assert got["never saw the target, wrong end"]["episodes"] == 3.0
    assert got["never saw the target, wrong end"]["median_length"] == 33.0
    assert got["never saw the target, step cap"]["episodes"] == 1.0
    assert got["reached the success region, ended elsewhere"]["episodes"] == 1.0
    assert got["saw the target, never in the success region, wrong end"]["share"] == 0.125
    empty = got["saw the target, never in the success region, step cap"]
    assert empty["episodes"] == 0.0 and empty["median_length"] is None
    counts = [(1, 2, 1), (0, 1, 0)] + [(0, 0, 0)] * 6
    for e, (region, fires, hits) in zip(eps, counts, strict=True):
        e.update(head_region_steps=region, head_fires=fires, head_hits=hits)
    report = aggregate(eps)
    assert report["outcomes"] == got
    # the head fired 3 times, once in the success region, which had 1 step: 1/3 and 1/1
    assert report["stop_head"]["precision"] == pytest.approx(1 / 3)
    assert report["stop_head"]["recall"] == 1.0
    text = markdown_report(report)
    assert "| never saw the target, wrong end | 3 | 0.375 | 33 |" in text
    assert "| saw the target, never in the success region, step cap | 0 | 0.000 | n/a |" in text
    assert "precision 0.333, recall 1.000 (1 of 3 firings in the success region" in text
    # one episode without the diagnostics (an older report): no breakdown rather than a guess
    del eps[3]["wrong_end"]
    assert outcomes(eps) is None and "outcomes" not in aggregate(eps)
    assert "Where the episodes end" not in markdown_report(aggregate(eps))


def test_comparison_summary_pools_seeds_and_writes_the_report(tmp_path):
    import json

    from safevla_core.compare import ComparisonBudget, summarize, write_results
    from safevla_core.config import Config

    def rep(successes: list[float], costs: list[float]) -> dict:
        return aggregate(
            [
                dict(ep(s, c), target_type="Mug", wrong_end=0.0)
                for s, c in zip(successes, costs, strict=True)
            ]
        )

    reports = {
        "IL": [rep([1, 0, 0, 0], [4, 4, 4, 4])],
        "ppo": [rep([1, 1, 0, 0], [2, 2, 6, 6]), rep([1, 1, 1, 0], [0, 0, 0, 4])],
    }
    steps = {"IL": [0], "ppo": [1000, 1000]}
    summary = summarize(reports, steps)
    # pooled over the 8 ppo episodes: 5 successes -> SR 0.625; costs sum 20 -> 2.5 per episode
    assert summary["ppo"]["success_rate"] == pytest.approx(0.625)
    assert summary["ppo"]["cumulative_cost"] == pytest.approx(2.5)
    assert (summary["ppo"]["episodes"], summary["ppo"]["seeds"]) == (8, 2)
    assert [s["success_rate"] for s in summary["ppo"]["per_seed"]] == [0.5, 0.75]
    lo, hi = summary["ppo"]["success_rate_ci"]
    assert lo < 0.625 < hi
    assert summary["IL"]["cumulative_cost_ci"] == [4.0, 4.0]  # no spread
    # training curves come from each run's metrics.jsonl
    for k in range(2):
        run = tmp_path / "ppo" / f"seed{k}"
        run.mkdir(parents=True)
        rows = [
            {
                "env_steps": 512.0 * i,
                "success": 0.1 * i,
                "cumulative_cost": 3.0,
                "lagrange_multiplier": 0.0,
            }
            for i in range(1, 11)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = write_results(
        Config(),
        tmp_path,
        reports,
        steps,
        ComparisonBudget(seeds=2),
        "safevla compare",
        "2.0 (test)",
    )
    assert json.loads(paths["summary"].read_text())["ppo"]["episodes"] == 8
    text = paths["markdown"].read_text()
    assert "| FLaRe (ppo) | 2 | 8 | 0.625 |" in text
    assert paths["curves"].stat().st_size > 0


def test_shard_reports_merge_into_the_whole_evaluation():
    from safevla_core.evaluate import merge_reports

    eps = [dict(ep(s, c), target_type="Mug") for s, c in ((1, 0), (0, 4), (1, 2), (0, 6))]
    shards = [aggregate(eps[0::2]), aggregate(eps[1::2])]
    for r in shards:
        r.update(checkpoint="il.pt", split="test", extreme=False, ood=None)
    merged = merge_reports(shards)
    # 2 successes in 4 episodes; costs (0 + 4 + 2 + 6) / 4 = 3
    assert merged["success_rate"] == 0.5 and merged["cumulative_cost"] == 3.0
    assert merged["num_episodes"] == 4 and merged["checkpoint"] == "il.pt"
    shards[1]["end_gate"] = 0.5  # the same checkpoint with its end gate overridden
    with pytest.raises(ValueError, match="different evaluations"):
        merge_reports(shards)
    shards[0]["end_gate"] = 0.5
    assert merge_reports(shards)["end_gate"] == 0.5
    shards[1]["checkpoint"] = "other.pt"
    with pytest.raises(ValueError, match="different evaluations"):
        merge_reports(shards)


def test_merged_shards_keep_the_order_of_the_fixed_list():
    from safevla_core.evaluate import merge_reports

    # 5 episodes told apart by their length; shard 0 ran 0, 2, 4 and shard 1 ran 1, 3
    eps = [ep(i % 2, float(i), length=10.0 + i) for i in range(5)]
    shards = [aggregate(eps[1::2]), aggregate(eps[0::2])]  # handed over in either order
    for r, k in zip(shards, (1, 0), strict=True):
        r.update(checkpoint="il.pt", split="test", extreme=False, ood=None, shard=[k, 2])
    merged = merge_reports(shards)
    assert [e["length"] for e in merged["episodes"]] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert merged["success_rate_ci"] == aggregate(eps)["success_rate_ci"]
    shards[0]["shard"] = [0, 2]
    with pytest.raises(ValueError, match="same shard twice"):
        merge_reports(shards)


def test_a_cached_evaluation_of_an_older_checkpoint_is_stale(tmp_path):
    import json as _json

    from safevla_core.compare import cached_evaluation

    path = tmp_path / "eval" / "ppo_seed0.json"
    assert cached_evaluation(path) is None  # not evaluated yet
    path.parent.mkdir()
    path.write_text(
        _json.dumps({"checkpoint": "runs/c/ppo/seed0/ckpt_000100.pt", "success_rate": 0.5})
    )
    # the run went on to iteration 196 after that evaluation: evaluate again
    assert cached_evaluation(path, tmp_path / "ppo" / "seed0" / "ckpt_000196.pt") is None
    # the same checkpoint on another machine (another folder) still counts
    assert cached_evaluation(path, "/elsewhere/ckpt_000100.pt")["success_rate"] == 0.5
    assert cached_evaluation(path)["success_rate"] == 0.5  # IL: any path


def test_finished_env_steps_needs_the_evaluation_and_the_budget(tmp_path):
    """A run is done (no checkpoint needed) only when evaluated and at its step budget."""
    import json as _json

    from safevla_core.compare import finished_env_steps

    run, report = tmp_path / "ppo" / "seed0", tmp_path / "eval" / "ppo_seed0.json"
    run.mkdir(parents=True)
    rows = [{"iteration": 1, "env_steps": 512}, {"iteration": 2, "env_steps": 1024}]
    (run / "metrics.jsonl").write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
    assert finished_env_steps(run, report, 1024) is None  # trained, not evaluated
    report.parent.mkdir()
    report.write_text("{}")
    assert finished_env_steps(run, report, 1024) == 1024
    assert finished_env_steps(run, report, 1025) is None  # budget not reached: resume training
    (run / "metrics.jsonl").write_text('{"iteration": 1}\n')  # no env_steps: not trusted
    assert finished_env_steps(run, report, 1) is None
