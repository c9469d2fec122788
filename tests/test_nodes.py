"""Node classes in the real ComfyUI (V3 schema): registration, tooltips, loaders, validation, clear errors,
progress and Cancel. Run with `bash run.sh test` (it provides ComfyUI); without one these tests skip, saying so."""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

from conftest import ROOT
from damage import damaged
from graph import ValidationFailed, node_inputs

DISPLAY = {"SANA-Sprint Loader", "SANA-Sprint Hidden-State Sampler", "VHS Verifier Loader", "VHS Verifier",
           "Best-of-N Select", "Decode Winner", "MLLM Verifier Loader", "MLLM Verifier (CLIP)",
           "MLLM Verifier (AE latent)", "Best-of-N in a Time Budget", "Best-of-N Candidate Preview",
           "Save Image with Best-of-N Scores"}
EMBEDDED = "embedded: ShapeWorld demo (64 px)"
REAL_SANA = "Sana_Sprint_1.6B_1024px_diffusers"


def sample(pack, model, res, verifier=None, **kw):
    args = dict(prompt="two cats", seed=3, candidates=5, layer=-1 if verifier is not None else 1, width=res,
                height=res, steps=1, guidance=4.5, max_timestep=1.5708, intermediate_timestep=1.3)
    args.update(kw)
    return pack.run("SanaSprintHiddenSamplerVHS", model=model, verifier=verifier, **args)


def test_registration_is_v3_with_the_same_ids_and_names(pack):
    assert set(pack.display.values()) == DISPLAY and len(pack.nodes) == len(DISPLAY)
    assert not hasattr(pack.module, "NODE_CLASS_MAPPINGS"), "one node API only: V3 through comfy_entrypoint"
    assert callable(pack.module.comfy_entrypoint)
    for node_id, cls in pack.nodes.items():
        schema = cls.GET_SCHEMA()
        assert schema.category.startswith("sampling/SANA-Sprint Best-of-N") and schema.description, node_id
        assert "VHS" not in schema.category and not any(t.startswith("VHS_") for t in cls.RETURN_TYPES), node_id
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
        assert all(cls.OUTPUT_TOOLTIPS), node_id


def test_every_input_has_a_tooltip(pack):
    missing = [f"{name}.{inp}" for name, cls in pack.nodes.items()
               for inp, _, opts in node_inputs(cls) if not opts.get("tooltip")]
    assert not missing, missing


def test_loaders_list_installed_models_and_the_embedded_demo(pack):
    sana_choices = node_inputs(pack.nodes["SanaSprintLoaderVHS"])[0][1]
    assert sana_choices[0] == REAL_SANA and EMBEDDED in sana_choices
    vhs_choices = node_inputs(pack.nodes["VHSVerifierLoader"])[0][1]
    assert {"vhs-hidden-verifier", "vhs-mllm-clip-verifier", "vhs-ae-verifier", EMBEDDED} <= set(vhs_choices)


@pytest.mark.parametrize("name", ["Sana_Sprint_0.6B_1024px_diffusers", "", "../sana/x", "/etc/passwd", "sana/../.."])
def test_a_model_that_is_not_installed_fails_validation_and_never_runs_a_stand_in(pack, name):
    loader = pack.nodes["SanaSprintLoaderVHS"]
    verdict = loader.validate_inputs(model_name=name)
    assert isinstance(verdict, str) and "is not installed" in verdict and "models" in verdict
    assert EMBEDDED in verdict, "the message names the embedded alternative"
    if name.startswith("Sana_Sprint_0.6B"):
        assert "huggingface-cli download Efficient-Large-Model/Sana_Sprint_0.6B_1024px_diffusers" in verdict
    with pytest.raises(ValidationFailed, match="is not installed"):
        pack.run("SanaSprintLoaderVHS", model_name=name, dtype="auto", device="cpu")
    with pytest.raises(ValueError, match="is not installed"):  # even when validation is bypassed: no stand-in
        loader.execute(model_name=name, dtype="auto", device="cpu")
    verdict = pack.nodes["VHSVerifierLoader"].validate_inputs(verifier_name="vhs-hidden-verifier-v2")
    assert "is not installed" in verdict and "vhs" in verdict


@pytest.mark.parametrize("kind,defect", [("hidden", "config_not_json"), ("hidden", "config_empty"),
                                         ("hidden", "plain_qwen2"), ("hidden", "weights_truncated"),
                                         ("sana", "other_pipeline"), ("sana", "model_index_empty")])
