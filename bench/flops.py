"""FLOPs of each pipeline, counted with torch's FlopCounterMode through the library's own code (the calls the nodes
make: SanaSprint.prefix/suffix/decode, VHSVerifier.build_inputs/answer_logits); on the meta device nothing runs."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.sizes import BenchModels
from models import PromptEmbedding
from models.precision import store_weights_in, weight_bytes

PROMPT = "a photo of a red bench left of a blue umbrella"
PIPELINES = ("vhs", "mllm_clip", "mllm_ae")
# the modules each pipeline keeps on the device (what its peak memory and resident weights count)
USES = {"vhs": ("transformer", "dc_ae", "text_encoder", "llm_hidden", "connector_hidden"),
        "mllm_clip": ("transformer", "dc_ae", "text_encoder", "llm_clip", "clip_tower", "connector_clip"),
        "mllm_ae": ("transformer", "dc_ae", "text_encoder", "llm_latent", "connector_latent")}
USES["vhs_reference_style"] = USES["vhs"]


def count_flops(fn: Callable[[], object]) -> float:
    """Total FLOPs of one call (matmuls and convolutions, as FlopCounterMode counts them)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parts(m: BenchModels) -> dict[str, torch.nn.Module]:
    """Every module by the role USES names it with."""
    out = {"transformer": m.model.transformer, "dc_ae": m.model.pipe.vae, "text_encoder": m.text_encoder,
           "clip_tower": m.clip}
    for kind, v in m.verifiers.items():
        out[f"llm_{kind}"], out[f"connector_{kind}"] = v.llm, v.connector
    return out


def pipeline_weight_bytes(m: BenchModels) -> dict[str, int]:
    """Bytes of weights each pipeline uses (in their current storage)."""
    sizes = {k: weight_bytes(mod) for k, mod in parts(m).items()}
    return {p: sum(sizes[r] for r in roles) for p, roles in USES.items()}


