"""Beyond the paper: time-budget Best-of-N, anytime stop, override and latent output, previews, scores in the PNG."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

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
    assert run.elapsed_ms == pytest.approx(100.0) and not run.stopped_early and run.fits
    tight = best_of_n_within_budget(sana, hidden_verifier, "a cat", 0, 60.0, costs(), 1, res, res, clock=clocked)
    assert tight.generated == 1 and not tight.fits  # not even one fits: Best-of-1, flagged


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


def budget_node(pack, model, verifier, res, budget_ms, **kw):
    args = dict(prompt="a cat", seed=5, budget_ms=budget_ms, layer=-1, width=res, height=res, max_candidates=6,
                threshold=0.0, score_mode="normalized", remeasure=False)
    args.update(kw)
    return pack.run("VHSBestOfNTimeBudget", model=model, verifier=verifier, **args).result


def test_budget_node_reports_n_and_time(node_models, res, monkeypatch):
    pack, model, verifier = node_models
    budget = pack.module.nodes.budget
    fake = lambda *a, **k: pack.module.models.budget.CostModel(  # noqa: E731
        encode_ms=1, fixed_ms=1, per_candidate_ms=1, winner_ms=1, device="cpu", dtype="fp32", height=res, width=res,
        layer=1)
    monkeypatch.setattr(budget, "measure_costs", fake)
    winner, candidates, scores, report, n = budget_node(pack, model, verifier, res, 10_000, remeasure=True)
    assert n == 6 and len(candidates) == 6 and len(winner) == 1 and "planned N=6" in report
    assert winner.selection.budget_ms == 10_000 and winner.seeds[0] in range(5, 11)
    assert f"l*={verifier.verifier.spec.layer}" in report and "exceeded" not in report
    slow = lambda *a, **k: pack.module.models.budget.CostModel(  # noqa: E731
        encode_ms=1, fixed_ms=1, per_candidate_ms=5000, winner_ms=1000, device="cpu", dtype="fp32", height=res,
        width=res, layer=1)
    monkeypatch.setattr(budget, "measure_costs", slow)
    winner, _, _, report, n = budget_node(pack, model, verifier, res, 550, remeasure=True)
    assert n == 1 and len(winner) == 1, "a budget smaller than one candidate still gives an image"
    assert "not even one candidate fits 550 ms" in report and "ran Best-of-1" in report
    assert "the budget is exceeded by about" in report


def sample(pack, model, verifier, res, seed=0, n=4, prompt="two cats"):
    return pack.run("SanaSprintHiddenSamplerVHS", model=model, verifier=verifier, prompt=prompt, seed=seed,
                    candidates=n, layer=-1, width=res, height=res, steps=1, guidance=4.5, max_timestep=1.5708,
                    intermediate_timestep=1.3)[0]


def score(pack, verifier, hidden):
    return pack.run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="normalized")[0]


def test_override_and_latent_output(node_models, res):
    pack, model, verifier = node_models
    hidden = sample(pack, model, verifier, res)
    scores = score(pack, verifier, hidden)
    worst = scores.ranking()[-1]
    winners, report, index, latent = pack.run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=1,
                                              override_index=worst, model=model).result
    assert index == worst and "chosen by hand" in report
    assert latent["samples"].shape == (1, 8, res // 4, res // 4)
    image = pack.run("VHSDecodeWinner", model=model, hidden=winners)[0]
    alone = pack.run("VHSDecodeWinner", model=model, hidden=hidden.select([worst]))[0]
    assert torch.allclose(image, alone, atol=1e-6), "the overridden candidate resumes exactly"
    assert torch.allclose(model.model.suffix(winners), latent["samples"], atol=1e-6)
    with pytest.raises(ValueError, match="not among these candidates"):
        pack.run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=1, override_index=9)


def test_candidate_preview(node_models, res):
    pack, model, verifier = node_models
    hidden = sample(pack, model, verifier, res, n=3)
    scores = score(pack, verifier, hidden)
    calls = [0]
    blocks = model.model.transformer.transformer_blocks
    handle = blocks[-1].register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        cheap = pack.run("VHSCandidatePreview", hidden=hidden, scores=scores, mode="hidden map", size=96)[0]
        assert calls[0] == 0, "the hidden map preview must not run the rest of the DiT"
        decoded = pack.run("VHSCandidatePreview", hidden=hidden, scores=scores, mode="decode", size=96, model=model)[0]
    finally:
        handle.remove()
    assert cheap.shape == decoded.shape == (3, 96, 96, 3) and calls[0] == 1
    with pytest.raises(ValueError, match="need the SANA-Sprint model"):
        pack.run("VHSCandidatePreview", hidden=hidden, scores=scores, mode="decode", size=96)
    with pytest.raises(ValueError, match="scores belong to other candidates"):
        pack.run("VHSCandidatePreview", hidden=hidden.select([0, 1]), scores=scores, mode="hidden map", size=96)


def test_scores_are_saved_in_png_text_chunks_next_to_comfyuis(node_models, res):
    from comfy_api.latest import io

    from graph import run_node

    pack, model, verifier = node_models
    hidden = sample(pack, model, verifier, res, seed=7, n=5)
    scores = score(pack, verifier, hidden)
    winners = pack.run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=2)[0]
    images = pack.run("VHSDecodeWinner", model=model, hidden=winners)[0]
    workflow = {"nodes": [{"id": 1}], "links": []}
    out = run_node(pack.nodes["VHSSaveImageWithScores"], dict(images=images, winners=winners, filename_prefix="VHS/t"),
                   hidden={io.Hidden.prompt: {"1": {"class_type": "X"}}, io.Hidden.extra_pnginfo: {"workflow": workflow}})
    files = out.ui.as_dict()["images"]
    assert len(files) == 2
    out_dir = pack.host.output_directory()
    with Image.open(os.path.join(out_dir, files[0]["subfolder"], files[0]["filename"])) as im:
        text = im.text
    assert json.loads(text["workflow"]) == workflow and json.loads(text["prompt"]) == {"1": {"class_type": "X"}}
    assert text["vhs_n"] == "5" and text["vhs_rank"] == "1" and text["vhs_layer"] == str(hidden.layer)
    assert (text["vhs_width"], text["vhs_height"]) == (str(res), str(res))
    assert float(text["vhs_score"]) == pytest.approx(float(scores.scores.max()), abs=1e-6)
    assert text["vhs_seed"] == str(winners.seeds[0]) and text["vhs_verifier"] == verifier.verifier.name
    with Image.open(os.path.join(out_dir, files[1]["subfolder"], files[1]["filename"])) as im:
        assert im.text["vhs_rank"] == "2"


def test_cascade_vhs_prunes_then_clip_reranks_only_the_survivors(node_models, res):
    """VHS keeps the top 3 of 6 on hidden states; the CLIP verifier finishes and decodes only those 3 and picks one."""
    pack, model, verifier = node_models
    clip = pack.run("MLLMVerifierLoaderVHS", verifier_name="vhs-mllm-clip-verifier", dtype="auto", device="cpu")[0]
    hidden = sample(pack, model, verifier, res, seed=3, n=6)
    survivors = pack.run("VHSBestOfNSelect", hidden=hidden, scores=score(pack, verifier, hidden), k=3)[0]
    batches = []
    sana = model.model
    handle = sana.pipe.vae.decoder.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        clip_scores = pack.run("MLLMVerifierCLIPVHS", model=model, verifier=clip, hidden=survivors,
                               score_mode="normalized")[0]
    finally:
        handle.remove()
    assert batches == [3], "only the survivors are finished and decoded"
    every = clip.verifier.score(sana, hidden, mode="normalized")  # the CLIP path over all 6, for reference
    pos = [hidden.indices.index(i) for i in survivors.indices]
    assert clip_scores.indices == survivors.indices
    assert torch.allclose(clip_scores.scores, every.scores[pos], atol=1e-5)
    winner, report, index, _ = pack.run("VHSBestOfNSelect", hidden=survivors, scores=clip_scores, k=1).result
    assert index == survivors.indices[int(clip_scores.scores.argmax())]
    assert report.startswith("Best-of-6 (cascade, 3 kept by") and clip.verifier.name in report
    assert winner.selection.n_candidates == 6 and winner.selection.pruned_to == 3
    assert winner.selection.verifier == f"{verifier.verifier.name} -> {clip.verifier.name}"
    image = pack.run("VHSDecodeWinner", model=model, hidden=winner)[0]
    assert torch.allclose(image, pack.run("VHSDecodeWinner", model=model, hidden=hidden.select([index]))[0], atol=1e-6)


def test_sampler_encodes_a_prompt_once_across_runs(node_models, res):
    """A new seed or N re-uses the prompt's embedding: the text encoder (maybe offloaded) is not needed again."""
    pack, model, verifier = node_models
    calls = [0]
    sana = model.model
    handle = sana.pipe.text_encoder.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        first = sample(pack, model, verifier, res, seed=0, n=2, prompt="three green cubes in a row")
        again = sample(pack, model, verifier, res, seed=5, n=3, prompt="three green cubes in a row")
        other = sample(pack, model, verifier, res, seed=5, n=3, prompt="one blue ball")
    finally:
        handle.remove()
    assert calls[0] == 2
    fresh = sana.prefix("three green cubes in a row", [5, 6, 7], layer=again.layer, height=res, width=res)
    assert torch.equal(again.hidden, fresh.hidden) and first.seeds == (0, 1) and other.prompt == "one blue ball"
