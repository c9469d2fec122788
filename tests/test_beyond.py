"""Beyond the paper: time-budget Best-of-N, anytime stop, override and latent output, previews, scores in the PNG."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from models import InputError
from models.budget import CostModel
from models.search import best_of_n_within_budget


def costs(per=10.0, fixed=5.0, encode=20.0, winner=30.0):
    return CostModel(encode_ms=encode, fixed_ms=fixed, per_candidate_ms=per, winner_ms=winner, device="cpu",
                     dtype="fp32", height=64, width=64, layer=1)


class FakeClock:
    """Advances only when a candidate is generated: 10 ms per candidate row."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture()
def clocked(sana):
    clock = FakeClock()
    real = sana.prefix

    def prefix(*args, **kwargs):
        hidden = real(*args, **kwargs)
        clock.t += 0.010 * len(hidden)
        return hidden

    sana.prefix = prefix
    yield clock
    del sana.prefix


def test_budget_picks_the_largest_n_that_fits(sana, hidden_verifier, res, clocked):
    run = best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 155.0, costs(), 1, res, res, clock=clocked)
    assert run.planned_n == 10 and run.generated == 10  # 155 - 55 fixed = 100 ms = 10 candidates of 10 ms
    assert len(run.hidden) == len(run.scores) == 10 and run.hidden.seeds == tuple(range(10))
    assert run.elapsed_ms == pytest.approx(100.0) and not run.stopped_early
    with pytest.raises(InputError, match="not even one candidate fits"):
        best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 60.0, costs(), 1, res, res, clock=clocked)


def test_anytime_stop_at_the_threshold(sana, hidden_verifier, res, clocked):
    run = best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 155.0, costs(), 1, res, res, threshold=0.0,
                                  batch_size=3, mode="normalized", clock=clocked)
    assert run.stopped_early and run.generated == 3  # any score passes 0.0: the first batch is enough
    never = best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 155.0, costs(), 1, res, res, threshold=1.01,
                                    batch_size=3, mode="normalized", clock=clocked)
    assert not never.stopped_early and never.generated == 10 and never.hidden.indices == tuple(range(10))


def test_a_slower_reality_does_not_overrun_the_budget(sana, hidden_verifier, res, clocked):
    slow = costs(per=5.0)  # the plan believes 5 ms per candidate, the clock says 10
    run = best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 155.0, slow, 1, res, res, batch_size=4,
                                  clock=clocked)
    assert run.planned_n == 20 and run.generated < run.planned_n
    assert run.elapsed_ms + slow.winner_ms <= 155.0 + 1e-6  # elapsed includes the prompt encoding


def test_budget_node_reports_n_and_time(pack, node_models, res, monkeypatch):
    m, model, verifier = node_models
    extra = pack.nodes.extra_nodes
    monkeypatch.setattr(extra, "measure_costs", lambda *a, **k: pack.models.budget.CostModel(
        encode_ms=1, fixed_ms=1, per_candidate_ms=1, winner_ms=1, device="cpu", dtype="fp32", height=res, width=res,
        layer=1))
    out = m["VHSBestOfNTimeBudget"]().run(model, verifier, "a cat", 5, 10_000, 1, res, res, 6, 0.0, "normalized", False)
    winner, candidates, scores, report, n = out["result"]
    assert n == 6 and len(candidates) == 6 and len(winner) == 1 and "planned N=6" in report
    assert winner.extras["budget_ms"] == 10_000 and winner.seeds[0] in range(5, 11)


