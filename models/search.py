"""Best-of-N selection: the top-k of scored candidates, and Best-of-N under a time budget with an anytime stop.

Under a budget, candidates are generated and scored in batches; before each batch the measured costs
(models.budget) say whether it still fits, and once a candidate's score passes `threshold` no further batch
starts. A budget smaller than one candidate still gives an image (Best-of-1) and says by how much it overran.
The clock is injectable, so the logic is tested without timing anything.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .budget import CostModel
from .errors import InputError, check_finite
from .hidden import HiddenStates, Scores, Selection, check_scores_match
from .sana_sprint import MAX_CANDIDATES, candidate_seeds


def select_top_k(hidden: HiddenStates, scores: Scores, k: int = 1,
                 override: int | None = None) -> tuple[HiddenStates, list[int], list[float]]:
    """Best-of-N: keep the k best-scored candidates (best first); returns them, their original indices and scores.

    `override` (an original candidate index) puts that candidate first instead of the verifier's choice. The kept
    candidates carry a Selection (verifier, N, score mode, ranks) for reports and image metadata; selecting again
    among already-selected candidates (a cascade: VHS prunes N to k, CLIP re-ranks the k) keeps the original N and
    names both verifiers.
    """
    check_scores_match(hidden, scores)
    if not 1 <= k <= len(hidden):
        raise InputError(f"k must be between 1 and the number of candidates ({len(hidden)}), got {k}")
    ranking = scores.ranking()
    if override is not None:
        if override not in hidden.indices:
            raise InputError(f"candidate {override} is not among these candidates {list(hidden.indices)}")
        first = hidden.indices.index(override)
        ranking = [first] + [i for i in ranking if i != first]
    order = ranking[:k]
    chosen = scores.scores[order]
    rank_of = {pos: r for r, pos in enumerate(scores.ranking(), start=1)}
    prior = hidden.selection
    selection = Selection(verifier=scores.verifier, n_candidates=len(hidden), score_mode=scores.mode,
                          ranks=tuple(rank_of[i] for i in order), override=override,
                          budget_ms=prior.budget_ms if prior is not None else None)
    if prior is not None:  # a cascade: an earlier verifier kept these candidates, this one re-ranks them
        selection = replace(selection, verifier=f"{prior.verifier} -> {scores.verifier}",
                            n_candidates=prior.n_candidates, pruned_to=len(hidden))
    selected = replace(hidden.select(order, scores=chosen), selection=selection)
    return selected, [hidden.indices[i] for i in order], [float(s) for s in chosen]


@dataclass(frozen=True)
class BudgetRun:
    """What a budgeted Best-of-N produced: every scored candidate, and how the budget was spent."""

    hidden: HiddenStates
    scores: Scores
    planned_n: int  # the largest N the cost model said fits (1 when not even one fits: Best-of-1 regardless)
    generated: int  # candidates actually generated and scored
    stopped_early: bool  # the threshold was reached before the plan was done
    elapsed_ms: float  # prompt encoding + candidates + scoring (the winner's finish comes after)
    budget_ms: float
    fits: bool  # False: even one candidate with the winner's finish was predicted to exceed the budget

    def predicted_total_ms(self, cost: CostModel) -> float:
        """Elapsed so far plus the winner's predicted finish."""
        return self.elapsed_ms + cost.winner_ms


def _cat_hidden(parts: list[HiddenStates]) -> HiddenStates:
    """One HiddenStates of candidates generated in several batches of the same run (indices 0..N-1)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    n = sum(len(p) for p in parts)
    key = hashlib.sha256(",".join(p.run_key for p in parts).encode()).hexdigest()[:16]
    return replace(first, hidden=cat("hidden"), sample=cat("sample"), model_input=cat("model_input"),
                   timestep=cat("timestep"), scm_timestep=cat("scm_timestep"), temb=cat("temb"),
                   embedded_timestep=cat("embedded_timestep"), seeds=tuple(s for p in parts for s in p.seeds),
                   indices=tuple(range(n)), run_key=key)


def _cat_scores(parts: list[Scores], hidden: HiddenStates) -> Scores:
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return replace(parts[0], scores=cat("scores"), p_yes=cat("p_yes"), p_no=cat("p_no"), says_yes=cat("says_yes"),
                   indices=hidden.indices, run_key=hidden.run_key)


def best_of_n_within_budget(model, verifier, prompt: str, seed: int, budget_ms: float, cost: CostModel, layer: int,
                            height: int, width: int, threshold: float | None = None, batch_size: int | None = None,
                            max_n: int = MAX_CANDIDATES, mode: str = "reference", steps: int = 1,
                            clock: Callable[[], float] = time.perf_counter, callback=None) -> BudgetRun:
    """Generate and score candidates (seed, seed+1, ...) in batches while the budget allows; stop early at `threshold`.

    At least one candidate is always made: a budget smaller than one candidate gives Best-of-1 with `fits` False."""
    check_finite(budget_ms=budget_ms, threshold=threshold)
    fitting = cost.max_candidates(budget_ms)
    planned = max(1, min(fitting, max_n))
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
    return BudgetRun(hidden=hidden, scores=_cat_scores(scores, hidden), planned_n=planned, generated=done,
                     stopped_early=stopped, elapsed_ms=(clock() - t0) * 1e3, budget_ms=budget_ms,
                     fits=fitting >= 1)
