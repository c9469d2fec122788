"""Best-of-N under a time budget, with an optional anytime stop.

Candidates are generated and scored in batches; before each batch the measured costs (models.budget) say
whether it still fits the budget, and once a candidate's score passes `threshold` no further batch starts.
The clock is injectable, so the logic is tested without timing anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .budget import CostModel
from .errors import InputError
from .hidden import HiddenStates, Scores
from .sana_sprint import MAX_CANDIDATES, candidate_seeds


@dataclass(frozen=True)
class BudgetRun:
    """What a budgeted Best-of-N produced: every scored candidate, and how the budget was spent."""

    hidden: HiddenStates
    scores: Scores
    planned_n: int  # the largest N the cost model said fits
    generated: int  # candidates actually generated and scored
    stopped_early: bool  # the threshold was reached before the plan was done
    elapsed_ms: float  # candidates + scoring (the winner's finish comes after)
    budget_ms: float


def _cat_hidden(parts: list[HiddenStates]) -> HiddenStates:
    first = parts[0]
    if len(parts) == 1:
        return first
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    offset, indices = 0, []
    for p in parts:
        indices += [offset + i for i in range(len(p))]
        offset += len(p)
    return replace(first, hidden=cat("hidden"), sample=cat("sample"), model_input=cat("model_input"),
                   timestep=cat("timestep"), scm_timestep=cat("scm_timestep"), temb=cat("temb"),
                   embedded_timestep=cat("embedded_timestep"), seeds=tuple(s for p in parts for s in p.seeds),
                   indices=tuple(indices))


def _cat_scores(parts: list[Scores]) -> Scores:
    first = parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return replace(first, scores=cat("scores"), p_yes=cat("p_yes"), p_no=cat("p_no"),
                   indices=tuple(range(sum(len(p) for p in parts))))


def best_of_n_within_budget(model, verifier, prompt: str, seed: int, budget_ms: float, cost: CostModel, layer: int,
                            height: int, width: int, threshold: float | None = None, batch_size: int | None = None,
                            max_n: int = MAX_CANDIDATES, mode: str = "reference", steps: int = 1,
                            clock: Callable[[], float] = time.perf_counter, callback=None) -> BudgetRun:
    """Generate and score candidates (seed, seed+1, ...) in batches while the budget allows; stop early at `threshold`."""
    planned = min(cost.max_candidates(budget_ms), max_n)
    if planned < 1:
        raise InputError(f"not even one candidate fits {budget_ms:.0f} ms here (one costs about "
                         f"{cost.total_ms(1):.0f} ms with the winner's finish); raise the budget")
    bs = batch_size or (planned if threshold is None else max(1, min(4, planned)))
    t0 = clock()
    emb = model.encode_prompt(prompt)
    hiddens, scores, done, stopped = [], [], 0, False
    seeds = candidate_seeds(seed, planned)
    t_first = clock()
    while done < planned:
        n = min(bs, planned - done)
        now = clock()
        spent = (now - t0) * 1e3
        # the slower of the plan and what the batches so far really cost, so a busy GPU does not overrun the budget
        per = max(cost.per_candidate_ms, (now - t_first) * 1e3 / done) if done else cost.per_candidate_ms
        if done and spent + n * per + cost.winner_ms > budget_ms:
            break
        h = model.prefix(emb, seeds[done:done + n], layer=layer, height=height, width=width, steps=steps,
                         callback=callback)
        s = verifier.score(model, h, mode=mode)
        hiddens.append(h)
        scores.append(s)
        done += n
        if threshold is not None and float(s.scores.max()) >= threshold:
            stopped = done < planned
            break
    hidden = _cat_hidden(hiddens)
    return BudgetRun(hidden=hidden, scores=replace(_cat_scores(scores), indices=hidden.indices), planned_n=planned,
                     generated=done, stopped_early=stopped, elapsed_ms=(clock() - t0) * 1e3, budget_ms=budget_ms)
