"""Time budgets: measure what one candidate, its verification and the winner's finish cost, then pick N.

Costs are measured on the user's own device with the models at hand (batched, as Best-of-N runs them), fitted
as fixed + per-candidate terms, and turned into the largest N whose whole run fits a budget in milliseconds.
The clock is injectable so budget logic can be tested without timing anything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .errors import InputError
from .sana_sprint import MAX_CANDIDATES


@dataclass(frozen=True)
class CostModel:
    """Milliseconds for each part of a Best-of-N run, as fixed + per-candidate terms."""

    encode_ms: float  # prompt encoding, once per prompt
    fixed_ms: float  # per-run overhead of generating + verifying a batch (intercept)
    per_candidate_ms: float  # one more candidate through the prefix and the verifier (slope)
    winner_ms: float  # finishing and decoding one winner
    device: str
    dtype: str
    height: int
    width: int
    layer: int

    def total_ms(self, n: int) -> float:
        """Predicted wall time of a whole Best-of-N run with N candidates."""
        return self.encode_ms + self.fixed_ms + n * self.per_candidate_ms + self.winner_ms

    def max_candidates(self, budget_ms: float, cap: int = MAX_CANDIDATES) -> int:
        """The largest N whose run fits `budget_ms` (0 if not even one candidate fits)."""
        if budget_ms <= 0:
            raise InputError(f"the time budget must be positive, got {budget_ms} ms")
        room = budget_ms - (self.encode_ms + self.fixed_ms + self.winner_ms)
        if room < self.per_candidate_ms:
            return 0
        return int(min(cap, room // max(self.per_candidate_ms, 1e-9)))

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_costs(model, verifier, prompt: str, layer: int, height: int, width: int, probe: tuple[int, int] = (1, 4),
                  repeats: int = 2, clock: Callable[[], float] = time.perf_counter) -> CostModel:
    """Time the stages of a Best-of-N run at two batch sizes and fit fixed + per-candidate costs (best of repeats)."""
    n1, n2 = probe
    if not 1 <= n1 < n2:
        raise InputError(f"probe sizes must satisfy 1 <= n1 < n2, got {probe}")
    dev = model.device

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(max(1, repeats)):
            _sync(dev)
            t0 = clock()
            fn()
            _sync(dev)
            best = min(best, (clock() - t0) * 1e3)
        return best

    emb = model.encode_prompt(prompt)
    encode_ms = timed(lambda: model.encode_prompt(prompt))
    results = {}

    def generate_and_score(n: int) -> None:
        hidden = model.prefix(emb, list(range(n)), layer=layer, height=height, width=width)
        results[n] = (hidden, verifier.score(model, hidden))

    generate_and_score(n2)  # warm-up, untimed: first calls pay for allocations and lazy initialisation
    model.decode(model.suffix(results[n2][0].select([0])))
    t1, t2 = timed(lambda: generate_and_score(n1)), timed(lambda: generate_and_score(n2))
    per = max((t2 - t1) / (n2 - n1), 1e-6)
    winner = results[n1][0].select([0])
    winner_ms = timed(lambda: model.decode(model.suffix(winner)))
    return CostModel(encode_ms=encode_ms, fixed_ms=max(t1 - per * n1, 0.0), per_candidate_ms=per, winner_ms=winner_ms,
                     device=str(dev), dtype=str(model.dtype).replace("torch.", ""), height=height, width=width,
                     layer=layer)


def best_of_1_ms(model, prompt: str, height: int, width: int, repeats: int = 5,
                 clock: Callable[[], float] = time.perf_counter) -> float:
    """One plain image, no verifier (prompt encoding, the whole DiT, the decode): best of `repeats` runs, in ms."""
    best = float("inf")
    for _ in range(max(1, repeats) + 1):  # the first run warms up
        _sync(model.device)
        t0 = clock()
        hidden = model.prefix(model.encode_prompt(prompt), [0], layer=model.num_layers - 1, height=height, width=width)
        model.decode(model.suffix(hidden))
        _sync(model.device)
        best = min(best, (clock() - t0) * 1e3)
    return best


class CostCache:
    """Measured costs per setting (model, verifier, size, layer, device), measured once and re-measured when a run
    disagrees with them by more than `tolerance` x either way (a measurement taken while the machine was busy, or
    cold, is not trusted forever)."""

    def __init__(self, tolerance: float = 2.0):
        self.tolerance = float(tolerance)
        self._costs: dict[tuple, CostModel] = {}

    def get(self, key: tuple, measure: Callable[[], CostModel], remeasure: bool = False) -> CostModel:
        if remeasure or key not in self._costs:
            self._costs[key] = measure()
        return self._costs[key]

    def observe(self, key: tuple, n: int, elapsed_ms: float) -> bool:
        """Compare a run of n candidates (prompt encoding + candidates + scoring) with the cached prediction; forget
        the cached costs when they are off by more than the tolerance. Returns True when they were forgotten."""
        cost = self._costs.get(key)
        if cost is None or n < 1 or elapsed_ms <= 0:
            return False
        predicted = cost.encode_ms + cost.fixed_ms + n * cost.per_candidate_ms
        ratio = elapsed_ms / max(predicted, 1e-6)
        if ratio > self.tolerance or ratio < 1 / self.tolerance:
            del self._costs[key]
            return True
        return False
