"""Node classes: registration, tooltips, loaders, progress/cancel and clear errors (no ComfyUI needed)."""

from __future__ import annotations

import os

import pytest
import torch

from graph import node_inputs

DISPLAY = {"SANA-Sprint Loader", "SANA-Sprint Hidden-State Sampler", "VHS Verifier Loader", "VHS Verifier",
           "Best-of-N Select", "Decode Winner", "MLLM Verifier Loader", "MLLM Verifier (CLIP)", "MLLM Verifier (AE latent)",
           "VHS Best-of-N (Time Budget)", "VHS Candidate Preview", "Save Image (VHS scores)"}


def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


def test_registration_names_and_category(pack):
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS.values()) == DISPLAY
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        assert cls.CATEGORY.startswith("VHS")
        assert cls.DESCRIPTION and callable(getattr(cls, cls.FUNCTION))
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)


def test_every_input_has_a_tooltip(pack):
    missing = [f"{name}.{inp}" for name, cls in pack.NODE_CLASS_MAPPINGS.items()
               for inp, _, opts in node_inputs(cls) if not opts.get("tooltip")]
    assert not missing, missing


def test_loaders_list_installed_models_and_the_embedded_demo(pack):
    m = nodes(pack)
    sana_choices = m["SanaSprintLoaderVHS"].INPUT_TYPES()["required"]["model_name"][0]
    assert sana_choices[0] == "Sana_Sprint_1.6B_1024px_diffusers" and any("embedded" in c for c in sana_choices)
    vhs_choices = m["VHSVerifierLoader"].INPUT_TYPES()["required"]["verifier_name"][0]
    assert {"vhs-hidden-verifier", "vhs-mllm-clip-verifier", "vhs-ae-verifier"} <= set(vhs_choices)


def test_loaders_refuse_the_wrong_verifier_kind(pack):
    m = nodes(pack)
    with pytest.raises(ValueError, match="is a clip verifier; load it with 'MLLM Verifier Loader'"):
        m["VHSVerifierLoader"]().load("vhs-mllm-clip-verifier", "fp32", "cpu")
    with pytest.raises(ValueError, match="is a hidden verifier; load it with 'VHS Verifier Loader'"):
        m["MLLMVerifierLoaderVHS"]().load("vhs-hidden-verifier", "fp32", "cpu")


def test_fp8_on_apple_mps_is_refused_before_loading(pack, monkeypatch):
    m = nodes(pack)
    monkeypatch.setattr(pack.nodes.comfy, "torch_device", lambda policy: torch.device("mps"))
    with pytest.raises(ValueError, match="not supported on Apple MPS"):
        m["SanaSprintLoaderVHS"]().load("Sana_Sprint_1.6B_1024px_diffusers", "fp16", "auto", "fp8_e4m3fn")
    with pytest.raises(ValueError, match="not supported on Apple MPS"):
        m["VHSVerifierLoader"]().load("vhs-hidden-verifier", "fp16", "auto", "fp8_e5m2")


def test_missing_models_fall_back_to_the_embedded_demo(pack, res, caplog):
    """A workflow naming models this machine lacks still runs: the embedded demo model stands in, with a warning."""
    m = nodes(pack)
    assert m["SanaSprintLoaderVHS"].VALIDATE_INPUTS(model_name="Sana_Sprint_0.6B_1024px_diffusers") is True
    model = m["SanaSprintLoaderVHS"]().load("Sana_Sprint_0.6B_1024px_diffusers", "bf16", "cpu")[0]
    assert "not installed" in caplog.text and model.dtype == torch.float32
    verifier = m["VHSVerifierLoader"]().load("some-verifier-i-do-not-have", "auto", "cpu")[0]
    assert model.demo["layer"] == verifier.spec.layer
    hidden = sample(pack, model, res, width=1024, height=1024, layer=7, candidates=2)
    assert (hidden.width, hidden.height, hidden.layer) == (model.demo["width"], model.demo["height"], model.demo["layer"])
    assert m["VHSVerifier"]().score(verifier, hidden, "reference")["result"][0].scores.shape == (2,)


@pytest.fixture(scope="module")
def loaded(node_models):
    return node_models[1:]


def sample(pack, model, res, **kw):
    args = dict(prompt="two cats", seed=3, candidates=5, layer=1, width=res, height=res, steps=1, guidance=4.5,
                max_timestep=1.5708, intermediate_timestep=1.3)
    args.update(kw)
    return nodes(pack)["SanaSprintHiddenSamplerVHS"]().sample(model, **args)[0]


