"""Cost of Best-of-N with VHS vs the MLLM w/ CLIP and MLLM w/ AE baselines: parameters, FLOPs, time, memory, N per budget.

    python bench/benchmark.py                      # tiny models on this machine: FLOPs, wall time, budgets
    python bench/benchmark.py --real               # + real sizes (SANA-Sprint 1.6B / 0.6B at 1024 px, Qwen2.5-0.5B,
                                                   #   CLIP ViT-L/14@336), FLOPs and weights counted on the meta device
    python bench/benchmark.py --real --timing      # on a GPU: also time the real sizes with random bf16 weights

FLOPs are counted with torch's FlopCounterMode through the same code the nodes run (SanaSprint.prefix/suffix/decode,
VHSVerifier.score_features); on the meta device nothing is allocated, so real sizes count on any CPU.
Writes results.json, results.md and candidates_vs_time.png into --out. Every figure says its device and dtype.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models import PromptEmbedding, SanaSprint, VHSVerifier  # noqa: E402
from models.budget import CostModel, best_of_1_ms, measure_costs  # noqa: E402
from models.features import HiddenFeatures  # noqa: E402
from apps.fixtures import TINY_LAYER, TINY_RESOLUTION, build_tiny_bundle  # noqa: E402
from models.precision import STORAGE_DTYPES, store_weights_in, weight_bytes  # noqa: E402
from models.verifier import VHS_INSTRUCTION, VerifierSpec, build_connector  # noqa: E402

logger = logging.getLogger("vhs.bench")
PROMPT = "a photo of a red bench left of a blue umbrella"
PIPELINES = ("vhs", "mllm_clip", "mllm_ae")
PAPER = {"budgets_ms": [550, 1100, 1650], "vhs_n": [4, 9, 15], "clip_n": [2, 4, 6],
         "per_candidate_verification_ms": {"mllm_clip": 277, "mllm_ae": 138, "vhs": 102}}

SANA_CONFIGS = {
    "sana-sprint-1.6b": dict(num_attention_heads=70, attention_head_dim=32, num_layers=20, num_cross_attention_heads=20,
                             cross_attention_head_dim=112, cross_attention_dim=2240),
    "sana-sprint-0.6b": dict(num_attention_heads=36, attention_head_dim=32, num_layers=28, num_cross_attention_heads=16,
                             cross_attention_head_dim=72, cross_attention_dim=1152),
}
SANA_COMMON = dict(in_channels=32, out_channels=32, caption_channels=2304, mlp_ratio=2.5, attention_bias=False,
                   sample_size=32, patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6, guidance_embeds=True,
                   guidance_embeds_scale=0.1, qk_norm="rms_norm_across_heads")
DCAE = dict(in_channels=3, latent_channels=32, attention_head_dim=32,
            encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
            decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
            encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
            decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
            encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
            encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)), decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
            upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
            decoder_act_fns="silu", scaling_factor=0.41407)
GEMMA2_2B = dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096,
                 attn_logit_softcapping=50.0, final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh")
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True)
CLIP_L336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
                 patch_size=14, projection_dim=768)


def count_flops(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ real-size models (meta or GPU, random weights)
def real_models(name: str, device: str, dtype: torch.dtype):
    """SANA-Sprint + the three verifiers at real size, built directly on `device` (meta counts without memory)."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModel, Gemma2Config, Gemma2Model, Qwen2Config, Qwen2ForCausalLM

    from apps.fixtures import qwen25_tokenizer, tiny_gemma_tokenizer

    with torch.device(device):
        transformer = SanaTransformer2DModel(**SANA_COMMON, **SANA_CONFIGS[name]).to(dtype)
        vae = AutoencoderDC(**DCAE).to(dtype)
        text_encoder = Gemma2Model(Gemma2Config(**GEMMA2_2B)).to(dtype)
        llms = {k: Qwen2ForCausalLM(Qwen2Config(**QWEN25_05B)).to(dtype) for k in ("hidden", "clip", "latent")}
        clip = CLIPVisionModel(CLIPVisionConfig(**CLIP_L336)).to(dtype)
    pipe = SanaSprintPipeline(tokenizer=tiny_gemma_tokenizer(), text_encoder=text_encoder, vae=vae,
                              transformer=transformer, scheduler=SCMScheduler(sigma_data=0.5))
    model = SanaSprint(pipe, key=f"{name}@{device}")
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    tokenizer = qwen25_tokenizer()
    verifiers = {}
    for kind, mm in (("hidden", width), ("clip", CLIP_L336["hidden_size"]), ("latent", 32)):
        spec = VerifierSpec(kind=kind, vision_tower={"hidden": "hidden_7", "clip": "openai/clip-vit-large-patch14-336",
                                                     "latent": "vae"}[kind],
                            mm_hidden_size=mm, llm_hidden_size=896, projector_type="mlp2x_gelu",
                            layer=7 if kind == "hidden" else None, select_layer=-2, select_feature="patch",
                            token_pool=1, normalize=False, instruction=VHS_INSTRUCTION)
        with torch.device(device):
            connector = build_connector("mlp2x_gelu", mm, 896).to(dtype)
        verifiers[kind] = VHSVerifier(llms[kind], tokenizer, connector, spec,
                                      hidden_features=HiddenFeatures(7, None, None) if kind == "hidden" else None)
    return model, verifiers, clip, text_encoder