def test_a_damaged_installed_folder_fails_validation_naming_the_problem(pack, bundle, tmp_path, kind, defect):
    import folder_paths

    folder, phrase = damaged(bundle[kind], str(tmp_path / "store"), defect, kind)
    key = "sana" if kind == "sana" else "vhs"
    installed = tmp_path / key
    installed.mkdir()
    os.symlink(folder, installed / "broken_model")
    folder_paths.add_model_folder_path(key, str(installed))
    try:
        node = pack.nodes["SanaSprintLoaderVHS" if kind == "sana" else "VHSVerifierLoader"]
        verdict = node.validate_inputs(**{"model_name" if kind == "sana" else "verifier_name": "broken_model"})
    finally:
        folder_paths.folder_names_and_paths[key][0].remove(str(installed))
    assert isinstance(verdict, str) and phrase in verdict, verdict


def test_loaders_refuse_the_wrong_verifier_kind(pack):
    verdict = pack.nodes["VHSVerifierLoader"].validate_inputs(verifier_name="vhs-mllm-clip-verifier")
    assert "is a clip verifier; load it with 'MLLM Verifier Loader'" in verdict
    with pytest.raises(ValueError, match="is a hidden verifier; load it with 'VHS Verifier Loader'"):
        pack.run("MLLMVerifierLoaderVHS", verifier_name="vhs-hidden-verifier", dtype="fp32", device="cpu")


def test_fp8_on_apple_mps_is_refused_before_loading(pack, monkeypatch):
    monkeypatch.setattr(pack.host, "torch_device", lambda policy: torch.device("mps"))
    with pytest.raises(ValueError, match="not supported on Apple MPS"):
        pack.run("SanaSprintLoaderVHS", model_name=REAL_SANA, dtype="fp16", device="auto",
                 weight_storage="fp8_e4m3fn")
    with pytest.raises(ValueError, match="not supported on Apple MPS"):
        pack.run("VHSVerifierLoader", verifier_name="vhs-hidden-verifier", dtype="fp16", device="auto",
                 weight_storage="fp8_e5m2")


def test_the_embedded_demo_is_an_explicit_choice_and_says_what_ran(pack):
    """Chosen explicitly, the embedded model runs at its native 64 px and the sampler's info says so."""
    model = pack.run("SanaSprintLoaderVHS", model_name=EMBEDDED, dtype="auto", device="cpu")[0]
    verifier = pack.run("VHSVerifierLoader", verifier_name=EMBEDDED, dtype="auto", device="cpu")[0]
    assert model.model.dtype == torch.float32 and model.native_size == 64
    out = sample(pack, model, 1024, verifier=verifier, candidates=2)
    hidden, info = out[0], out[1]
    assert (hidden.width, hidden.height, hidden.layer) == (64, 64, verifier.verifier.spec.layer)
    assert "ran at 64x64 px" in info and "asked 1024x1024" in info and "from the verifier" in info
    scores = pack.run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="reference")[0]
    report = pack.run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=1)[1]
    assert "at 64x64 px" in report and f"l*={hidden.layer}" in report


def test_best_of_n_chain_through_the_nodes(node_models, res):
    pack, model, verifier = node_models
    assert model.model.dtype == torch.float32  # auto on the CPU
    hidden, info = sample(pack, model, res, verifier=verifier).result
    assert len(hidden) == 5 and hidden.seeds == (3, 4, 5, 6, 7) and hidden.layer == verifier.verifier.spec.layer
    assert info.startswith("5 candidates (seeds 3..7) at 64x64 px") and "l* from the verifier" in info
    scores, text = pack.run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="normalized").result
    assert text.count("#") == 5
    winners, report, index, latent = pack.run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=2).result
    assert latent["samples"].numel() == 0  # no model connected: no latents computed
    assert index == int(torch.argmax(scores.scores)) and len(winners) == 2
    assert report.splitlines()[1].startswith(f"1. candidate #{index} seed {3 + index}")
    image, latent = pack.run("VHSDecodeWinner", model=model, hidden=winners).result
    assert image.shape == (2, res, res, 3) and latent["samples"].shape[0] == 2
    alone = pack.run("VHSDecodeWinner", model=model, hidden=sample(pack, model, res, seed=3 + index, candidates=1)[0])
    assert torch.allclose(alone[0][0], image[0], atol=1e-5), "the winner must equal its seed generated alone"


