"""Beyond the paper: Best-of-N in a time budget, a preview of every candidate, scores saved into the PNG."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import torch

from ..models import HiddenStates, InputError, Scores, select_top_k
from ..models.budget import measure_costs
from ..models.io import to_uint8
from ..models.search import best_of_n_within_budget
from ..models.verifier import SCORE_MODES, check_scores_match
from . import comfy
from .vhs_nodes import MAX_LAYER, MAX_N, _expect, _score_report

logger = logging.getLogger(__name__)
_COSTS: dict[tuple, object] = {}  # measured costs per model / verifier / resolution / layer / device


def measured_costs(model, verifier, prompt: str, layer: int, height: int, width: int, remeasure: bool):
    """Costs of one candidate, its verification and the winner's finish on this device, measured once and cached."""
    key = (model.key, verifier.name, id(verifier), height, width, layer, str(model.device))
    if remeasure or key not in _COSTS:
        _COSTS[key] = measure_costs(model, verifier, prompt, layer, height, width)
        logger.info("measured Best-of-N costs: %s", _COSTS[key])
    return _COSTS[key]


class BestOfNTimeBudget:
    """Generate, score and select within a time budget: N is the largest that fits, measured on this machine."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("VHS_HIDDEN", "VHS_HIDDEN", "VHS_SCORES", "STRING", "INT")
    RETURN_NAMES = ("winner", "candidates", "scores", "report", "n")
    OUTPUT_TOOLTIPS = ("The best candidate (finish it with Decode Winner).", "Every candidate generated.",
                       "Their scores.", "N chosen, time spent, ranking.", "How many candidates were generated.")
    FUNCTION = "run"
    DESCRIPTION = ("VHS Best-of-N with a budget in milliseconds instead of N: the costs of a candidate, its "
                   "verification and the winner's finish are measured on your device (once per model, size and "
                   "layer), and N is the largest that fits. Optional anytime stop at a score threshold.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SANA_SPRINT", {"tooltip": "From SANA-Sprint Loader."}),
            "verifier": ("VHS_VERIFIER", {"tooltip": "From VHS Verifier Loader."}),
            "prompt": ("STRING", {"multiline": True, "default": "a photo of a red apple left of a blue cup",
                                  "tooltip": "The text prompt."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Candidate i uses seed + i."}),
            "budget_ms": ("INT", {"default": 1100, "min": 10, "max": 600000, "step": 10,
                                  "tooltip": "Wall-clock budget for the whole Best-of-N, winner's finish included "
                                             "(the paper's setups: 550, 1100, 1650 ms on an H100)."}),
            "layer": ("INT", {"default": 7, "min": 0, "max": MAX_LAYER, "tooltip": "l*: must match the verifier."}),
            "width": ("INT", {"default": 1024, "min": 32, "max": 4096, "step": 32, "tooltip": "Image width (px)."}),
            "height": ("INT", {"default": 1024, "min": 32, "max": 4096, "step": 32, "tooltip": "Image height (px)."}),
            "max_candidates": ("INT", {"default": MAX_N, "min": 1, "max": MAX_N,
                                       "tooltip": "Never generate more than this many, whatever the budget."}),
            "threshold": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Anytime stop: 0 = off. Otherwise stop generating further batches "
                                               "once a candidate scores at least this."}),
            "score_mode": (list(SCORE_MODES), {"default": "normalized",
                                               "tooltip": "normalized: P(yes)/(P(yes)+P(no)), best for thresholds."}),
            "remeasure": ("BOOLEAN", {"default": False, "tooltip": "Measure the costs again (after changing GPU load)."}),
        }}

    def run(self, model, verifier, prompt, seed, budget_ms, layer, width, height, max_candidates, threshold,
            score_mode, remeasure):
        demo = getattr(model, "demo", None)
        if demo:
            width, height, layer = demo["width"], demo["height"], demo["layer"]
        # the largest batch the budget may run (the plan is only known after measuring)
        need = model.activation_bytes(max_candidates, height, width) + model.decode_bytes(1, height, width)
        comfy.use(model, "text_encoder", "transformer", "vae", memory_required=need,
                  also=((verifier, ("llm", "connector")),))
        cost = measured_costs(model, verifier, prompt, layer, height, width, remeasure)
        run = best_of_n_within_budget(model, verifier, prompt, seed, float(budget_ms), cost, layer, height, width,
                                      threshold=threshold or None, max_n=max_candidates, mode=score_mode,
                                      callback=lambda d, t: comfy.check_interrupt())
        if getattr(model, "release_text_encoder", False):
            comfy.release(model, "text_encoder")
        winner, indices, values = select_top_k(run.hidden, run.scores, k=1)
        report = (f"budget {budget_ms} ms: planned N={run.planned_n}, generated {run.generated}"
                  + (" (stopped at the threshold)" if run.stopped_early else "")
                  + f"; candidates + scoring took {run.elapsed_ms:.0f} ms, the winner's finish is predicted at "
                  f"{cost.winner_ms:.0f} ms\nwinner #{indices[0]} (seed {winner.seeds[0]}) score {values[0]:+.4f}\n"
                  + _score_report(run.scores))
        winner = dataclasses.replace(winner, extras={**winner.extras, "budget_ms": int(budget_ms)})
        return {"ui": {"text": [report]}, "result": (winner, run.hidden, run.scores, report, run.generated)}


def _label(image: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, im.width, 12], fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))
    return np.asarray(im)


class CandidatePreview:
    """See all N candidates with their rank and score: free hidden-state maps, or small decodes when asked."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("previews",)
    OUTPUT_TOOLTIPS = ("One labelled preview per candidate, best first (connect a Preview Image node).",)
    FUNCTION = "preview"
    DESCRIPTION = ("Previews every candidate with its rank and score. 'hidden map' costs nothing (the first three "
                   "principal components of h_l* on the token grid); 'decode' finishes and decodes every candidate.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "hidden": ("VHS_HIDDEN", {"tooltip": "The N candidates."}),
            "scores": ("VHS_SCORES", {"tooltip": "Their scores."}),
            "mode": (["hidden map", "decode"], {"default": "hidden map",
                                                "tooltip": "hidden map: free; decode: runs the rest of the DiT and the "
                                                           "AE for every candidate (what VHS normally avoids)."}),
            "size": ("INT", {"default": 192, "min": 64, "max": 1024, "step": 32, "tooltip": "Preview side in px."}),
        }, "optional": {"model": ("SANA_SPRINT", {"tooltip": "Needed for 'decode'."})}}

    def preview(self, hidden, scores, mode, size, model=None):
        hidden = _expect(hidden, HiddenStates, "Candidate Preview")
        scores = _expect(scores, Scores, "Candidate Preview")
        check_scores_match(hidden, scores)
        order = scores.ranking()
        if mode == "decode":
            if model is None:
                raise InputError("'decode' previews need the SANA-Sprint model connected")
            comfy.use(model, "transformer", "vae", memory_required=model.finish_bytes(hidden))
            images = model.decode(model.suffix(hidden))
        else:
            images = hidden_maps(hidden)
        images = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="nearest")
        out = []
        for rank, i in enumerate(order, start=1):
            arr = to_uint8(images[i])
            out.append(_label(arr, f"#{hidden.indices[i]} rank {rank} {float(scores.scores[i]):+.3f}"))
        return (torch.from_numpy(np.stack(out)).float() / 255,)