def flops_report(m: BenchModels, prompt: str = PROMPT) -> dict:
    """FLOPs per candidate and per stage for the three pipelines at the models' size and l*."""
    model, v, clip, text_encoder = m.model, m.verifiers, m.clip, m.text_encoder
    dev, dt, size, layer = model.device, model.dtype, m.size, m.layer
    t = model.text_tokens()  # the same count the timed runs encode
    emb = PromptEmbedding(prompt, torch.zeros(1, 300, model.transformer.config.caption_channels, device=dev, dtype=dt),
                          torch.ones(1, 300, device=dev, dtype=torch.long), model.key)
    last = model.num_layers - 1
    out: dict = {}
    out["text_encode"] = count_flops(lambda: text_encoder(
        inputs_embeds=torch.zeros(1, t, text_encoder.config.hidden_size, device=dev, dtype=dt),
        attention_mask=torch.zeros(1, 1, t, t, device=dev, dtype=dt), position_ids=torch.arange(t, device=dev)[None]))
    out["dit_prefix_to_l"] = count_flops(lambda: model.prefix(emb, [0], layer=layer, height=size, width=size))
    out["dit_all_blocks"] = count_flops(lambda: model.prefix(emb, [0], layer=last, height=size, width=size))
    hidden_l = model.prefix(emb, [0], layer=layer, height=size, width=size)
    hidden_last = model.prefix(emb, [0], layer=last, height=size, width=size)
    out["dit_resume_from_l"] = count_flops(lambda: model.suffix(hidden_l))
    out["dit_head_only"] = count_flops(lambda: model.suffix(hidden_last))
    latents = model.suffix(hidden_last)
    out["ae_decode"] = count_flops(lambda: model.decode(latents))
    side = clip.config.image_size
    pixels = torch.zeros(1, 3, side, side, device=dev, dtype=dt)
    out["clip_tower"] = count_flops(lambda: clip(pixels, output_hidden_states=True))
    clip_tokens = (side // clip.config.patch_size) ** 2

    def verify(kind: str, tokens: int, channels: int) -> float:
        """The verifier's forward as score_features runs it (inputs built, one LLM pass, answer logits only)."""
        feats = torch.zeros(1, tokens, channels, device=dev, dtype=dt)
        return count_flops(lambda: v[kind].answer_logits(v[kind].build_inputs(prompt, feats)))

    out["verifier_hidden"] = verify("hidden", hidden_l.tokens, v["hidden"].spec.mm_hidden_size)
    out["verifier_clip"] = verify("clip", clip_tokens, v["clip"].spec.mm_hidden_size)
    out["verifier_latent"] = verify("latent", latents.shape[-2] * latents.shape[-1], latents.shape[1])
    per = {
        "vhs": out["dit_prefix_to_l"] + out["verifier_hidden"],
        "mllm_clip": out["dit_all_blocks"] + out["dit_head_only"] + out["ae_decode"] + out["clip_tower"]
        + out["verifier_clip"],
        "mllm_ae": out["dit_all_blocks"] + out["dit_head_only"] + out["verifier_latent"],
    }
    winner = {"vhs": out["dit_resume_from_l"] + out["ae_decode"], "mllm_clip": 0.0, "mllm_ae": out["ae_decode"]}
    return {"stages": out, "per_candidate": per, "winner": winner, "text_tokens": t,
            "layout_tokens": {"vhs": list(v["hidden"].layout(prompt, hidden_l.tokens)),
                              "mllm_clip": list(v["clip"].layout(prompt, clip_tokens))}}


def run_totals(report: dict, ns: list[int]) -> dict:
    """Whole Best-of-N run FLOPs: text encode once + N candidates + the winner's finish."""
    return {p: {n: report["stages"]["text_encode"] + n * report["per_candidate"][p] + report["winner"][p] for n in ns}
            for p in PIPELINES}


def resident_weights(m: BenchModels) -> dict:
    """MB of weights VHS and MLLM w/ CLIP keep on the device (bf16, then with fp8 storage, then with the text encoder
    offloaded too); casts the given (meta-device) modules to fp8 storage in place, as the loaders' option does."""
    mods = parts(m)
    bf16 = {k: weight_bytes(mod) / 2**20 for k, mod in mods.items()}
    for role in ("transformer", "text_encoder", "llm_hidden", "llm_clip", "clip_tower"):
        store_weights_in(mods[role], "fp8_e4m3fn", torch.bfloat16)
    fp8 = {k: weight_bytes(mod) / 2**20 for k, mod in mods.items()}
    return {p: {"bf16": sum(bf16[r] for r in USES[p]), "fp8_storage": sum(fp8[r] for r in USES[p]),
                "fp8_storage_text_encoder_offloaded": sum(fp8[r] for r in USES[p] if r != "text_encoder")}
            for p in ("vhs", "mllm_clip")}


def real_size_counts(m: BenchModels, ns: list[int]) -> dict:
    """Everything counted at one real size on the meta device: FLOPs, whole-run totals, parameters, resident MB."""
    report = flops_report(m)
    totals = run_totals(report, ns)
    blocks = m.model.transformer.transformer_blocks[:m.layer + 1]
    weights = {"transformer": params(m.model.transformer),
               f"dit_blocks_0_to_{m.layer}": sum(params(b) for b in blocks),
               "dc_ae": params(m.model.pipe.vae), "text_encoder": params(m.text_encoder),
               "qwen2.5-0.5b": params(m.verifiers["hidden"].llm), "clip_vit_l14_336": params(m.clip),
               "connector_hidden": params(m.verifiers["hidden"].connector)}
    return {"size": m.size, "layer": m.layer, "flops_device": "meta (counted, not run)", "dtype": "bf16",
            "flops": report, "params": weights, "weights_mb": {k: n * 2 / 2**20 for k, n in weights.items()},
            "resident_weights_mb": resident_weights(m),
            "run_tflops_by_n": {n: {p: totals[p][n] / 1e12 for p in PIPELINES} for n in ns}}