def test_best_of_n_chain_through_the_nodes(pack, loaded, res):
    m = nodes(pack)
    model, verifier = loaded
    assert model.dtype == torch.float32  # auto on the CPU
    hidden = sample(pack, model, res)
    assert len(hidden) == 5 and hidden.seeds == (3, 4, 5, 6, 7)
    out = m["VHSVerifier"]().score(verifier, hidden, "normalized")
    scores = out["result"][0]
    assert out["ui"]["text"][0].count("#") == 5
    sel = m["VHSBestOfNSelect"]().select(hidden, scores, 2)
    winners, report, index, latent = sel["result"]
    assert latent["samples"].numel() == 0  # no model connected: no latents computed
    assert index == int(torch.argmax(scores.scores)) and len(winners) == 2
    assert report.splitlines()[1].startswith(f"1. candidate #{index} seed {3 + index}")
    image, latent = m["VHSDecodeWinner"]().decode(model, winners)
    assert image.shape == (2, res, res, 3) and latent["samples"].shape[0] == 2
    alone = m["VHSDecodeWinner"]().decode(model, sample(pack, model, res, seed=3 + index, candidates=1))[0]
    assert torch.allclose(alone[0], image[0], atol=1e-5), "the winner must equal its seed generated alone"


def test_baseline_nodes(pack, loaded, res):
    m = nodes(pack)
    model, _ = loaded
    hidden = sample(pack, model, res, layer=3)
    for loader_name, node_name in ((pack.nodes.comfy.EMBEDDED_CLIP, "MLLMVerifierCLIPVHS"),
                                   ("vhs-ae-verifier", "MLLMVerifierAEVHS")):
        verifier = m["MLLMVerifierLoaderVHS"]().load(loader_name, "fp32", "cpu")[0]
        scores = m[node_name]().score(model, verifier, hidden, "reference")["result"][0]
        assert scores.scores.shape == (5,)
    clip = m["MLLMVerifierLoaderVHS"]().load("vhs-mllm-clip-verifier", "fp32", "cpu")[0]
    with pytest.raises(ValueError, match="needs a latent verifier, got a clip one"):
        m["MLLMVerifierAEVHS"]().score(model, clip, hidden, "reference")


def test_wrong_edges_and_values_give_clear_errors(pack, loaded, res):
    m = nodes(pack)
    model, verifier = loaded
    with pytest.raises(ValueError, match="expects HiddenStates, got str"):
        m["VHSVerifier"]().score(verifier, "not hidden", "reference")
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        sample(pack, model, res, layer=9)
    hidden = sample(pack, model, res, layer=2)
    with pytest.raises(ValueError, match="set the sampler's layer to 1"):
        m["VHSVerifier"]().score(verifier, hidden, "reference")
    scores = m["VHSVerifier"]().score(verifier, sample(pack, model, res), "reference")["result"][0]
    with pytest.raises(ValueError, match="k must be between 1 and"):
        m["VHSBestOfNSelect"]().select(sample(pack, model, res), scores, 6)
    with pytest.raises(ValueError, match="multiple of 32"):
        sample(pack, model, res, width=res + 16)


def test_progress_and_cancel(pack, loaded, res, monkeypatch):
    comfy = pack.nodes.comfy
    model, _ = loaded
    ticks = []

    class FakeBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None):
            ticks.append((value, total))

    def progress(total):
        bar = FakeBar(total)

        def callback(done, total_now):
            comfy.check_interrupt()
            bar.update_absolute(done, total_now)
        return callback

    monkeypatch.setattr(comfy, "progress", progress)
    sample(pack, model, res, layer=2, steps=2)
    assert ticks == [(i, model.num_layers + 3) for i in range(1, model.num_layers + 4)]

    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted

    monkeypatch.setattr(comfy, "check_interrupt", interrupted)
    ticks.clear()
    with pytest.raises(Interrupted):
        sample(pack, model, res, layer=3)
    assert ticks == [], "cancel must stop at the first block"


def test_every_node_has_a_help_page_naming_its_inputs_and_outputs(pack):
    """web/docs/<node id>.md is what ComfyUI's node-docs panel shows; it must cover every socket and widget."""
    web = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), pack.WEB_DIRECTORY, "docs")
    assert sorted(f[:-3] for f in os.listdir(web) if f.endswith(".md")) == sorted(pack.NODE_CLASS_MAPPINGS)
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        with open(os.path.join(web, f"{node_id}.md"), encoding="utf-8") as f:
            text = f.read()
        assert text.startswith(f"# {pack.NODE_DISPLAY_NAME_MAPPINGS[node_id]}\n"), node_id
        names = [n for n, _, _ in node_inputs(cls)] + list(getattr(cls, "RETURN_NAMES", ()))
        missing = [n for n in names if f"**{n}**" not in text]
        assert not missing, f"{node_id}.md does not describe {missing}"