def test_l_star_has_one_source_of_truth(node_models, res):
    pack, model, verifier = node_models
    block = verifier.verifier.spec.layer
    assert sample(pack, model, res, verifier=verifier, layer=block)[0].layer == block  # the same block: fine
    with pytest.raises(ValueError, match=f"differs from the block the connected verifier reads \\({block}\\)"):
        sample(pack, model, res, verifier=verifier, layer=block + 1)
    with pytest.raises(ValueError, match="connect the verifier to the sampler"):
        sample(pack, model, res, layer=-1)
    clip = pack.run("MLLMVerifierLoaderVHS", verifier_name="vhs-mllm-clip-verifier", dtype="fp32", device="cpu")[0]
    assert sample(pack, model, res, verifier=clip)[0].layer == model.model.num_layers - 1  # baselines: every block
    hidden = sample(pack, model, res, layer=block + 1)[0]  # a free choice without a verifier...
    with pytest.raises(ValueError, match=f"reads DiT block {block}, but the candidates stopped after block {block + 1}"):
        pack.run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="reference")  # ...is checked downstream


def test_baseline_nodes(node_models, res):
    pack, model, _ = node_models
    hidden = sample(pack, model, res, layer=3)[0]
    for loader_name, node_name in (("vhs-mllm-clip-verifier", "MLLMVerifierCLIPVHS"),
                                   ("vhs-ae-verifier", "MLLMVerifierAEVHS")):
        verifier = pack.run("MLLMVerifierLoaderVHS", verifier_name=loader_name, dtype="fp32", device="cpu")[0]
        scores = pack.run(node_name, model=model, verifier=verifier, hidden=hidden, score_mode="reference")[0]
        assert scores.scores.shape == (5,) and scores.run_key == hidden.run_key
    clip = pack.run("MLLMVerifierLoaderVHS", verifier_name="vhs-mllm-clip-verifier", dtype="fp32", device="cpu")[0]
    with pytest.raises(ValueError, match="needs a latent verifier, got a clip one"):
        pack.run("MLLMVerifierAEVHS", model=model, verifier=clip, hidden=hidden, score_mode="reference")


@pytest.mark.parametrize("name,value", [("guidance", "nan"), ("guidance", math.nan), ("max_timestep", math.inf),
                                        ("intermediate_timestep", -math.inf), ("guidance", 25.0)])
def test_non_finite_or_out_of_range_floats_fail_validation(node_models, res, name, value):
    pack, model, verifier = node_models
    verdict = pack.nodes["SanaSprintHiddenSamplerVHS"].validate_inputs(**{name: value})
    assert isinstance(verdict, str) and name in verdict
    with pytest.raises(ValidationFailed, match=name):
        sample(pack, model, res, verifier=verifier, **{name: value})
    with pytest.raises(ValueError, match=name):  # linked (not validated up front): refused when the node runs
        pack.nodes["SanaSprintHiddenSamplerVHS"].execute(model=model, verifier=verifier, prompt="a cat", seed=0,
                                                         candidates=2, layer=-1, width=res, height=res, steps=1,
                                                         **{**dict(guidance=4.5, max_timestep=1.5708,
                                                                   intermediate_timestep=1.3), name: value})
    assert pack.nodes["VHSBestOfNTimeBudget"].validate_inputs(threshold=math.nan) is not True


def test_wrong_edges_and_values_give_clear_errors(node_models, res):
    pack, model, verifier = node_models
    with pytest.raises(ValueError, match="expects HiddenStates, got str"):
        pack.run("VHSVerifier", verifier=verifier, hidden="not hidden", score_mode="reference")
    with pytest.raises(ValueError, match="expects SanaSprintHandle"):
        sample(pack, "not a model", res)
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        sample(pack, model, res, layer=9)
    with pytest.raises(ValueError, match="not valid text"):
        sample(pack, model, res, verifier=verifier, prompt="a \ud800 cat")
    hidden = sample(pack, model, res, verifier=verifier)[0]
    scores = pack.run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="reference")[0]
    with pytest.raises(ValueError, match="k must be between 1 and"):
        pack.run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=6)
    with pytest.raises(ValueError, match="multiple of 32"):
        sample(pack, model, res + 16, verifier=verifier)


