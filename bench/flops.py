"""FLOPs, parameters and resident weights of each pipeline at the benchmark's sizes (the counting itself is the
library's: models/flops.py, through the calls the nodes make; on the meta device nothing runs)."""

from __future__ import annotations

import torch

from bench.sizes import BenchModels
from models.flops import PIPELINES, pipeline_flops, run_flops
from models.precision import store_weights_in, weight_bytes

PROMPT = "a photo of a red bench left of a blue umbrella"
# the modules each pipeline keeps on the device (what its peak memory and resident weights count)
USES = {"vhs": ("transformer", "dc_ae", "text_encoder", "llm_hidden", "connector_hidden"),
        "mllm_clip": ("transformer", "dc_ae", "text_encoder", "llm_clip", "clip_tower", "connector_clip"),
        "mllm_ae": ("transformer", "dc_ae", "text_encoder", "llm_latent", "connector_latent")}
USES["vhs_reference_style"] = USES["vhs"]


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
    """FLOPs per candidate and per stage for the three pipelines at the models' size and l* (the library's count)."""
    return pipeline_flops(m.model, m.verifiers, prompt, m.layer, m.size, m.size)


def run_totals(report: dict, ns: list[int]) -> dict:
    """Whole Best-of-N run FLOPs: text encode once + N candidates + the winner's finish."""
    return {p: {n: run_flops(report, p, n) for n in ns} for p in PIPELINES}


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
