"""Verifier quality on held-out labelled candidates: accuracy, AUROC, and simulated Best-of-N accuracy.

Best-of-N is computed exactly, not sampled: for a prompt with K scored candidates, the i-th best (0-based) is
the top of a uniformly random N-subset with probability C(K-1-i, N-1) / C(K, N). Random pick and oracle
(any correct candidate in the subset) are computed the same way, so the three are directly comparable.
"""

from __future__ import annotations

import json
import logging
from math import comb
from typing import Sequence


from models.errors import InputError
from models.verifier import VHSVerifier
from models.io import write_text_atomic

from .data import CandidateDataset
from .train import stored_candidate_features

logger = logging.getLogger(__name__)
BEST_OF = (1, 2, 4, 9, 15)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count half); None when only one class is present."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def best_of_n(groups: list[tuple[list[float], list[bool]]], n: int) -> dict[str, float] | None:
    """Expected accuracy of verifier-picked, random-picked and oracle Best-of-N over prompts with >= n candidates."""
    picked = random_pick = oracle = 0.0
    used = 0
    for scores, labels in groups:
        k = len(scores)
        if k < n:
            continue
        used += 1
        order = sorted(range(k), key=lambda i: (-scores[i], i))
        total = comb(k, n)
        picked += sum(comb(k - 1 - rank, n - 1) for rank, i in enumerate(order) if labels[i]) / total
        positives = sum(labels)
        random_pick += positives / k
        oracle += 1 - comb(k - positives, n) / total
    if not used:
        return None
    return {"verifier": picked / used, "random": random_pick / used, "oracle": oracle / used, "prompts": used}


def evaluate(verifier: VHSVerifier, dataset: CandidateDataset, ids: Sequence[str], best_of: Sequence[int] = BEST_OF,
             batch_size: int = 16) -> dict:
    """Score held-out candidates (normalised P(yes) and the reference score) and compute every metric."""
    labels = dataset.labels()
    ids = [cid for cid in ids if cid in labels]
    if not ids:
        raise InputError("no labelled held-out candidates to evaluate (label the dataset, or lower --holdout)")
    by_prompt: dict[int, tuple[list[float], list[bool]]] = {}
    flat_scores, flat_ref, flat_labels = [], [], []
    for pid, cids in dataset.iter_prompts(ids):
        prompt = dataset.by_id[cids[0]]["prompt"]
        for start in range(0, len(cids), batch_size):
            chunk = cids[start:start + batch_size]
            scores = verifier.score_features(prompt, stored_candidate_features(verifier, dataset, chunk),
                                             mode="normalized")  # one LLM pass: both readings come from it
            norm, ref = scores.scores.tolist(), scores.with_mode("reference").scores.tolist()
            s, y = by_prompt.setdefault(pid, ([], []))
            s += norm
            y += [labels[c] for c in chunk]
            flat_scores += norm
            flat_ref += ref
            flat_labels += [labels[c] for c in chunk]
    predictions = [s > 0 for s in flat_ref]  # the reference's verdict: the top answer token says yes
    result = {
        "candidates": len(flat_labels), "prompts": len(by_prompt), "positive_rate": sum(flat_labels) / len(flat_labels),
        "accuracy": sum(p == y for p, y in zip(predictions, flat_labels)) / len(flat_labels),
        "accuracy_at_0.5": sum((s >= 0.5) == y for s, y in zip(flat_scores, flat_labels)) / len(flat_labels),
        "auroc": auroc(flat_scores, flat_labels),
        "best_of_n": {str(n): best_of_n(list(by_prompt.values()), n) for n in best_of},
        "verifier": verifier.name, "kind": verifier.kind, "layer": verifier.spec.layer,
    }
    return result


def write_metrics(result: dict, path: str) -> None:
    write_text_atomic(path, json.dumps(result, indent=2))
