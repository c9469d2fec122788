"""SANA-Sprint split forward: loading, prefix/suffix equivalence with diffusers, invariants, input errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from models import InputError, ModelFolderError, SanaSprint, VHSVerifier, candidate_seeds

PROMPT = "a photo of a red cat left of a blue dog"


def pipeline_latents(sana, seeds, res, steps, **kw):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = sana.pipe(PROMPT, num_inference_steps=steps, intermediate_timesteps=1.3 if steps == 2 else None,
                    num_images_per_prompt=len(seeds), generator=gens, height=res, width=res,
                    use_resolution_binning=False, output_type="latent", **kw)
    return out.images


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_prefix_suffix_equals_pipeline_at_every_layer(sana, res, steps):
    seeds = [11, 12, 13]
    ref = pipeline_latents(sana, seeds, res, steps)
    for layer in range(sana.num_layers):
        hidden = sana.prefix(PROMPT, seeds, layer=layer, height=res, width=res, steps=steps)
        assert hidden.hidden.shape == (3, (res // 4) ** 2, sana.inner_dim)
        latents = sana.suffix(hidden)
        assert (latents - ref).abs().max().item() <= 1e-5, f"layer {layer}, steps {steps}"


def test_prefix_suffix_equals_unsplit_transformer_forward(sana, res):
    """Feed the stored last-step input through the whole transformer.forward and apply the SCM update."""
    seeds = [5, 6]
    hidden = sana.prefix(PROMPT, seeds, layer=1, height=res, width=res)
    emb = sana.encode_prompt(PROMPT)
    n = len(seeds)
    guidance = torch.full([n], 4.5) * sana.transformer.config.guidance_embeds_scale
    with torch.no_grad():
        raw = sana.transformer(hidden.model_input, encoder_hidden_states=emb.embeds.expand(n, -1, -1),
                               timestep=hidden.scm_timestep, guidance=guidance,
                               encoder_attention_mask=emb.mask.expand(n, -1), return_dict=False)[0]
    s = hidden.scm_timestep.view(-1, 1, 1, 1)
    flow = ((1 - 2 * s) * hidden.model_input + (1 - 2 * s + 2 * s**2) * raw) / torch.sqrt(s**2 + (1 - s) ** 2) * 0.5
    t = hidden.timestep.view(-1, 1, 1, 1)
    expected = (torch.cos(t) * hidden.sample - torch.sin(t) * flow) / 0.5
    assert (sana.suffix(hidden) - expected).abs().max().item() <= 1e-5


def test_decoded_winner_equals_pipeline_image(sana, res):
    seeds = [21, 22, 23, 24]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    ref = sana.pipe(PROMPT, num_inference_steps=1, intermediate_timesteps=None, num_images_per_prompt=4, generator=gens,
                    height=res, width=res, use_resolution_binning=False, output_type="pt").images
    hidden = sana.prefix(PROMPT, seeds, layer=2, height=res, width=res)
    winner = hidden.select([2])
    image = sana.decode(sana.suffix(winner))
    assert image.shape == (1, 3, res, res)
    assert (image[0] - ref[2]).abs().max().item() <= 1e-5


def test_winner_only_resume_matches_batched(sana, res):
    hidden = sana.prefix(PROMPT, [1, 2, 3, 4], layer=1, height=res, width=res)
    full = sana.suffix(hidden)
    part = sana.suffix(hidden.select([3, 1]))
    assert hidden.select([3, 1]).indices == (3, 1) and hidden.select([3, 1]).seeds == (4, 2)
    assert (part - full[[3, 1]]).abs().max().item() <= 1e-6


def test_candidates_never_run_blocks_after_layer(sana, res):
    calls = [0] * sana.num_layers
    rows = [0] * sana.num_layers
    handles = []
    for i, block in enumerate(sana.transformer.transformer_blocks):
        def hook(mod, args, out, i=i):
            calls[i] += 1
            rows[i] += out.shape[0]
        handles.append(block.register_forward_hook(hook))
    try:
        hidden = sana.prefix(PROMPT, [1, 2, 3, 4, 5], layer=1, height=res, width=res)
        assert calls[:2] == [1, 1] and rows[:2] == [5, 5]
        assert calls[2:] == [0] * (sana.num_layers - 2), "blocks after l* ran for candidates"
        sana.suffix(hidden.select([4]))
        assert calls[2:] == [1] * (sana.num_layers - 2) and rows[2:] == [1] * (sana.num_layers - 2)
        assert calls[:2] == [1, 1], "the suffix re-ran blocks of the prefix"
    finally:
        for h in handles:
            h.remove()


def test_prompt_is_encoded_once_for_all_candidates(sana, res):
    count = [0]
    handle = sana.pipe.text_encoder.register_forward_hook(lambda *a: count.__setitem__(0, count[0] + 1))
    try:
        sana.prefix(PROMPT, list(range(8)), layer=0, height=res, width=res)
    finally:
        handle.remove()
    assert count[0] == 1


def test_seeds_make_candidates_reproducible_and_distinct(sana, res):
    a = sana.prefix(PROMPT, [7, 8], layer=0, height=res, width=res)
    b = sana.prefix(PROMPT, [8], layer=0, height=res, width=res)
    assert torch.allclose(a.hidden[1], b.hidden[0], atol=1e-6)
    assert not torch.allclose(a.hidden[0], a.hidden[1])
    assert candidate_seeds(2**64 - 1, 2) == [2**64 - 1, 0]


def test_progress_callback_counts_blocks_and_can_cancel(sana, res):
    seen = []
    sana.prefix(PROMPT, [1], layer=2, height=res, width=res, steps=2, callback=lambda d, t: seen.append((d, t)))
    total = sana.num_layers + 3
    assert seen == [(i, total) for i in range(1, total + 1)]

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        sana.prefix(PROMPT, [1], layer=3, height=res, width=res, callback=cancel)


@pytest.mark.parametrize("kwargs, message", [
    (dict(seeds=[]), "between 1 and"),
    (dict(seeds=list(range(257))), "between 1 and"),
    (dict(layer=-1), "out of range"),
    (dict(layer=4), "out of range"),
    (dict(height=48), "multiple of"),
    (dict(width=0), "multiple of"),
    (dict(steps=0), "steps must be"),
    (dict(steps=5), "steps must be"),
    (dict(prompt="   "), "empty"),
    (dict(prompt="red " * 400), "too long"),
])
def test_bad_requests_are_clear_errors(sana, res, kwargs, message):
    args = dict(prompt=PROMPT, seeds=[1], layer=1, height=res, width=res, steps=1)
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        sana.prefix(**args)


def test_suffix_rejects_foreign_hidden_states(bundle, sana, res, tmp_path):
    other = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32")
    hidden = other.prefix(PROMPT, [1], layer=1, height=res, width=res)
    assert other.key == sana.key  # same folder and dtype: interchangeable
    object.__setattr__(other, "key", "elsewhere")
    foreign = other.prefix(PROMPT, [1], layer=1, height=res, width=res)
    with pytest.raises(InputError, match="another SANA-Sprint"):
        sana.suffix(foreign)
    with pytest.raises(InputError, match="hidden states"):
        sana.suffix("not hidden states")
    assert sana.suffix(hidden).shape[0] == 1


def test_loading_errors_name_the_folder_and_what_is_missing(bundle, tmp_path):
    with pytest.raises(ModelFolderError, match="not found"):
        SanaSprint.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="model_index.json is missing") as e:
        SanaSprint.from_pretrained(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)

    broken = tmp_path / "broken"
    shutil.copytree(bundle["sana"], broken)
    for f in os.listdir(broken / "vae"):
        if f.endswith(".safetensors"):
            os.remove(broken / "vae" / f)
    shutil.rmtree(broken / "scheduler")
    with pytest.raises(ModelFolderError, match=r"missing: vae/ weights.*, scheduler/"):
        SanaSprint.from_pretrained(broken)

    other = tmp_path / "other"
    shutil.copytree(bundle["sana"], other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "SanaPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFolderError, match="SanaPipeline model, not a SanaSprintPipeline"):
        SanaSprint.from_pretrained(other)

    with pytest.raises(InputError, match="unknown dtype"):
        SanaSprint.from_pretrained(bundle["sana"], dtype="fp64")


def test_loads_in_half_precision(bundle, res):
    m = SanaSprint.from_pretrained(bundle["sana"], dtype="bf16")
    assert m.dtype == torch.bfloat16 and m.pipe.text_encoder.dtype == torch.bfloat16
    hidden = m.prefix(PROMPT, [1, 2], layer=1, height=res, width=res)
    assert hidden.hidden.dtype == torch.bfloat16
    image = m.decode(m.suffix(hidden.select([0])))
    assert image.dtype == torch.float32 and torch.isfinite(image).all()


def test_fp8_weight_storage_halves_memory_and_keeps_the_split_exact(bundle, sana, res):
    """fp8 storage: the split forward still equals diffusers' pipeline on the same (fp8) weights, the weights take
    much less memory, and the result stays close to the full-precision model."""
    from models.precision import weight_bytes

    m = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32", weight_storage="fp8_e4m3fn")
    linear = m.transformer.transformer_blocks[0].attn1.to_q.weight
    assert linear.dtype == torch.float8_e4m3fn and m.dtype == torch.float32
    assert weight_bytes(m.transformer) < 0.6 * weight_bytes(sana.transformer)
    assert weight_bytes(m.pipe.text_encoder) < 0.7 * weight_bytes(sana.pipe.text_encoder)
    seeds = [3, 4]
    latents = m.suffix(m.prefix(PROMPT, seeds, layer=1, height=res, width=res))
    assert (latents - pipeline_latents(m, seeds, res, 1)).abs().max().item() <= 1e-5
    full = sana.suffix(sana.prefix(PROMPT, seeds, layer=1, height=res, width=res))
    assert torch.nn.functional.cosine_similarity(latents.flatten(), full.flatten(), dim=0) > 0.98
    with pytest.raises(InputError, match="unknown weight storage"):
        SanaSprint.from_pretrained(bundle["sana"], dtype="fp32", weight_storage="int3")
    with pytest.raises(InputError, match="not supported on Apple MPS"):
        SanaSprint.from_pretrained(bundle["sana"], dtype="fp16", device="mps", weight_storage="fp8_e4m3fn")


def test_text_encoder_offload_visits_the_device_only_to_encode(bundle, res, monkeypatch):
    m = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32", text_encoder_offload=True)
    moves = []
    real_to = m.pipe.text_encoder.to
    monkeypatch.setattr(m.pipe.text_encoder, "to", lambda *a, **k: moves.append(str(a[0])) or real_to(*a, **k))
    ref = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32").encode_prompt(PROMPT)
    emb = m.encode_prompt(PROMPT)
    assert moves == [str(m.device), "cpu"] and torch.equal(emb.embeds, ref.embeds)
    assert m.pipe.text_encoder.device.type == "cpu"


def test_capture_keeps_earlier_blocks_without_extra_work(sana, res):
    hidden, captured = sana.capture(PROMPT, [1, 2], [0, 2], height=res, width=res)
    captured[hidden.layer] = hidden.hidden
    for layer in (0, 2):
        alone = sana.prefix(PROMPT, [1, 2], layer=layer, height=res, width=res)
        assert torch.equal(captured[layer], alone.hidden)
    with pytest.raises(InputError, match="layer 9 is out of range"):
        sana.capture(PROMPT, [1], [0, 9], height=res, width=res)


def test_compiled_blocks_give_the_same_result(bundle, res):
    """Regional torch.compile (dynamo tracing; the 'eager' backend keeps CI free of a C++ build) changes nothing."""
    model = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32")
    ref = model.suffix(model.prefix(PROMPT, [1, 2], layer=1, height=res, width=res))
    model.compile(backend="eager")
    out = model.suffix(model.prefix(PROMPT, [1, 2], layer=1, height=res, width=res))
    assert (out - ref).abs().max().item() <= 1e-5


def test_memory_estimates_grow_with_the_batch_and_the_image(sana, hidden_verifier, res):
    """The activation estimates handed to ComfyUI's memory manager are linear in N and in the pixel count."""
    one, four = sana.activation_bytes(1, res, res), sana.activation_bytes(4, res, res)
    assert one > 0 and four == 4 * one and sana.activation_bytes(1, 2 * res, 2 * res) == 4 * one
    assert sana.decode_bytes(3, res, res) == 3 * sana.decode_bytes(1, res, res) > 0
    hidden = sana.prefix(PROMPT, [1, 2], layer=1, height=res, width=res)
    assert hidden_verifier.activation_bytes(hidden) == 2 * hidden_verifier.activation_bytes(hidden.select([0])) > 0


def test_too_old_or_missing_dependencies_name_the_fix(bundle, monkeypatch):
    import importlib.metadata

    from models.errors import DependencyError

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.30.2" if name == "diffusers" else real(name))
    with pytest.raises(DependencyError, match=r"needs diffusers>=0\.33\.0 \(found 0\.30\.2\): run `pip install -r"):
        SanaSprint.from_pretrained(bundle["sana"], dtype="fp32")

    def missing(name):
        if name == "transformers":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(DependencyError, match="needs transformers>=4.56.0 \\(it is not installed\\)"):
        VHSVerifier.from_pretrained(bundle["hidden"])
