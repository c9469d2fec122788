"""The measurement protocol of the ShapeWorld benchmark: groups of candidates, Best-of-N accuracy, within-prompt AUROC,
the share of the oracle's headroom, and a bootstrap clustered by prompt.

A *group* is one seed set of one prompt: K candidates, each with a verifier score and the judge's label. Accuracy is
GenEval's overall: the mean over categories of each category's mean over its groups. Best-of-N of a group is exact:
the expectation over every N-subset of its K candidates (apps.training.evaluate.best_of_n).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Sequence

from apps.training.evaluate import auroc, best_of_n


@dataclass(frozen=True)
class Group:
    """One seed set of one prompt: its candidates' labels and each verifier's scores (by verifier name)."""

    prompt: str
    tag: str
    labels: tuple[bool, ...]
    scores: Mapping[str, tuple[float, ...]]


def groups_from(rows: Sequence[dict], labels: Mapping[str, bool], scores: Mapping[str, Mapping[str, float]]) -> list[Group]:
    """Group a dataset's candidate rows (id, prompt_id, prompt, candidate, metadata.tag) by seed set (prompt_id),
    with every verifier's scores {verifier: {candidate id: score}}."""
    by_record: dict[str, list[dict]] = {}
    for row in rows:
        by_record.setdefault(row["prompt_id"], []).append(row)
    out = []
    for _, members in sorted(by_record.items()):
        members.sort(key=lambda r: r["candidate"])
        out.append(Group(members[0]["prompt"], members[0]["metadata"]["tag"],
                         tuple(bool(labels[r["id"]]) for r in members),
                         {name: tuple(float(s[r["id"]]) for r in members) for name, s in scores.items()}))
    return out


def by_tag(groups: Sequence[Group]) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for g in groups:
        out.setdefault(g.tag, []).append(g)
    return out


@lru_cache(maxsize=1 << 16)  # a whole bootstrap of one verifier at one N fits many times over
def _group_best_of(scores: tuple[float, ...], labels: tuple[bool, ...], n: int) -> tuple[float, float, float] | None:
    """(verifier, random, oracle) Best-of-n of one seed set; cached, as a bootstrap asks for the same sets again."""
    result = best_of_n([(scores, labels)], n)
    return None if result is None else (result["verifier"], result["random"], result["oracle"])


def accuracy(groups: Sequence[Group], n: int, verifier: str) -> dict[str, float]:
    """GenEval-overall Best-of-n accuracy of the verifier's pick, a random pick (= Best-of-1) and the oracle: the mean
    over categories of the mean over their seed sets (those with at least n candidates)."""
    per = []
    for gs in by_tag(groups).values():
        values = [v for v in (_group_best_of(g.scores[verifier], g.labels, n) for g in gs) if v is not None]
        if values:
            per.append([sum(column) / len(values) for column in zip(*values)])
    if not per:
        raise ValueError(f"no seed set holds {n} candidates")
    return {k: sum(p[i] for p in per) / len(per) for i, k in enumerate(("verifier", "random", "oracle"))}


def headroom(acc: Mapping[str, float]) -> float | None:
    """The share of the oracle's headroom the verifier captures: (acc - Best-of-1) / (oracle - Best-of-1)."""
    room = acc["oracle"] - acc["random"]
    return (acc["verifier"] - acc["random"]) / room if room > 1e-9 else None


def within_prompt_auroc(groups: Sequence[Group], verifier: str) -> dict:
    """Mean AUROC inside each group that has both right and wrong candidates (what Best-of-N needs: ranking the
    candidates of one prompt), overall (mean over categories) and per category, with how many groups counted."""
    per_tag = {}
    for tag, gs in by_tag(groups).items():
        values = [a for a in (auroc(g.scores[verifier], g.labels) for g in gs) if a is not None]
        per_tag[tag] = {"auroc": sum(values) / len(values) if values else None, "groups": len(values)}
    known = [v["auroc"] for v in per_tag.values() if v["auroc"] is not None]
    return {"overall": sum(known) / len(known) if known else None, "per_category": per_tag}


def clustered_bootstrap(groups: Sequence[Group], statistic: Callable[[list[Group]], float], reps: int = 1000,
                        seed: int = 0) -> tuple[float, float, float]:
    """(estimate, 2.5%, 97.5%) of statistic(groups) under a bootstrap clustered by prompt: within each category the
    prompts are resampled, then each drawn prompt's seed sets, so seed sets of one prompt never count as independent."""
    rng = random.Random(seed)
    prompts: dict[str, dict[str, list[Group]]] = {}
    for g in groups:
        prompts.setdefault(g.tag, {}).setdefault(g.prompt, []).append(g)
    values = []
    for _ in range(reps):
        sample: list[Group] = []
        for per_prompt in prompts.values():
            names = list(per_prompt)
            for name in (rng.choice(names) for _ in names):
                seed_sets = per_prompt[name]
                sample += [rng.choice(seed_sets) for _ in seed_sets]
        values.append(statistic(sample))
    values.sort()
    return statistic(list(groups)), values[int(0.025 * reps)], values[int(0.975 * reps) - 1]
