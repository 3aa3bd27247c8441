"""Successive halving (Jamieson & Talwalkar 2016) over candidates scored image by image.

Round ``r`` scores the surviving candidates on the first ``images_r`` search images and keeps
the best ``1/η`` of them; scores are cached, so a survivor is only scored on images it has
not seen. The plan is sized to a budget in image evaluations (each costs the forward passes
of one pixel-flipping run), and a deadline can cut a run short: the winner is then the best
candidate among those scored on the most images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class BudgetError(ValueError):
    """The budget does not cover even one image per candidate."""


@dataclass(frozen=True)
class Round:
    """How many candidates a round scores, on how many images."""

    candidates: int
    images: int


def plan_rounds(candidates: int, images: int, *, eta: int = 3, budget: int | None = None) -> list[Round]:
    """The rounds for ``candidates`` on up to ``images`` images within ``budget`` evaluations.

    Without a budget the last round uses every image. With one, the last round gets as many
    images as fit, then the first round as many as fit; :class:`BudgetError` when not even one
    image per candidate fits.
    """
    if candidates < 1 or images < 1:
        raise ValueError("need at least one candidate and one image")
    if eta < 2:
        raise ValueError(f"eta must be at least 2, got {eta}")
    counts = [candidates]
    while counts[-1] > 1:
        counts.append(math.ceil(counts[-1] / eta))

    def make(first: int, cap: int = images) -> list[Round]:
        return [Round(c, min(cap, first * eta**r)) for r, c in enumerate(counts)]

    cost = plan_cost
    full = max(1, math.ceil(images / eta ** (len(counts) - 1)))
    if budget is None:
        return _trim(make(full))
    if candidates > budget:
        raise BudgetError(
            f"a budget of {budget} image evaluations does not cover {candidates} candidates once "
            f"(the smallest plan needs {candidates}); raise --budget or choose a smaller --space"
        )
    # the most images the last round can have within the budget, then the largest first round
    cap = next(c for c in range(images, 0, -1) if cost(make(1, c)) <= budget)
    first = 1
    while first < cap and cost(make(first + 1, cap)) <= budget:
        first += 1
    return _trim(make(first, cap))


def plan_cost(rounds: Sequence[Round]) -> int:
    """Image evaluations a plan makes (a survivor is scored only on images it has not seen)."""
    seen, total = 0, 0
    for rd in rounds:
        total += rd.candidates * max(0, rd.images - seen)
        seen = max(seen, rd.images)
    return total


def _trim(rounds: list[Round]) -> list[Round]:
    """Drop rounds that would score no new image (the last ones once every image is used)."""
    out: list[Round] = []
    for rd in rounds:
        if out and rd.images == out[-1].images and rd.candidates < out[-1].candidates:
            out[-1] = Round(out[-1].candidates, rd.images)  # ranking on the same images: no new scores
            continue
        out.append(rd)
    return out


@dataclass
class Halving:
    """The scores of a successive-halving run: ``scores[name][image]``, and each round's ranking."""

    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    rounds: list[list[tuple[str, float, int]]] = field(default_factory=list)  # (name, mean, images)
    stopped_early: bool = False

    def mean(self, name: str, images: Sequence[int] | None = None) -> float:
        got = self.scores.get(name, {})
        values = [got[i] for i in (images if images is not None else got) if i in got]
        return sum(values) / len(values) if values else float("nan")

    @property
    def winner(self) -> str:
        """The best candidate of the last round (after an early stop: among those seen most)."""
        return self.rounds[-1][0][0]


def _key(value: float) -> float:
    """Sort key, best first: NaN (a candidate that failed) last."""
    return math.inf if math.isnan(value) else -value


def successive_halving(
    names: Sequence[str],
    images: int,
    score: Callable[[str, int], float],
    *,
    eta: int = 3,
    budget: int | None = None,
    deadline: float | None = None,
    higher_is_better: bool = True,
    progress: Callable[[str, int], None] | None = None,
    on_round: Callable[[int, list[tuple[str, float, int]]], None] | None = None,
) -> Halving:
    """Run successive halving: ``score(name, image)`` for image indices ``0..images-1``.

    ``deadline`` is a :func:`time.monotonic` time after which no new score is started.
    ``progress(name, image)`` is called after every score, ``on_round(r, ranking)`` after each round.
    """
    rounds = plan_rounds(len(names), images, eta=eta, budget=budget)
    result = Halving(scores={n: {} for n in names})
    alive = list(names)
    sign = 1.0 if higher_is_better else -1.0
    for rd in rounds:
        alive = alive[: rd.candidates]
        wanted = range(rd.images)
        for name in alive:
            for i in wanted:
                if i in result.scores[name]:
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    result.stopped_early = True
                    break
                result.scores[name][i] = float(score(name, i))
                if progress is not None:
                    progress(name, i)
            if result.stopped_early:
                break
        if result.stopped_early:
            seen = max(len(result.scores[n]) for n in alive)
            alive = [n for n in alive if len(result.scores[n]) == seen]
            wanted = range(seen)
        ranked = sorted(alive, key=lambda n: _key(sign * result.mean(n, list(wanted))))
        result.rounds.append([(n, result.mean(n, list(wanted)), len(wanted)) for n in ranked])
        if on_round is not None:
            on_round(len(result.rounds) - 1, result.rounds[-1])
        alive = ranked
        if result.stopped_early:
            break
    return result