def test_override_and_latent_output(node_models, res):
    m, model, verifier = node_models
    hidden = m["SanaSprintHiddenSamplerVHS"]().sample(model, "two cats", 0, 4, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
    scores = m["VHSVerifier"]().score(verifier, hidden, "normalized")["result"][0]
    worst = scores.ranking()[-1]
    winners, report, index, latent = m["VHSBestOfNSelect"]().select(hidden, scores, 1, worst, model)["result"]
    assert index == worst and "chosen by hand" in report
    assert latent["samples"].shape == (1, 8, res // 4, res // 4)
    image = m["VHSDecodeWinner"]().decode(model, winners)[0]
    alone = m["VHSDecodeWinner"]().decode(model, hidden.select([worst]))[0]
    assert torch.allclose(image, alone, atol=1e-6), "the overridden candidate resumes exactly"
    assert torch.allclose(model.suffix(winners), latent["samples"], atol=1e-6)
    with pytest.raises(ValueError, match="not among these candidates"):
        m["VHSBestOfNSelect"]().select(hidden, scores, 1, 9)


def test_candidate_preview(node_models, res):
    m, model, verifier = node_models
    hidden = m["SanaSprintHiddenSamplerVHS"]().sample(model, "two cats", 0, 3, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
    scores = m["VHSVerifier"]().score(verifier, hidden, "normalized")["result"][0]
    calls = [0]
    handle = model.transformer.transformer_blocks[-1].register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        cheap = m["VHSCandidatePreview"]().preview(hidden, scores, "hidden map", 96)[0]
        assert calls[0] == 0, "the hidden map preview must not run the rest of the DiT"
        decoded = m["VHSCandidatePreview"]().preview(hidden, scores, "decode", 96, model)[0]
    finally:
        handle.remove()
    assert cheap.shape == decoded.shape == (3, 96, 96, 3) and calls[0] == 1
    with pytest.raises(ValueError, match="need the SANA-Sprint model"):
        m["VHSCandidatePreview"]().preview(hidden, scores, "decode", 96)
    with pytest.raises(ValueError, match="scores belong to other candidates"):
        m["VHSCandidatePreview"]().preview(hidden.select([0, 1]), scores, "hidden map", 96)


def test_scores_are_saved_in_png_text_chunks_next_to_comfyuis(pack, node_models, res, tmp_path, monkeypatch):
    m, model, verifier = node_models
    monkeypatch.setattr(pack.nodes.comfy, "output_directory", lambda: str(tmp_path))
    hidden = m["SanaSprintHiddenSamplerVHS"]().sample(model, "two cats", 7, 5, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
    scores = m["VHSVerifier"]().score(verifier, hidden, "normalized")["result"][0]
    winners = m["VHSBestOfNSelect"]().select(hidden, scores, 2)["result"][0]
    images = m["VHSDecodeWinner"]().decode(model, winners)[0]
    workflow = {"nodes": [{"id": 1}], "links": []}
    out = m["VHSSaveImageWithScores"]().save(images, winners, "VHS/test", prompt={"1": {"class_type": "X"}},
                                             extra_pnginfo={"workflow": workflow})
    files = out["ui"]["images"]
    assert len(files) == 2
    with Image.open(tmp_path / files[0]["subfolder"] / files[0]["filename"]) as im:
        text = im.text
    assert json.loads(text["workflow"]) == workflow and json.loads(text["prompt"]) == {"1": {"class_type": "X"}}
    assert text["vhs_n"] == "5" and text["vhs_rank"] == "1" and text["vhs_layer"] == "1"
    assert float(text["vhs_score"]) == pytest.approx(float(scores.scores.max()), abs=1e-6)
    assert text["vhs_seed"] == str(winners.seeds[0]) and text["vhs_verifier"] == verifier.name
    with Image.open(tmp_path / files[1]["subfolder"] / files[1]["filename"]) as im:
        assert im.text["vhs_rank"] == "2"


def test_cascade_vhs_prunes_then_clip_reranks_only_the_survivors(pack, node_models, bundle, res):
    """VHS keeps the top 3 of 6 on hidden states; the CLIP verifier finishes and decodes only those 3 and picks one."""
    m, model, verifier = node_models
    clip = m["MLLMVerifierLoaderVHS"]().load("vhs-mllm-clip-verifier", "auto", "cpu")[0]
    hidden = m["SanaSprintHiddenSamplerVHS"]().sample(model, "two cats", 3, 6, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
    vhs_scores = m["VHSVerifier"]().score(verifier, hidden, "normalized")["result"][0]
    survivors = m["VHSBestOfNSelect"]().select(hidden, vhs_scores, 3)["result"][0]
    batches = []
    handle = model.pipe.vae.decoder.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        clip_scores = m["MLLMVerifierCLIPVHS"]().score(model, clip, survivors, "normalized")["result"][0]
    finally:
        handle.remove()
    assert batches == [3], "only the survivors are finished and decoded"
    every = clip.score(model, hidden, mode="normalized")  # the CLIP path over all 6, for reference
    pos = [hidden.indices.index(i) for i in survivors.indices]
    assert clip_scores.indices == survivors.indices
    assert torch.allclose(clip_scores.scores, every.scores[pos], atol=1e-5)
    winner, report, index, _ = m["VHSBestOfNSelect"]().select(survivors, clip_scores, 1)["result"]
    assert index == survivors.indices[int(clip_scores.scores.argmax())]
    assert report.startswith("Best-of-6 (cascade, 3 kept by") and clip.name in report
    assert winner.extras["n_candidates"] == 6 and winner.extras["pruned_to"] == 3
    assert winner.extras["verifier"] == f"{verifier.name} -> {clip.name}"
    image = m["VHSDecodeWinner"]().decode(model, winner)[0]
    assert torch.allclose(image, m["VHSDecodeWinner"]().decode(model, hidden.select([index]))[0], atol=1e-6)


def test_sampler_encodes_a_prompt_once_across_runs(node_models, res):
    """A new seed or N re-uses the prompt's embedding: the text encoder (maybe offloaded) is not needed again."""
    m, model, _ = node_models
    calls = [0]
    handle = model.pipe.text_encoder.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    sampler = m["SanaSprintHiddenSamplerVHS"]()
    try:
        first = sampler.sample(model, "three green cubes in a row", 0, 2, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
        again = sampler.sample(model, "three green cubes in a row", 5, 3, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
        other = sampler.sample(model, "one blue ball", 5, 3, 1, res, res, 1, 4.5, 1.5708, 1.3)[0]
    finally:
        handle.remove()
    assert calls[0] == 2
    fresh = model.prefix("three green cubes in a row", [5, 6, 7], layer=1, height=res, width=res)
    assert torch.equal(again.hidden, fresh.hidden) and first.seeds == (0, 1) and other.prompt == "one blue ball"