def flops_report(model: SanaSprint, verifiers: dict, clip, text_encoder, layer: int, size: int, text_tokens: int) -> dict:
    """FLOPs per candidate and per stage for the three pipelines, counted through the library's own code."""
    dev, dt = model.device, model.dtype
    emb = PromptEmbedding(PROMPT, torch.zeros(1, 300, model.transformer.config.caption_channels, device=dev, dtype=dt),
                          torch.ones(1, 300, device=dev, dtype=torch.long), model.key)
    last = model.num_layers - 1
    out: dict = {}
    t = text_tokens
    out["text_encode"] = count_flops(lambda: text_encoder(inputs_embeds=torch.zeros(1, t, text_encoder.config.hidden_size,
                                     device=dev, dtype=dt), attention_mask=torch.zeros(1, 1, t, t, device=dev, dtype=dt),
                                     position_ids=torch.arange(t, device=dev)[None]))
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
    v = verifiers

    def verify(kind: str, tokens: int, channels: int) -> float:
        """The verifier's forward as score_features runs it (inputs built, one LLM pass, answer logits only)."""
        feats = torch.zeros(1, tokens, channels, device=dev, dtype=dt)
        return count_flops(lambda: v[kind].answer_logits(v[kind].build_inputs(PROMPT, feats)))

    out["verifier_hidden"] = verify("hidden", hidden_l.tokens, v["hidden"].spec.mm_hidden_size)
    out["verifier_clip"] = verify("clip", clip_tokens, v["clip"].spec.mm_hidden_size)
    out["verifier_latent"] = verify("latent", latents.shape[-2] * latents.shape[-1], latents.shape[1])
    per = {
        "vhs": out["dit_prefix_to_l"] + out["verifier_hidden"],
        "mllm_clip": out["dit_all_blocks"] + out["dit_head_only"] + out["ae_decode"] + out["clip_tower"] + out["verifier_clip"],
        "mllm_ae": out["dit_all_blocks"] + out["dit_head_only"] + out["verifier_latent"],
    }
    winner = {"vhs": out["dit_resume_from_l"] + out["ae_decode"], "mllm_clip": 0.0, "mllm_ae": out["ae_decode"]}
    return {"stages": out, "per_candidate": per, "winner": winner,
            "layout_tokens": {"vhs": list(v["hidden"].layout(PROMPT, hidden_l.tokens)),
                              "mllm_clip": list(v["clip"].layout(PROMPT, clip_tokens))}}


def run_totals(report: dict, ns: list[int]) -> dict:
    """Whole Best-of-N run FLOPs: text encode once + N candidates + the winner's finish."""
    return {p: {n: report["stages"]["text_encode"] + n * report["per_candidate"][p] + report["winner"][p] for n in ns}
            for p in PIPELINES}


