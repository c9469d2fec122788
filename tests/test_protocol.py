"""The ShapeWorld measurement protocol: exact Best-of-N, headroom, within-prompt AUROC and the bootstrap clustered
by prompt (apps/shapeworld/protocol.py)."""

from __future__ import annotations

import random

import pytest

from apps.shapeworld.protocol import Group, accuracy, clustered_bootstrap, groups_from, headroom, within_prompt_auroc


def _group(prompt: str, tag: str, labels: list[bool], scores: list[float]) -> Group:
    return Group(prompt, tag, tuple(labels), {"v": tuple(scores)})


def test_a_perfect_verifier_reaches_the_oracle_and_a_blind_one_stays_at_best_of_1():
    rng = random.Random(0)
    groups = []
    for p in range(12):
        labels = [rng.random() < 0.3 for _ in range(16)]
        groups.append(Group(f"p{p}", ("a", "b")[p % 2], tuple(labels),
                            {"perfect": tuple(float(y) + rng.random() * 0.1 for y in labels),
                             "reversed": tuple(-float(y) for y in labels)}))
    perfect, rev = accuracy(groups, 4, "perfect"), accuracy(groups, 4, "reversed")
    assert perfect["verifier"] == pytest.approx(perfect["oracle"]) and perfect["oracle"] > perfect["random"]
    assert rev["verifier"] < rev["random"] < rev["oracle"]
    assert headroom(perfect) == pytest.approx(1.0) and headroom(rev) < 0
    assert accuracy(groups, 1, "perfect")["verifier"] == pytest.approx(accuracy(groups, 1, "perfect")["random"])
    assert headroom({"verifier": 0.4, "random": 0.4, "oracle": 0.4}) is None  # no headroom: no share of it


def test_within_prompt_auroc_ranks_candidates_inside_each_prompt_only():
    # across prompts the scores separate right from wrong perfectly, inside each prompt they are reversed
    groups = [_group("easy", "t", [True, True, False], [10, 9, 11]), _group("hard", "t", [True, False, False], [0, 1, 2]),
              _group("all-right", "t", [True, True], [0, 1])]
    result = within_prompt_auroc(groups, "v")
    assert result["overall"] == pytest.approx(0.0) and result["per_category"]["t"]["groups"] == 2


def test_groups_come_from_dataset_rows_by_seed_set():
    rows = [{"id": f"s{s}_c{c}", "prompt_id": f"s{s}", "prompt": "a red circle", "candidate": c,
             "metadata": {"tag": "single_object"}} for s in range(2) for c in (1, 0)]
    labels = {r["id"]: r["candidate"] == 0 for r in rows}
    groups = groups_from(rows, labels, {"v": {r["id"]: float(r["candidate"]) for r in rows}})
    assert len(groups) == 2 and groups[0].labels == (True, False) and groups[0].scores["v"] == (0.0, 1.0)


def test_the_bootstrap_resamples_prompts_not_seed_sets():
    """Two prompts with many seed sets each, one always right and one always wrong: resampling seed sets as
    independent would give a tight interval around 0.5; clustered by prompt, whole prompts come and go."""
    groups = [_group(p, "t", [p == "right"] * 4, [0.0] * 4) for p in ("right", "wrong") for _ in range(20)]
    estimate, low, high = clustered_bootstrap(groups, lambda gs: accuracy(gs, 1, "v")["random"], reps=400, seed=1)
    assert estimate == pytest.approx(0.5) and low == pytest.approx(0.0) and high == pytest.approx(1.0)
    # categories are kept: each category's prompts are resampled among themselves
    mixed = groups + [_group("other", "u", [True] * 4, [0.0] * 4) for _ in range(5)]
    _, low, high = clustered_bootstrap(mixed, lambda gs: len({g.tag for g in gs}), reps=50, seed=2)
    assert low == high == 2
