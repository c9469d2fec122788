"""FLOPs of a Best-of-N run, counted with torch's FlopCounterMode through the library's own calls (the ones the nodes
make: SanaSprint.prefix/suffix/decode, VHSVerifier.build_inputs/answer_logits). Load-independent costs: the same on
any machine, and on the meta device nothing runs, so real sizes count on any CPU."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch.utils.flop_counter import FlopCounterMode

from .sana_sprint import PromptEmbedding, SanaSprint
from .verifier import VHSVerifier

PIPELINES = ("vhs", "mllm_clip", "mllm_ae")  # VHS on h_l*, and the pixel-space baselines on CLIP features / AE latents
KIND_OF = {"vhs": "hidden", "mllm_clip": "clip", "mllm_ae": "latent"}


def count_flops(fn: Callable[[], object]) -> float:
    """Total FLOPs of one call (matmuls and convolutions, as FlopCounterMode counts them)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def pipeline_flops(model: SanaSprint, verifiers: Mapping[str, VHSVerifier], prompt: str, layer: int, height: int,
                   width: int) -> dict:
    """FLOPs per stage, per candidate and for the winner's finish, of VHS (verifiers["hidden"], reading block
    `layer`), MLLM w/ CLIP (verifiers["clip"], with its vision tower) and MLLM w/ AE (verifiers["latent"]).

    Per candidate: VHS runs blocks 0..l* and the verifier; the baselines run the whole DiT (and CLIP also the decode
    and the tower) before theirs. Winner: VHS resumes blocks l*+1.. and decodes; AE decodes; CLIP has the pixels.
    The prompt's encoding is counted once, at the length the text encoder reads (SanaSprint.text_tokens())."""
    v = verifiers
    dev, dt = model.device, model.dtype
    text_encoder = model.pipe.text_encoder
    t = model.text_tokens()
    emb = PromptEmbedding(prompt, torch.zeros(1, 300, model.transformer.config.caption_channels, device=dev, dtype=dt),
                          torch.ones(1, 300, device=dev, dtype=torch.long), model.key)
    last = model.num_layers - 1
    out: dict[str, float] = {}
    out["text_encode"] = count_flops(lambda: text_encoder(
        inputs_embeds=torch.zeros(1, t, text_encoder.config.hidden_size, device=dev, dtype=dt),
        attention_mask=torch.zeros(1, 1, t, t, device=dev, dtype=dt), position_ids=torch.arange(t, device=dev)[None]))
    out["dit_prefix_to_l"] = count_flops(lambda: model.prefix(emb, [0], layer=layer, height=height, width=width))
    out["dit_all_blocks"] = count_flops(lambda: model.prefix(emb, [0], layer=last, height=height, width=width))
    hidden_l = model.prefix(emb, [0], layer=layer, height=height, width=width)
    hidden_last = model.prefix(emb, [0], layer=last, height=height, width=width)
    out["dit_resume_from_l"] = count_flops(lambda: model.suffix(hidden_l))
    out["dit_head_only"] = count_flops(lambda: model.suffix(hidden_last))
    latents = model.suffix(hidden_last)
    out["ae_decode"] = count_flops(lambda: model.decode(latents))
    clip = v["clip"].clip.model
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
    best_of_1 = out["text_encode"] + out["dit_all_blocks"] + out["dit_head_only"] + out["ae_decode"]
    return {"stages": out, "per_candidate": per, "winner": winner, "best_of_1": best_of_1, "text_tokens": t,
            "layout_tokens": {"vhs": list(v["hidden"].layout(prompt, hidden_l.tokens)),
                              "mllm_clip": list(v["clip"].layout(prompt, clip_tokens))}}


def run_flops(report: dict, pipeline: str, n: int) -> float:
    """A whole Best-of-n run: the prompt encoded once, n candidates, the winner's finish."""
    return report["stages"]["text_encode"] + n * report["per_candidate"][pipeline] + report["winner"][pipeline]


def max_candidates_in(report: dict, pipeline: str, budget_flops: float, cap: int) -> int:
    """The largest N (at most `cap`) whose whole run fits in `budget_flops` (0 when not even one does)."""
    per = report["per_candidate"][pipeline]
    fixed = report["stages"]["text_encode"] + report["winner"][pipeline]
    return max(0, min(cap, int((budget_flops - fixed) // per)))
