"""The Best-of-N nodes: sample candidates to block l*, score them, select, and finish only the winner(s)."""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch

from ..models import HiddenStates, InputError, Scores, candidate_seeds, select_top_k
from ..models.sana_sprint import DEFAULT_GUIDANCE, DEFAULT_INTERMEDIATE_TIMESTEP, DEFAULT_MAX_TIMESTEP, MAX_STEPS
from ..models.verifier import SCORE_MODES
from . import comfy

logger = logging.getLogger(__name__)

MAX_N = 64
MAX_LAYER = 63
_SCORE_MODE_TIP = ("reference: as the authors' code, P(yes) when the verifier answers yes, else -P(no). "
                   "normalized: P(yes) / (P(yes) + P(no)).")


def _expect(value, cls, what: str):
    """A clear error when an edge carries the wrong kind of object (e.g. a custom node's look-alike type)."""
    if not isinstance(value, cls):
        raise InputError(f"{what} expects {cls.__name__}, got {type(value).__name__}; check the connection")
    return value


class SanaSprintHiddenSampler:
    """Generate N candidates of one prompt up to DiT block l* (the prompt is encoded once)."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("VHS_HIDDEN",)
    RETURN_NAMES = ("hidden",)
    OUTPUT_TOOLTIPS = ("N candidates stopped after block l*, with what is needed to finish any of them.",)
    FUNCTION = "sample"
    DESCRIPTION = ("Runs SANA-Sprint for N seeds only up to DiT block l*. The blocks after l*, the output head and "
                   "the AE decode run later, for the selected candidate(s) only.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SANA_SPRINT", {"tooltip": "From SANA-Sprint Loader."}),
            "prompt": ("STRING", {"multiline": True, "default": "a photo of a red apple left of a blue cup",
                                  "tooltip": "The text prompt (at most 298 Gemma tokens)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Candidate i uses seed + i, so any candidate can be re-made alone."}),
            "candidates": ("INT", {"default": 4, "min": 1, "max": MAX_N,
                                   "tooltip": "N, the number of candidates for Best-of-N."}),
            "layer": ("INT", {"default": 7, "min": 0, "max": MAX_LAYER,
                              "tooltip": "l*, the last DiT block the candidates run (7 for the released verifier; "
                                         "SANA-Sprint 1.6B has blocks 0..19)."}),
            "width": ("INT", {"default": 1024, "min": 32, "max": 4096, "step": 32,
                              "tooltip": "Image width in pixels (multiple of 32; SANA-Sprint is trained at 1024)."}),
            "height": ("INT", {"default": 1024, "min": 32, "max": 4096, "step": 32,
                               "tooltip": "Image height in pixels (multiple of 32)."}),
            "steps": ("INT", {"default": 1, "min": 1, "max": MAX_STEPS,
                              "tooltip": "Sampling steps. Earlier steps run the whole DiT; the last one is split."}),
            "guidance": ("FLOAT", {"default": DEFAULT_GUIDANCE, "min": 0.0, "max": 20.0, "step": 0.1,
                                   "tooltip": "Embedded guidance scale (SANA-Sprint's default 4.5)."}),
            "max_timestep": ("FLOAT", {"default": DEFAULT_MAX_TIMESTEP, "min": 0.1, "max": 1.5708, "step": 0.0001,
                                       "tooltip": "TrigFlow start time (pi/2 = pure noise)."}),
            "intermediate_timestep": ("FLOAT", {"default": DEFAULT_INTERMEDIATE_TIMESTEP, "min": 0.0, "max": 1.5708,
                                                "step": 0.01, "tooltip": "Middle time of a 2-step schedule (ignored "
                                                                         "at other step counts)."}),
        }}

    def sample(self, model, prompt, seed, candidates, layer, width, height, steps, guidance, max_timestep,
               intermediate_timestep):
        seeds = candidate_seeds(seed, candidates)
        layer = int(layer)
        demo = getattr(model, "demo", None)
        if demo and (width, height, layer) != (demo["width"], demo["height"], demo["layer"]):
            logger.warning("the embedded ShapeWorld demo model runs at %dx%d px with l*=%d (asked: %dx%d, l*=%d)",
                           demo["width"], demo["height"], demo["layer"], width, height, layer)
            width, height, layer = demo["width"], demo["height"], demo["layer"]
        total = (steps - 1) * model.num_layers + layer + 1
        emb = encode_prompt_cached(model, prompt)
        comfy.use(model, "transformer", memory_required=model.activation_bytes(len(seeds), height, width))
        hidden = model.prefix(emb, seeds, layer=layer, height=height, width=width, steps=steps, guidance=guidance,
                              max_timestep=max_timestep, intermediate_timestep=intermediate_timestep,
                              callback=comfy.progress(total))
        return (hidden,)


PROMPT_CACHE_SIZE = 8


def encode_prompt_cached(model, prompt: str):
    """The prompt's embedding, encoded once per model: a new seed, N or layer re-uses it without loading Gemma-2
    again (which matters most with 'offload after encoding')."""
    cache = model.__dict__.setdefault("_vhs_prompt_cache", OrderedDict())
    if prompt in cache:
        cache.move_to_end(prompt)
        return cache[prompt]
    comfy.use(model, "text_encoder")
    emb = model.encode_prompt(prompt)
    if getattr(model, "release_text_encoder", False):
        comfy.release(model, "text_encoder")
    cache[prompt] = emb
    while len(cache) > PROMPT_CACHE_SIZE:
        cache.popitem(last=False)
    return emb


def _score_report(scores: Scores) -> str:
    return ", ".join(f"#{i}: {float(s):+.4f}" for i, s in zip(scores.indices, scores.scores))


class VHSVerifierNode:
    """Score every candidate from its hidden state h_l* in one batched LLM pass (no decoding)."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("VHS_SCORES", "STRING")
    RETURN_NAMES = ("scores", "report")
    OUTPUT_TOOLTIPS = ("One score per candidate (higher is better).", "The scores as text.")
    FUNCTION = "score"
    DESCRIPTION = "Scores each candidate's DiT hidden state with the VHS verifier: does the image match the prompt?"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "verifier": ("VHS_VERIFIER", {"tooltip": "From VHS Verifier Loader."}),
            "hidden": ("VHS_HIDDEN", {"tooltip": "From SANA-Sprint Hidden-State Sampler (its layer must match the "
                                                 "verifier's block)."}),
            "score_mode": (list(SCORE_MODES), {"default": "reference", "tooltip": _SCORE_MODE_TIP}),
        }}

    def score(self, verifier, hidden, score_mode):
        hidden = _expect(hidden, HiddenStates, "VHS Verifier")
        comfy.check_interrupt()
        comfy.use(verifier, "llm", "connector", memory_required=verifier.activation_bytes(hidden))
        scores = verifier.score(None, hidden, mode=score_mode)
        return {"ui": {"text": [_score_report(scores)]}, "result": (scores, _score_report(scores))}


