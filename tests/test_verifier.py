"""VHS verifier and pixel-space baselines: official layout loading, batched scoring, errors, round-trips."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch

from models import InputError, ModelFolderError, VHSVerifier, convert_stats_to_safetensors, select_top_k
from models.features import HiddenFeatures, pool_tokens
from apps.fixtures import build_tiny_verifier
from models.verifier import VHS_INSTRUCTION

PROMPT = "a photo of two red circles above a blue square"


@pytest.fixture(scope="module")
def hidden(sana, res):
    return sana.prefix(PROMPT, list(range(100, 106)), layer=1, height=res, width=res)


def test_detects_kind_and_layer_from_official_config(bundle):
    for kind in ("hidden", "latent", "clip"):
        v = VHSVerifier.from_pretrained(bundle[kind])
        assert v.kind == kind
    assert VHSVerifier.from_pretrained(bundle["hidden"]).spec.layer == 1


def test_prompt_layout_follows_the_chat_template(hidden_verifier):
    tok = hidden_verifier.tokenizer
    before, after = hidden_verifier.prompt_token_ids(PROMPT)
    text = tok.decode(list(before) + list(after))
    assert text.startswith("<|im_start|>system\nYou are Qwen")
    assert "<|im_start|>user\nYou are an AI assistant" in text
    assert text.endswith("'yes' or 'no'<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(list(before)).endswith("given prompt. ")
    assert tok.decode(list(after)).startswith(f" The given prompt is: {PROMPT}.")
    assert hidden_verifier.layout(PROMPT, 256) == (len(before), 256, len(after))


def test_hidden_features_are_standardised_like_the_reference(hidden_verifier, hidden):
    hf = hidden_verifier.hidden_features
    feats = hidden_verifier.features(None, hidden)
    m, v = hf.mean.float(), hf.variance.float()
    expected = (hidden.hidden.float() - m.unsqueeze(1)) / torch.sqrt(v.unsqueeze(1) + 1e-6)
    assert hf.mean.dtype == torch.bfloat16  # the released statistics are bf16 tensors
    assert torch.allclose(feats, expected, atol=1e-6)


def test_per_channel_statistics_also_broadcast(hidden):
    c = hidden.dim
    hf = HiddenFeatures(1, torch.zeros(1, c), torch.ones(1, c) * 4)
    assert torch.allclose(hf(hidden.hidden, hidden.grid), hidden.hidden / 2, atol=1e-5)
    with pytest.raises(InputError, match="another resolution"):
        HiddenFeatures(1, torch.zeros(7), torch.ones(7))(hidden.hidden, hidden.grid)


@pytest.mark.parametrize("mode", ["reference", "normalized"])
def test_batched_scores_equal_one_by_one(sana, hidden_verifier, hidden, mode):
    batched = hidden_verifier.score(sana, hidden, mode=mode)
    single = torch.cat([hidden_verifier.score(sana, hidden.select([i]), mode=mode).scores for i in range(len(hidden))])
    assert batched.scores.shape == (len(hidden),)
    assert (batched.scores - single).abs().max().item() <= 1e-5
    chunked = hidden_verifier.score(sana, hidden, mode=mode, batch_size=4)
    assert (batched.scores - chunked.scores).abs().max().item() <= 1e-5
    assert len(set(batched.scores.tolist())) > 1, "candidates should not all score the same"


def test_single_forward_equals_reference_generate_path(hidden_verifier, hidden):
    feats = hidden_verifier.features(None, hidden)
    fast = hidden_verifier.score_features(hidden.prompt, feats, mode="reference")
    slow = hidden_verifier.score_with_generate(hidden.prompt, feats)
    assert (fast.scores - slow.scores).abs().max().item() <= 1e-5
    assert fast.ranking() == slow.ranking()
    normalized = hidden_verifier.score_features(hidden.prompt, feats, mode="normalized")
    assert torch.allclose(normalized.scores, fast.p_yes / (fast.p_yes + fast.p_no), atol=1e-6)
    assert normalized.ranking()[0] in range(len(hidden))


def test_reference_score_sign_follows_the_top_token(hidden_verifier):
    tok = hidden_verifier.tokenizer
    logits = torch.full((2, len(tok)), -10.0)
    logits[0, hidden_verifier.yes_id] = 5.0  # answers "yes": score = P(yes)
    logits[1, hidden_verifier.no_id] = 5.0  # answers "no": score = -P(no)
    s = hidden_verifier.scores_from_logits(logits, "reference", (0, 1))
    assert s.scores[0] > 0.9 and s.scores[1] < -0.9
    assert s.ranking() == [0, 1]


def test_pixel_space_baselines_share_the_interface(sana, bundle, hidden):
    calls = [0]
    last = sana.transformer.transformer_blocks[-1]
    handle = last.register_forward_hook(lambda m, a, o: calls.__setitem__(0, calls[0] + o.shape[0]))
    try:
        for kind in ("latent", "clip"):
            v = VHSVerifier.from_pretrained(bundle[kind])
            s = v.score(sana, hidden, mode="normalized")
            assert s.scores.shape == (len(hidden),) and s.indices == hidden.indices
            assert ((s.scores > 0) & (s.scores < 1)).all()
    finally:
        handle.remove()
    assert calls[0] == 2 * len(hidden), "pixel-space verifiers must finish every candidate"
    with pytest.raises(InputError, match="needs the SANA-Sprint model"):
        VHSVerifier.from_pretrained(bundle["latent"]).score(None, hidden)


def test_wrong_layer_or_width_is_a_clear_error(sana, hidden_verifier, res):
    other_layer = sana.prefix(PROMPT, [1], layer=2, height=res, width=res)
    with pytest.raises(InputError, match="reads DiT block 1, but the candidates stopped after block 2: generate them with layer 1"):
        hidden_verifier.score(sana, other_layer)
    with pytest.raises(InputError, match="channels"):
        hidden_verifier.score_features(PROMPT, torch.zeros(1, 4, 5))
    with pytest.raises(InputError, match="empty"):
        hidden_verifier.score_features("", torch.zeros(1, 4, 32))
    with pytest.raises(InputError, match="score mode"):
        hidden_verifier.score_features(PROMPT, torch.zeros(1, 4, 32), mode="best")
    with pytest.raises(InputError, match="too long"):
        hidden_verifier.score_features(PROMPT, torch.zeros(1, 4096, 32))


def test_select_top_k(sana, hidden_verifier, hidden):
    scores = hidden_verifier.score(sana, hidden, mode="normalized")
    winner, idx, vals = select_top_k(hidden, scores, k=2)
    order = torch.argsort(scores.scores, descending=True)[:2].tolist()
    assert idx == [hidden.indices[i] for i in order] and len(winner) == 2
    assert vals == sorted(vals, reverse=True) and winner.scores.tolist() == pytest.approx(vals)
    assert winner.seeds == tuple(hidden.seeds[i] for i in order)
    with pytest.raises(InputError, match="k must be"):
        select_top_k(hidden, scores, k=len(hidden) + 1)
    with pytest.raises(InputError, match="other candidates"):
        select_top_k(hidden.select([0, 1]), scores, k=1)


def test_save_load_round_trip(sana, hidden_verifier, hidden, tmp_path):
    out = hidden_verifier.save_pretrained(tmp_path / "copy")
    assert os.path.isfile(os.path.join(out, "block_1_stats.safetensors"))
    cfg = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert cfg["model_type"] == "llava_qwen" and cfg["mm_vision_select_feature"] == "block_1"
    again = VHSVerifier.from_pretrained(out)
    a, b = hidden_verifier.score(sana, hidden), again.score(sana, hidden)
    assert torch.allclose(a.scores, b.scores, atol=1e-6)
    with pytest.raises(FileExistsError):
        hidden_verifier.save_pretrained(out)


def test_clip_verifier_round_trip_and_missing_tower(sana, bundle, hidden, tmp_path):
    v = VHSVerifier.from_pretrained(bundle["clip"])
    copy = v.save_pretrained(tmp_path / "clip_copy")
    assert torch.allclose(v.score(sana, hidden).scores, VHSVerifier.from_pretrained(copy).score(sana, hidden).scores, atol=1e-6)
    bare = build_tiny_verifier(str(tmp_path / "bare"), "clip", vision_tower_folder=False)
    with pytest.raises(ModelFolderError, match="needs its vision tower 'openai/clip-vit-large-patch14-336'"):
        VHSVerifier.from_pretrained(bare)
    shutil.copytree(os.path.join(bundle["clip"], "vision_tower"), tmp_path / "clip-vit-large-patch14-336")
    assert VHSVerifier.from_pretrained(bare).kind == "clip"  # found beside the verifier


def test_token_pooling(sana, bundle, hidden, tmp_path):
    x = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    pooled = pool_tokens(x, (4, 4), 2)
    assert pooled.shape == (2, 4, 3)
    assert torch.allclose(pooled[0, 0], x[0, [0, 1, 4, 5]].mean(0))
    with pytest.raises(InputError, match="not divisible"):
        pool_tokens(x, (4, 4), 3)
    folder = tmp_path / "pooled"
    shutil.copytree(bundle["hidden"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vhs_token_pool"] = 2
    (folder / "config.json").write_text(json.dumps(cfg))
    v = VHSVerifier.from_pretrained(folder)
    assert v.features(sana, hidden).shape[1] == hidden.tokens // 4
    assert v.score(sana, hidden).scores.shape == (len(hidden),)


def test_statistics_conversion_and_safe_loading(sana, bundle, hidden, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(bundle["hidden"], folder)
    before = VHSVerifier.from_pretrained(folder).score(sana, hidden).scores
    convert_stats_to_safetensors(str(folder / "block_1_mean_bf16.pt"), str(folder / "block_1_variance_bf16.pt"),
                                 str(folder / "block_1_stats.safetensors"))
    os.remove(folder / "block_1_mean_bf16.pt")
    os.remove(folder / "block_1_variance_bf16.pt")
    assert torch.equal(VHSVerifier.from_pretrained(folder).score(sana, hidden).scores, before)

    evil = tmp_path / "evil"
    shutil.copytree(bundle["hidden"], evil)

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with open(evil / "block_1_mean_bf16.pt", "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(ModelFolderError, match="tensors only"):
        VHSVerifier.from_pretrained(evil)
    assert not (tmp_path / "pwned").exists()


def test_loader_errors(bundle, tmp_path):
    with pytest.raises(ModelFolderError, match="not found"):
        VHSVerifier.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="config.json is missing"):
        VHSVerifier.from_pretrained(tmp_path / "empty")

    plain = tmp_path / "plain_llm"
    shutil.copytree(bundle["hidden"], plain)
    cfg = json.loads((plain / "config.json").read_text())
    cfg["model_type"] = "qwen2"
    (plain / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match="model_type 'qwen2'"):
        VHSVerifier.from_pretrained(plain)

    no_stats = tmp_path / "no_stats"
    shutil.copytree(bundle["hidden"], no_stats)
    for f in os.listdir(no_stats):
        if f.startswith("block_1_"):
            os.remove(no_stats / f)
    with pytest.raises(ModelFolderError, match="block_1_mean_bf16.pt"):
        VHSVerifier.from_pretrained(no_stats)

    bad_width = tmp_path / "bad_width"
    shutil.copytree(bundle["hidden"], bad_width)
    cfg = json.loads((bad_width / "config.json").read_text())
    cfg["mm_hidden_size"] = 64
    (bad_width / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match=r"connector tensor model.mm_projector.0.weight is \[32, 32\], but the config .* needs \[32, 64\]"):
        VHSVerifier.from_pretrained(bad_width)

    no_weights = tmp_path / "no_weights"
    shutil.copytree(bundle["hidden"], no_weights)
    os.remove(no_weights / "model.safetensors")
    with pytest.raises(ModelFolderError, match="no model.safetensors"):
        VHSVerifier.from_pretrained(no_weights)


def test_instruction_is_the_released_question():
    assert VHS_INSTRUCTION.count("<image>") == 1 and "{prompt}" in VHS_INSTRUCTION
    assert VHS_INSTRUCTION.endswith("response directly with 'yes' or 'no'")


def test_prompt_layout_with_the_real_qwen25_tokenizer(hidden_verifier):
    """With Qwen2.5's own vocabulary the question is laid out as for the released verifier."""
    import json as _json
    import statistics

    from conftest import GENEVAL
    from apps.fixtures import qwen25_tokenizer

    tok = qwen25_tokenizer()
    v = VHSVerifier(hidden_verifier.llm, tok, hidden_verifier.connector, hidden_verifier.spec)
    assert (v.yes_id, v.no_id) == (9693, 2152)
    with open(GENEVAL, encoding="utf-8") as f:
        prompts = [_json.loads(line)["prompt"] for line in f if line.strip()]
    layouts = [v.layout(p, 1024) for p in prompts]
    assert {b for b, _, _ in layouts} == {55}, "55 tokens before the image, as measured for the released setup"
    after = [a for _, _, a in layouts]
    assert 38 <= min(after) and max(after) <= 46 and statistics.median(after) == 41


def test_compiled_verifier_scores_the_same(bundle, sana, hidden):
    v = VHSVerifier.from_pretrained(bundle["hidden"])
    ref = v.score(sana, hidden).scores
    assert torch.allclose(v.compile(backend="eager").score(sana, hidden).scores, ref, atol=1e-5)


def test_fp8_weight_storage_scores_in_one_batch_and_close_to_full_precision(bundle, sana, hidden_verifier, hidden):
    from models.precision import weight_bytes

    v = VHSVerifier.from_pretrained(bundle["hidden"], dtype="fp32", weight_storage="fp8_e4m3fn")
    assert v.llm.model.layers[0].self_attn.q_proj.weight.dtype == torch.float8_e4m3fn and v.dtype == torch.float32
    assert weight_bytes(v.llm) < 0.8 * weight_bytes(hidden_verifier.llm)
    batched = v.score(sana, hidden, mode="normalized")
    alone = torch.cat([v.score(sana, hidden.select([i]), mode="normalized").scores for i in range(len(hidden))])
    assert torch.allclose(batched.scores, alone, atol=1e-5)
    full = hidden_verifier.score(sana, hidden, mode="normalized").scores
    assert (batched.scores - full).abs().max().item() < 0.05