# ------------------------------------------------------------------ wall time (tiny models, or real sizes on a GPU)
def time_pipelines(model: SanaSprint, verifiers: dict, layer: int, size: int, ns: list[int], repeats: int) -> dict:
    """Measured ms of whole Best-of-N runs per pipeline and N (best of `repeats`), plus peak CUDA memory."""
    dev = model.device

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def vhs(n):
        emb = model.encode_prompt(PROMPT)
        h = model.prefix(emb, list(range(n)), layer=layer, height=size, width=size)
        s = verifiers["hidden"].score(model, h)
        model.decode(model.suffix(h.select([int(torch.argmax(s.scores))])))

    def baseline(kind):
        def run(n):
            emb = model.encode_prompt(PROMPT)
            h = model.prefix(emb, list(range(n)), layer=model.num_layers - 1, height=size, width=size)
            s = verifiers[kind].score(model, h)
            if kind == "latent":  # the CLIP path has the winner's pixels already; the AE path decodes it now
                model.decode(model.suffix(h.select([int(torch.argmax(s.scores))])))
        return run

    def vhs_reference_style(n):
        """VHS as the authors' CLI runs it: candidates one at a time, a 3-beam generate() per score, and the winner
        replayed from noise through the whole DiT (the prompt is still encoded once, to compare like with like)."""
        emb = model.encode_prompt(PROMPT)
        v, scores = verifiers["hidden"], []
        for seed in range(n):
            h = model.prefix(emb, [seed], layer=layer, height=size, width=size)
            scores.append(float(v.score_with_generate(PROMPT, v.features(model, h)).scores[0]))
        best = max(range(n), key=scores.__getitem__)
        model.decode(model.suffix(model.prefix(emb, [best], layer=model.num_layers - 1, height=size, width=size)))

    runs = {"vhs": vhs, "mllm_clip": baseline("clip"), "mllm_ae": baseline("latent"),
            "vhs_reference_style": vhs_reference_style}
    times, memory = {p: {} for p in runs}, {p: {} for p in runs}
    for p, fn in runs.items():
        fn(1)  # warm-up
        for n in ns:
            best = float("inf")
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            for _ in range(repeats):
                sync()
                t0 = time.perf_counter()
                fn(n)
                sync()
                best = min(best, (time.perf_counter() - t0) * 1e3)
            times[p][n] = best
            memory[p][n] = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {"ms": times, "peak_memory_mb": memory}


# dense bf16 tensor-core peak (TFLOP/s) by GPU name, for the share of peak reached on the candidate path
BF16_PEAK_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.4,
                    "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.2}


def bf16_peak(device_name: str) -> float | None:
    """The GPU's dense bf16 peak in TFLOP/s, or None when it is not in the table."""
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name), None)