class _MLLMVerifierBase:
    """Baseline verifiers finish every candidate (all blocks + head), then score in pixel or AE-latent space."""

    CATEGORY = "VHS/baselines"
    RETURN_TYPES = ("VHS_SCORES", "STRING")
    RETURN_NAMES = ("scores", "report")
    OUTPUT_TOOLTIPS = ("One score per candidate (higher is better).", "The scores as text.")
    FUNCTION = "score"
    KIND = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SANA_SPRINT", {"tooltip": "The SANA-Sprint model that made the candidates (to finish them)."}),
            "verifier": ("MLLM_VERIFIER", {"tooltip": "From MLLM Verifier Loader."}),
            "hidden": ("VHS_HIDDEN", {"tooltip": "From SANA-Sprint Hidden-State Sampler, or the top-k winners of a "
                                                 "VHS Best-of-N Select to re-rank only those (a cascade)."}),
            "score_mode": (list(SCORE_MODES), {"default": "reference", "tooltip": _SCORE_MODE_TIP}),
        }}

    def score(self, model, verifier, hidden, score_mode):
        hidden = _expect(hidden, HiddenStates, self.DISPLAY)
        if verifier.kind != self.KIND:
            raise InputError(f"{self.DISPLAY} needs a {self.KIND} verifier, got a {verifier.kind} one")
        callback = comfy.progress(model.num_layers - hidden.layer - 1)
        need = verifier.activation_bytes(hidden) + (model.finish_bytes(hidden) if self.KIND == "clip" else
                                                     model.activation_bytes(len(hidden), hidden.height, hidden.width))
        comfy.use(model, "transformer", "vae", memory_required=need,
                  also=((verifier, ("llm", "connector", "vision_tower")),))
        scores = verifier.score(model, hidden, mode=score_mode, callback=callback)
        return {"ui": {"text": [_score_report(scores)]}, "result": (scores, _score_report(scores))}


class MLLMVerifierCLIP(_MLLMVerifierBase):
    """MLLM w/ CLIP: finish and decode every candidate, encode with CLIP, score with the LLM."""

    DISPLAY = "MLLM Verifier (CLIP)"
    KIND = "clip"
    DESCRIPTION = "Pixel-space baseline: decodes all N candidates and scores them through a CLIP tower + LLM."