def test_scores_of_another_run_are_refused_by_best_of_n_select(node_models, res):
    pack, model, verifier = node_models
    first = sample(pack, model, res, verifier=verifier, seed=0)[0]
    second = sample(pack, model, res, verifier=verifier, seed=100)[0]  # same N, other seeds
    scores = pack.run("VHSVerifier", verifier=verifier, hidden=first, score_mode="reference")[0]
    with pytest.raises(ValueError, match="computed on other candidates"):
        pack.run("VHSBestOfNSelect", hidden=second, scores=scores, k=1)


def test_progress_and_cancel(node_models, res, monkeypatch):
    pack, model, _ = node_models
    host = pack.host
    ticks = []

    def progress(total):
        def callback(done, total_now):
            host.check_interrupt()
            ticks.append((done, total_now))
        return callback

    monkeypatch.setattr(host, "progress", progress)
    sample(pack, model, res, layer=2, steps=2)
    n = model.model.num_layers
    assert ticks == [(i, n + 3) for i in range(1, n + 4)]

    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted

    monkeypatch.setattr(host, "check_interrupt", interrupted)
    ticks.clear()
    with pytest.raises(Interrupted):
        sample(pack, model, res, layer=3)
    assert ticks == [], "cancel must stop at the first block"


def test_a_symlink_loop_in_the_model_folder_does_not_hang_the_listing(pack, bundle, tmp_path):
    import folder_paths

    root = tmp_path / "vhs_with_loop"
    root.mkdir()
    os.symlink(root, root / "loop1")
    os.symlink(bundle["hidden"], root / "inner_verifier")
    (root / "deep" / "a" / "b" / "c" / "d" / "e").mkdir(parents=True)
    folder_paths.add_model_folder_path("vhs", str(root))
    try:
        start = time.perf_counter()
        choices = node_inputs(pack.nodes["VHSVerifierLoader"])[0][1]
        took = time.perf_counter() - start
    finally:
        folder_paths.folder_names_and_paths["vhs"][0].remove(str(root))
    assert "inner_verifier" in choices and took < 5, took
    assert not any(c.startswith("loop1/") for c in choices)


def test_every_node_has_a_help_page_naming_its_inputs_and_outputs(pack):
    """web/docs/<node id>.md is what ComfyUI's node-docs panel shows; it must cover every socket and widget."""
    web = os.path.join(ROOT, pack.module.WEB_DIRECTORY, "docs")
    assert sorted(f[:-3] for f in os.listdir(web) if f.endswith(".md")) == sorted(pack.nodes)
    for node_id, cls in pack.nodes.items():
        with open(os.path.join(web, f"{node_id}.md"), encoding="utf-8") as f:
            text = f.read()
        assert text.startswith(f"# {pack.display[node_id]}\n"), node_id
        names = [n for n, _, _ in node_inputs(cls)] + list(cls.RETURN_NAMES)
        missing = [n for n in names if f"**{n}**" not in text]
        assert not missing, f"{node_id}.md does not describe {missing}"


def test_comfyui_noise_can_drive_the_sampler(node_models, res):
    """The core NOISE type (RandomNoise, DisableNoise) feeds the sampler, so graphs can share noise with other
    samplers: candidate i starts from the i-th of the batch that noise draws."""
    import comfy.sample
    from comfy_extras.nodes_custom_sampler import Noise_EmptyNoise, Noise_RandomNoise

    pack, model, verifier = node_models
    hidden, info = sample(pack, model, res, verifier=verifier, candidates=3, noise=Noise_RandomNoise(77)).result
    expected = comfy.sample.prepare_noise(torch.zeros(model.model.noise_shape(3, res, res)), 77)
    direct = model.model.prefix("two cats", [0, 0, 0], layer=hidden.layer, height=res, width=res, noise=expected)
    assert torch.equal(hidden.hidden, direct.hidden) and hidden.seeds == (77, 77, 77)
    assert "noise from the NOISE input (Noise_RandomNoise, seed 77)" in info
    flat = sample(pack, model, res, verifier=verifier, candidates=2, noise=Noise_EmptyNoise())[0]
    assert torch.equal(flat.hidden[0], flat.hidden[1]), "no noise: every candidate is the same"
    with pytest.raises(ValueError, match="expects ComfyUI's NOISE"):
        sample(pack, model, res, verifier=verifier, noise="not noise")