def hidden_maps(hidden: HiddenStates) -> torch.Tensor:
    """[N, 3, gh, gw] in 0..1: the first three principal components of h_l* (shared basis across candidates)."""
    h = hidden.hidden.float()
    n, t, c = h.shape
    flat = h.reshape(-1, c)
    flat = flat - flat.mean(0)
    _, _, v = torch.pca_lowrank(flat, q=3, center=False)
    proj = (flat @ v[:, :3]).reshape(n, t, 3)
    lo, hi = proj.amin(dim=(0, 1)), proj.amax(dim=(0, 1))
    proj = (proj - lo) / (hi - lo).clamp_min(1e-6)
    return proj.transpose(1, 2).reshape(n, 3, *hidden.grid)


class SaveImageWithScores:
    """Save images with the VHS score, rank, N, seed, l*, verifier and budget in PNG text chunks."""

    CATEGORY = "VHS"
    RETURN_TYPES = ()
    RETURN_NAMES = ()
    OUTPUT_TOOLTIPS = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = ("Like Save Image, plus vhs_* PNG text chunks (score, rank, N, seed, layer, verifier, budget) "
                   "next to ComfyUI's own prompt and workflow chunks, which are kept untouched.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "From Decode Winner."}),
            "winners": ("VHS_HIDDEN", {"tooltip": "The same winners Decode Winner finished (from Best-of-N Select)."}),
            "filename_prefix": ("STRING", {"default": "VHS/best", "tooltip": "As in Save Image."}),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, images, winners, filename_prefix, prompt=None, extra_pnginfo=None):
        winners = _expect(winners, HiddenStates, "Save Image (VHS scores)")
        if images.shape[0] != len(winners):
            raise InputError(f"{images.shape[0]} images for {len(winners)} winners: connect the same winners")
        out_dir = comfy.output_directory()
        results = []
        for i, image in enumerate(images):
            info = vhs_metadata(winners, i)
            path = comfy.next_output_path(out_dir, filename_prefix, image.shape[1], image.shape[0])
            write_png(path, (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(), info, prompt, extra_pnginfo)
            results.append({"filename": os.path.basename(path), "subfolder": os.path.relpath(os.path.dirname(path), out_dir),
                            "type": "output"})
        return {"ui": {"images": results}}


def vhs_metadata(winners: HiddenStates, i: int) -> dict[str, str]:
    extras = winners.extras or {}
    data = {"vhs_score": f"{float(winners.scores[i]):.6f}" if winners.scores is not None else "",
            "vhs_rank": str(extras.get("ranks", [i + 1] * len(winners))[i]),
            "vhs_n": str(extras.get("n_candidates", len(winners))), "vhs_seed": str(winners.seeds[i]),
            "vhs_candidate": str(winners.indices[i]), "vhs_layer": str(winners.layer),
            "vhs_verifier": str(extras.get("verifier", "")), "vhs_score_mode": str(extras.get("score_mode", "")),
            "vhs_budget_ms": str(extras.get("budget_ms", "")), "vhs_prompt": winners.prompt}
    return data


def write_png(path: str, pixels: np.ndarray, vhs: dict[str, str], prompt=None, extra_pnginfo=None) -> None:
    """PNG with ComfyUI's own chunks (prompt, workflow, ...) as Save Image writes them, plus the vhs_* chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    for key, value in vhs.items():
        info.add_text(key, value)
    tmp = path + ".partial"
    Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=info, compress_level=4)
    os.replace(tmp, path)
