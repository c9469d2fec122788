"""The library never reports success for something it did not do: no NaN winner, no scores of another run, no raw
allocator error, no stand-in model, and a budget that is too small still gives an honest Best-of-1."""

from __future__ import annotations

import math

import pytest
import torch

from models import (CostCache, CostModel, InputError, ModelFolderError, NonFiniteError, Scores,
                    best_of_n_within_budget, select_top_k)

PROMPT = "a red cube left of a blue ball"


@pytest.mark.parametrize("setting", [dict(guidance=math.nan), dict(guidance=math.inf), dict(max_timestep=math.nan),
                                     dict(max_timestep=-math.inf), dict(steps=2, intermediate_timestep=math.nan),
                                     dict(max_timestep=3.0), dict(steps=2, intermediate_timestep=1.6)])
def test_non_finite_or_out_of_range_settings_are_refused(sana, res, setting):
    with pytest.raises(InputError, match="must be a finite number|must lie"):
        sana.prefix(PROMPT, [0, 1], layer=1, height=res, width=res, **setting)


def test_nan_inside_the_model_is_an_error_never_a_winner(sana, hidden_verifier, res):
    block = sana.transformer.transformer_blocks[0]
    handle = block.register_forward_hook(lambda mod, args, out: out * math.nan)
    try:
        with pytest.raises(NonFiniteError, match=r"hidden states are not finite .* candidates \[0, 1\]"):
            sana.prefix(PROMPT, [0, 1], layer=1, height=res, width=res)
    finally:
        handle.remove()
    hidden = sana.prefix(PROMPT, [0, 1, 2], layer=1, height=res, width=res)
    head = hidden_verifier.llm.lm_head.register_forward_hook(lambda mod, args, out: out * math.nan)
    try:
        with pytest.raises(NonFiniteError, match=r"answer logits are not finite .* candidates \[0, 1, 2\]"):
            hidden_verifier.score(sana, hidden)
    finally:
        head.remove()
    with pytest.raises(NonFiniteError, match=r"candidates \[1\]"):
        Scores(scores=torch.tensor([0.1, math.nan]), p_yes=torch.zeros(2), p_no=torch.zeros(2),
               says_yes=torch.zeros(2, dtype=torch.bool), mode="normalized", verifier="v", indices=(0, 1))


def test_scores_of_another_run_are_refused(sana, hidden_verifier, res):
    a = sana.prefix(PROMPT, [0, 1, 2], layer=1, height=res, width=res)
    b = sana.prefix(PROMPT, [10, 11, 12], layer=1, height=res, width=res)  # same N, other seeds
    c = sana.prefix("another prompt", [0, 1, 2], layer=1, height=res, width=res)  # same seeds, other prompt
    scores_a = hidden_verifier.score(sana, a)
    for other in (b, c):
        with pytest.raises(InputError, match="computed on other candidates"):
            select_top_k(other, scores_a)
    again = sana.prefix(PROMPT, [0, 1, 2], layer=1, height=res, width=res)  # the very same run, made again
    assert select_top_k(again, scores_a)[1] == select_top_k(a, scores_a)[1]
    survivors = select_top_k(a, scores_a, k=2)[0]  # a subset of the same run: a cascade re-ranks it
    assert select_top_k(survivors, hidden_verifier.score(sana, survivors))[0].selection.pruned_to == 2
    with pytest.raises(InputError, match="belong to other candidates"):
        select_top_k(survivors, scores_a)


def test_text_that_is_not_valid_unicode_is_refused(sana, hidden_verifier, res):
    broken = "a red \ud800 cube"  # a lone surrogate, as a broken copy-paste leaves
    with pytest.raises(InputError, match="not valid text"):
        sana.encode_prompt(broken)
    with pytest.raises(InputError, match="not valid text"):
        hidden_verifier.prompt_token_ids(broken)


def test_a_batch_that_cannot_fit_is_a_clear_error_before_allocating(sana, res, monkeypatch):
    import models.memory

    one = sana.activation_bytes(1, 2048, 2048)
    monkeypatch.setattr(models.memory, "free_bytes", lambda device: 10 * one)
    with pytest.raises(InputError, match=r"not enough memory .* 64 candidates at 2048x2048 px.*at most about 10 fit"):
        sana.prefix(PROMPT, list(range(64)), layer=1, height=2048, width=2048)
    monkeypatch.setattr(models.memory, "free_bytes", lambda device: one // 2)
    with pytest.raises(InputError, match="not even one fits"):
        sana.prefix(PROMPT, [0], layer=1, height=2048, width=2048)


def test_missing_embedded_models_are_an_error_not_random_weights(tmp_path, monkeypatch):
    import models.embedded

    monkeypatch.setattr(models.embedded, "EMBEDDED_DIR", str(tmp_path))
    with pytest.raises(ModelFolderError, match="embedded ShapeWorld model is missing"):
        models.embedded.embedded_model("sana")


def _costs(per=10.0, fixed=5.0, encode=20.0, winner=30.0) -> CostModel:
    return CostModel(encode_ms=encode, fixed_ms=fixed, per_candidate_ms=per, winner_ms=winner, device="cpu",
                     dtype="fp32", height=64, width=64, layer=1)


def test_a_budget_smaller_than_one_candidate_still_gives_best_of_1(sana, hidden_verifier, res):
    run = best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 20.0, _costs(), 1, res, res)
    assert run.generated == 1 and len(run.hidden) == 1 and not run.fits
    assert run.predicted_total_ms(_costs()) > run.budget_ms  # the report says by how much
    with pytest.raises(InputError, match="finite"):
        best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, math.nan, _costs(), 1, res, res)


def test_cost_cache_measures_again_when_reality_disagrees():
    cache, calls = CostCache(tolerance=2.0), []

    def measure():
        calls.append(1)
        return _costs(per=100.0, fixed=50.0, encode=50.0)  # measured while the machine was busy

    key = ("model", "verifier", 64, 64, 1, "cpu")
    assert cache.get(key, measure).per_candidate_ms == 100.0 and cache.get(key, measure) and len(calls) == 1
    assert not cache.observe(key, 4, 400.0)  # predicted 500 ms: close enough
    assert cache.observe(key, 4, 100.0)  # 5x faster than predicted: forget it
    cache.get(key, measure)
    assert len(calls) == 2
    assert cache.get(key, measure, remeasure=True) and len(calls) == 3