def timing_summary(ms_by_n: dict, flops_per_candidate: dict, budgets: list[float], peak_tflops: float | None) -> dict:
    """From whole-run times at several N: the per-candidate slope and fixed part (least squares), the largest N that
    fits each budget, and the achieved TFLOP/s on the candidate path (slope vs counted FLOPs) as a share of peak."""
    out = {}
    for p, ms in ms_by_n.items():
        if p not in flops_per_candidate:
            continue
        ns = [int(n) for n in ms]
        ts = [float(ms[n]) for n in ms]
        mean_n, mean_t = sum(ns) / len(ns), sum(ts) / len(ts)
        var = sum((n - mean_n) ** 2 for n in ns)
        slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts)) / var if var else float("nan")
        fixed = mean_t - slope * mean_n
        tflops = flops_per_candidate[p] / (slope / 1e3) / 1e12 if slope > 0 else float("nan")
        out[p] = {"per_candidate_ms": slope, "fixed_ms": fixed, "achieved_tflops": tflops,
                  "share_of_peak": tflops / peak_tflops if peak_tflops else None,
                  "n_for_budget": {int(b): max(0, int((b - fixed) // slope)) if slope > 0 else None for b in budgets}}
    return out


PAPER_BEST_OF_1_MS = 200.0  # the paper's Best-of-1 row: 550 / 1100 / 1650 ms are 2.75x / 5.5x / 8.25x of it


def budget_table(costs: dict[str, CostModel], budgets: list[float]) -> list[dict]:
    """Largest N per pipeline that fits each budget, with the predicted run time."""
    return [{"budget_ms": round(b, 1), **{f"n_{p}": c.max_candidates(b) for p, c in costs.items()},
             **{f"predicted_ms_{p}": round(c.total_ms(max(c.max_candidates(b), 1)), 1) for p, c in costs.items()}}
            for b in budgets]


# ------------------------------------------------------------------ output
def resident_weights(model: SanaSprint, verifiers: dict, clip, text_encoder) -> dict:
    """MB of weights each pipeline keeps on the device (bf16, then with fp8 storage, then with the text encoder
    offloaded too); casts the given meta-device modules to fp8 storage in place."""
    parts = {"transformer": model.transformer, "dc_ae": model.pipe.vae, "text_encoder": text_encoder,
             "llm": verifiers["hidden"].llm, "connector_hidden": verifiers["hidden"].connector,
             "clip_tower": clip, "connector_clip": verifiers["clip"].connector}
    uses = {"vhs": ("transformer", "dc_ae", "text_encoder", "llm", "connector_hidden"),
            "mllm_clip": ("transformer", "dc_ae", "text_encoder", "llm", "clip_tower", "connector_clip")}
    bf16 = {k: weight_bytes(m) / 2**20 for k, m in parts.items()}
    for role in ("transformer", "text_encoder", "llm", "clip_tower"):  # what the loaders' fp8 option casts
        store_weights_in(parts[role], "fp8_e4m3fn", torch.bfloat16)
    fp8 = {k: weight_bytes(m) / 2**20 for k, m in parts.items()}
    return {p: {"bf16": sum(bf16[r] for r in roles), "fp8_storage": sum(fp8[r] for r in roles),
                "fp8_storage_text_encoder_offloaded": sum(fp8[r] for r in roles if r != "text_encoder")}
            for p, roles in uses.items()}


def timing_lines(timing: dict) -> list[str]:
    """Markdown for real-size timings: whole-run ms per N, peak memory, and the fitted summary."""
    ms, mem, summ = timing["ms"], timing["peak_memory_mb"], timing["summary"]
    storage = timing.get("weight_storage", "default")
    lines = ["", f"Measured on {timing['device']} ({timing['dtype']}{', torch.compile' if timing.get('compiled') else ''}"
                 f"{', weights stored as ' + storage if storage != 'default' else ''}"
                 f", random weights, 1024 px, l*=7):", "",
             "| N | " + " | ".join(f"{p} ms" for p in ms) + " | " + " | ".join(f"{p} peak MB" for p in PIPELINES) + " |",
             "|---" * (len(ms) + len(PIPELINES) + 1) + "|"]
    for n in ms["vhs"]:
        lines.append(f"| {n} | " + " | ".join(f"{ms[p][n]:.1f}" for p in ms) + " | "
                     + " | ".join(f"{mem[p][n]:,.0f}" if mem[p][n] is not None else "-" for p in PIPELINES) + " |")
    budgets = list(next(iter(summ.values()))["n_for_budget"])
    lines += ["", "| pipeline | ms per candidate | fixed ms | TFLOP/s on candidates | share of bf16 peak | "
                  + " | ".join(f"N in {b} ms" for b in budgets) + " |", "|---" * (5 + len(budgets)) + "|"]
    for p, r in summ.items():
        share = f"{r['share_of_peak']:.1%}" if r["share_of_peak"] is not None else "-"
        lines.append(f"| {p} | {r['per_candidate_ms']:.2f} | {r['fixed_ms']:.1f} | {r['achieved_tflops']:.0f} | {share} | "
                     + " | ".join(str(r["n_for_budget"][b]) for b in budgets) + " |")
    return lines


def write_outputs(result: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    lines = ["# Best-of-N cost: VHS vs MLLM baselines", "", f"Machine: {result['machine']}", ""]
    for name, real in result.get("real", {}).items():
        pc = real["flops"]["per_candidate"]
        lines += [f"## {name} at {real['size']} px (FLOPs on {real['flops_device']}, weights {real['dtype']})", "",
                  "| per candidate | GFLOP | vs MLLM w/ CLIP |", "|---|---|---|"]
        lines += [f"| {p} | {pc[p] / 1e9:,.1f} | {pc[p] / pc['mllm_clip']:.1%} |" for p in PIPELINES]
        lines += ["", "| whole run, N | " + " | ".join(PIPELINES) + " | VHS / CLIP |", "|---|---|---|---|---|"]
        for n, row in real["run_tflops_by_n"].items():
            lines.append(f"| {n} | " + " | ".join(f"{row[p]:.1f} TF" for p in PIPELINES) +
                         f" | {row['vhs'] / row['mllm_clip']:.2f} |")
        lines += ["", "| parameters | count | weights MB |", "|---|---|---|"]
        lines += [f"| {k} | {v:,} | {real['weights_mb'][k]:,.0f} |" for k, v in real["params"].items()]
        if "timing" in real:
            lines += timing_lines(real["timing"])
        res = real["resident_weights_mb"]
        lines += ["", "| weights resident on the device, MB | vhs | mllm_clip | VHS / CLIP |", "|---|---|---|---|"]
        for setting in res["vhs"]:
            lines.append(f"| {setting} | {res['vhs'][setting]:,.0f} | {res['mllm_clip'][setting]:,.0f} | "
                         f"{res['vhs'][setting] / res['mllm_clip'][setting]:.1%} |")
        lines.append("")
    tiny = result["tiny"]
    lines += [f"## Measured on this machine: tiny models ({tiny['device']}, {tiny['dtype']}, {tiny['size']} px)", "",
              "Tiny models on a CPU are dominated by fixed overhead and scheduling noise (best of the repeats is shown);",
              "the FLOP counts above and real-size GPU timings are the figures to compare pipelines by.", "",
              "| N | " + " | ".join(f"{p} ms" for p in PIPELINES) + " |", "|---|---|---|---|"]
    for n in tiny["timing"]["ms"]["vhs"]:
        lines.append(f"| {n} | " + " | ".join(f"{tiny['timing']['ms'][p][n]:.1f}" for p in PIPELINES) + " |")
    lines += ["", "Our VHS path (batched prefix, one batched LLM forward, the winner resumed from l*) against VHS run as "
                  "the authors' CLI runs it (one candidate at a time, a 3-beam generate() per score, the winner "
                  "replayed from noise), same models, same run:", "",
              "| N | ours ms | reference-style ms | speed-up |", "|---|---|---|---|"]
    ms = tiny["timing"]["ms"]
    lines += [f"| {n} | {ms['vhs'][n]:.1f} | {ms['vhs_reference_style'][n]:.1f} | "
              f"{ms['vhs_reference_style'][n] / ms['vhs'][n]:.2f}x |" for n in ms["vhs"]]
    lines.append("")
    for p, cost in tiny["cost_models"].items():
        lines.append(f"- cost model {p}: encode {cost['encode_ms']:.1f} ms + fixed {cost['fixed_ms']:.1f} ms + "
                     f"{cost['per_candidate_ms']:.2f} ms per candidate + winner {cost['winner_ms']:.1f} ms")
    lines += ["", f"Budgets shaped like the paper's (550 / 1100 / 1650 ms = 2.75 / 5.5 / 8.25 x Best-of-1, which here "
                  f"takes {tiny['best_of_1_ms']:.1f} ms): the largest N that fits (paper on an H100: VHS 4 / 9 / 15, "
                  f"MLLM w/ CLIP 2 / 4 / 6).", "", "| budget ms | VHS N | MLLM w/ CLIP N | MLLM w/ AE N |", "|---|---|---|---|"]
    lines += [f"| {r['budget_ms']} | {r['n_vhs']} | {r['n_mllm_clip']} | {r['n_mllm_ae']} |"
              for r in tiny["paper_shaped_budgets"]]
    lines += ["", "Absolute budgets:", "", "| budget ms | VHS N | MLLM w/ CLIP N | MLLM w/ AE N |", "|---|---|---|---|"]
    lines += [f"| {r['budget_ms']} | {r['n_vhs']} | {r['n_mllm_clip']} | {r['n_mllm_ae']} |" for r in tiny["budgets"]]
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for p in PIPELINES:
        ms = tiny["timing"]["ms"][p]
        ax.plot(list(ms), list(ms.values()), marker="o", label=p)
    ax.set_xlabel("candidates N")
    ax.set_ylabel("Best-of-N wall time (ms)")
    ax.set_title(f"tiny models, {tiny['device']} {tiny['dtype']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "candidates_vs_time.png"), dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="also count real sizes on the meta device")
    parser.add_argument("--timing", action="store_true", help="with --real on a GPU: time real sizes (random weights)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ns", default="1,2,4,8", help="candidate counts to time")
    parser.add_argument("--budgets", default="550,1100,1650")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks, decoder and LLM layers")
    parser.add_argument("--weight-storage", default="default", choices=list(STORAGE_DTYPES),
                        help="with --timing: fp8 weight storage for the DiT, Gemma-2, Qwen2 and CLIP (as the loaders)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ns = [int(x) for x in args.ns.split(",")]
    budgets = [int(x) for x in args.budgets.split(",")]
    dev = torch.device(args.device)
    dtype_name = "bf16" if dev.type == "cuda" else "fp32"
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if dev.type == "cuda":
        machine = f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}"
    result: dict = {"machine": machine, "paper": PAPER}

    if args.real:
        result["real"] = {}
        for name in SANA_CONFIGS:
            model, verifiers, clip, text_encoder = real_models(name, "meta", torch.bfloat16)
            report = flops_report(model, verifiers, clip, text_encoder, layer=7, size=1024, text_tokens=520)
            totals = run_totals(report, [1, 2, 4, 8, 9, 15])
            weights = {"transformer": params(model.transformer), "dit_blocks_0_to_7": sum(
                params(b) for b in model.transformer.transformer_blocks[:8]), "dc_ae": params(model.pipe.vae),
                "text_encoder": params(text_encoder), "qwen2.5-0.5b": params(verifiers["hidden"].llm),
                "clip_vit_l14_336": params(clip), "connector_hidden": params(verifiers["hidden"].connector)}
            result["real"][name] = {
                "size": 1024, "layer": 7, "flops_device": "meta (counted, not run)", "dtype": "bf16",
                "flops": report, "params": weights, "weights_mb": {k: v * 2 / 2**20 for k, v in weights.items()},
                "resident_weights_mb": resident_weights(model, verifiers, clip, text_encoder),
                "run_tflops_by_n": {n: {p: totals[p][n] / 1e12 for p in PIPELINES} for n in totals["vhs"]},
            }
            pc = report["per_candidate"]
            logger.info("%s: per candidate VHS %.0f GF, MLLM w/ CLIP %.0f GF (%.1f%%), MLLM w/ AE %.0f GF", name,
                        pc["vhs"] / 1e9, pc["mllm_clip"] / 1e9, 100 * pc["vhs"] / pc["mllm_clip"], pc["mllm_ae"] / 1e9)
            if args.timing and dev.type == "cuda":
                model, verifiers, clip, text_encoder = real_models(name, args.device, torch.bfloat16)
                for module in (model.transformer, text_encoder, clip, *(v.llm for v in verifiers.values())):
                    store_weights_in(module, args.weight_storage, torch.bfloat16)
                if args.compile:
                    model.compile()
                    for v in verifiers.values():
                        v.compile()
                timing = time_pipelines(model, verifiers, 7, 1024, ns, args.repeats)
                summary = timing_summary(timing["ms"], report["per_candidate"], budgets,
                                         bf16_peak(torch.cuda.get_device_name(dev)))
                result["real"][name]["timing"] = {"device": machine, "dtype": "bf16", "compiled": args.compile,
                                                  "weight_storage": args.weight_storage,
                                                  **timing, "summary": summary}
                del model, verifiers, clip, text_encoder
                torch.cuda.empty_cache()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = build_tiny_bundle(tmp)
        model = SanaSprint.from_pretrained(paths["sana"], dtype=dtype_name, device=dev)
        verifiers = {k: VHSVerifier.from_pretrained(paths[k], dtype=dtype_name, device=dev)
                     for k in ("hidden", "clip", "latent")}
        report = flops_report(model, verifiers, verifiers["clip"].clip.model, model.pipe.text_encoder,
                              layer=TINY_LAYER, size=TINY_RESOLUTION, text_tokens=64)
        timing = time_pipelines(model, verifiers, TINY_LAYER, TINY_RESOLUTION, ns, args.repeats)
        last = model.num_layers - 1
        costs = {p: measure_costs(model, verifiers[k], PROMPT, layer, TINY_RESOLUTION, TINY_RESOLUTION,
                                  repeats=args.repeats)
                 for p, k, layer in (("vhs", "hidden", TINY_LAYER), ("mllm_clip", "clip", last), ("mllm_ae", "latent", last))}
        b1 = best_of_1_ms(model, PROMPT, TINY_RESOLUTION, TINY_RESOLUTION, args.repeats)
    scaled = [b1 * b / PAPER_BEST_OF_1_MS for b in PAPER["budgets_ms"]]
    result["tiny"] = {"device": str(dev), "dtype": dtype_name, "size": TINY_RESOLUTION, "layer": TINY_LAYER,
                      "flops_per_candidate": report["per_candidate"], "timing": timing,
                      "cost_models": {p: c.to_dict() for p, c in costs.items()}, "best_of_1_ms": b1,
                      "budgets": budget_table(costs, budgets), "paper_shaped_budgets": budget_table(costs, scaled)}
    write_outputs(result, args.out)
    logger.info("wrote %s/{results.json,results.md,candidates_vs_time.png}", args.out)
    return result


if __name__ == "__main__":
    main()
