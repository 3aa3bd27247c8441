"""Successive halving: plans within budget, survivors, caching, deadlines."""

from __future__ import annotations

import time

import pytest

from lrpcli.tuning.halving import BudgetError, Round, plan_rounds, successive_halving


def cost(rounds: list[Round]) -> int:
    seen = total = 0
    for r in rounds:
        total += r.candidates * max(0, r.images - seen)
        seen = max(seen, r.images)
    return total


def test_plan_without_budget_ends_on_every_image() -> None:
    rounds = plan_rounds(27, 9, eta=3)
    assert rounds == [Round(27, 1), Round(9, 3), Round(3, 9)]
    assert plan_rounds(1, 5) == [Round(1, 5)]


def test_plan_fits_the_budget_and_says_what_it_needs() -> None:
    for budget in (10, 40, 100, 1000):  # 30 candidates: at least 30 evaluations
        try:
            rounds = plan_rounds(30, 12, eta=3, budget=budget)
        except BudgetError as exc:
            assert budget < 30 and "needs 30" in str(exc)
            continue
        assert cost(rounds) <= budget
        assert rounds[0].candidates == 30
    bigger = plan_rounds(30, 12, eta=3, budget=1000)
    assert bigger[-1].images == 12 and cost(plan_rounds(30, 12, eta=3, budget=60)) < cost(bigger)


def test_halving_keeps_the_best_and_scores_each_pair_once() -> None:
    quality = {f"c{i}": i / 10 for i in range(10)}
    calls: list[tuple[str, int]] = []

    def score(name: str, image: int) -> float:
        calls.append((name, image))
        return quality[name] + 0.01 * image

    result = successive_halving(list(quality), 6, score, eta=2)
    assert result.winner == "c9"
    assert len(calls) == len(set(calls))  # cached: no pair twice
    assert all(len(result.scores[n]) >= 1 for n in quality)
    assert len(result.scores["c9"]) == 6 and len(result.scores["c0"]) < 6
    low = successive_halving(list(quality), 6, score, eta=2, higher_is_better=False)
    assert low.winner == "c0"


def test_failed_candidates_rank_last() -> None:
    result = successive_halving(["bad", "good"], 2, lambda n, i: float("nan") if n == "bad" else 1.0, eta=2)
    assert result.winner == "good"


def test_deadline_stops_early_with_a_winner_among_the_most_seen() -> None:
    start = time.monotonic()

    def score(name: str, image: int) -> float:
        time.sleep(0.02)
        return {"a": 1.0, "b": 2.0, "c": 3.0}[name]

    result = successive_halving(["a", "b", "c"], 50, score, eta=2, deadline=start + 0.15)
    assert result.stopped_early
    assert result.winner in {"a", "b", "c"}
    seen = max(len(v) for v in result.scores.values())
    assert len(result.scores[result.winner]) == seen


def test_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        plan_rounds(0, 3)
    with pytest.raises(ValueError):
        plan_rounds(3, 3, eta=1)