class MLLMVerifierAE(_MLLMVerifierBase):
    """MLLM w/ AE: finish every candidate, score its final DC-AE latent with the LLM (no decode)."""

    DISPLAY = "MLLM Verifier (AE latent)"
    KIND = "latent"
    DESCRIPTION = "Latent baseline: finishes all N candidates and scores their final AE latents + LLM."


class BestOfNSelect:
    """Keep the top-k candidates by score; they stay hidden states until Decode Winner finishes them."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("VHS_HIDDEN", "STRING", "INT", "LATENT")
    RETURN_NAMES = ("winners", "report", "winner_index", "latent")
    OUTPUT_TOOLTIPS = ("The k best candidates, best first.", "Ranking with scores and seeds.",
                       "Index (0-based) of the best candidate among the N.",
                       "The winners' final latents, without any decode (needs the optional model input).")
    FUNCTION = "select"
    DESCRIPTION = ("Best-of-N: keeps the k best-scored candidates (best first) without decoding anything. "
                   "Set override_index to pick a candidate yourself; Decode Winner resumes it exactly.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "hidden": ("VHS_HIDDEN", {"tooltip": "The N candidates."}),
            "scores": ("VHS_SCORES", {"tooltip": "Their scores, from a verifier node."}),
            "k": ("INT", {"default": 1, "min": 1, "max": MAX_N, "tooltip": "How many of the best to keep."}),
        }, "optional": {
            "override_index": ("INT", {"default": -1, "min": -1, "max": MAX_N - 1,
                                       "tooltip": "-1: the verifier's choice. Otherwise the candidate index you "
                                                  "want first (see the ranking); the rest follow by score."}),
            "model": ("SANA_SPRINT", {"tooltip": "Connect to get the winners' latents (finishes the DiT, no decode)."}),
        }}

    def select(self, hidden, scores, k, override_index=-1, model=None):
        hidden = _expect(hidden, HiddenStates, "Best-of-N Select")
        scores = _expect(scores, Scores, "Best-of-N Select")
        override = None if override_index is None or override_index < 0 else int(override_index)
        winners, indices, values = select_top_k(hidden, scores, k=int(k), override=override)
        if model is not None:
            need = model.activation_bytes(len(winners), winners.height, winners.width)
            comfy.use(model, "transformer", memory_required=need)
        latent = {"samples": model.suffix(winners).cpu()} if model is not None else {"samples": torch.zeros(0)}
        extras = winners.extras
        stage = (f"cascade, {extras['pruned_to']} kept by {hidden.extras['verifier']}, re-ranked by {scores.verifier}"
                 if "pruned_to" in extras else scores.verifier)
        lines = [f"Best-of-{extras['n_candidates']} ({stage}, {scores.mode} scores)"
                 + (f", candidate #{override} chosen by hand:" if override is not None else ":")]
        for rank, (i, v, s) in enumerate(zip(indices, values, winners.seeds), start=1):
            lines.append(f"{rank}. candidate #{i} seed {s} score {v:+.4f}")
        others = [i for i in scores.ranking() if hidden.indices[i] not in indices]
        if others:
            lines.append("then: " + ", ".join(f"#{scores.indices[i]} {float(scores.scores[i]):+.4f}" for i in others))
        report = "\n".join(lines)
        return {"ui": {"text": [report]}, "result": (winners, report, int(indices[0]), latent)}


class DecodeWinner:
    """Finish the selected candidate(s): blocks l*+1.., output head, SCM update, DC-AE decode."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("image", "latent")
    OUTPUT_TOOLTIPS = ("The finished image(s), best first.", "Their final SANA-Sprint latents (32 channels).")
    FUNCTION = "decode"
    DESCRIPTION = "Resumes only the selected candidates from block l*+1 and decodes them to pixels."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SANA_SPRINT", {"tooltip": "The same SANA-Sprint model that made the candidates."}),
            "hidden": ("VHS_HIDDEN", {"tooltip": "Usually the winners of Best-of-N Select."}),
        }}

    def decode(self, model, hidden):
        hidden = _expect(hidden, HiddenStates, "Decode Winner")
        comfy.use(model, "transformer", "vae", memory_required=model.finish_bytes(hidden))
        latents = model.suffix(hidden, callback=comfy.progress(model.num_layers - hidden.layer - 1))
        comfy.check_interrupt()
        images = model.decode(latents)  # [k, 3, H, W] in 0..1
        return (image_batch(images), {"samples": latents.cpu()})


def image_batch(images: torch.Tensor) -> torch.Tensor:
    """[k, 3, H, W] -> ComfyUI's IMAGE layout [k, H, W, 3] float32 0..1."""
    return images.permute(0, 2, 3, 1).contiguous().float().cpu()
