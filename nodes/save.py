"""Save Image with Best-of-N Scores: Save Image plus what chose the picture (score, rank, N, seed, l*, verifier) in PNG text."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io, ui

from ..models import HiddenStates, InputError
from . import host
from .edges import CATEGORY, Hidden, expect_hidden


def vhs_metadata(winners: HiddenStates, i: int) -> dict[str, str]:
    """The vhs_* text chunks of the i-th winner: what actually ran and how it was chosen."""
    sel = winners.selection
    return {"vhs_score": f"{float(winners.scores[i]):.6f}" if winners.scores is not None else "",
            "vhs_rank": str(sel.ranks[i] if sel else i + 1),
            "vhs_n": str(sel.n_candidates if sel else len(winners)), "vhs_seed": str(winners.seeds[i]),
            "vhs_candidate": str(winners.indices[i]), "vhs_layer": str(winners.layer),
            "vhs_width": str(winners.width), "vhs_height": str(winners.height), "vhs_steps": str(winners.steps),
            "vhs_verifier": sel.verifier if sel else "", "vhs_score_mode": sel.score_mode if sel else "",
            "vhs_budget_ms": f"{sel.budget_ms:.0f}" if sel and sel.budget_ms is not None else "",
            "vhs_prompt": winners.prompt}


def png_info(node: type[io.ComfyNode], vhs: dict[str, str]):
    """ComfyUI's own chunks (prompt, workflow, ...) exactly as Save Image writes them, then the vhs_* chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = ui.ImageSaveHelper._create_png_metadata(node) or PngInfo()
    for key, value in vhs.items():
        info.add_text(key, value)
    return info


class SaveImageWithScores(io.ComfyNode):
    """Save images with the VHS score, rank, N, seed, l*, size, verifier and budget in PNG text chunks."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VHSSaveImageWithScores",
            display_name="Save Image with Best-of-N Scores",
            category=CATEGORY,
            description="Like Save Image, plus vhs_* PNG text chunks (score, rank, N, seed, layer, size, verifier, "
                        "budget) next to ComfyUI's own prompt and workflow chunks, which are kept untouched.",
            inputs=[
                io.Image.Input("images", tooltip="From Decode Winner."),
                Hidden.Input("winners", tooltip="The same winners Decode Winner finished (from Best-of-N Select)."),
                io.String.Input("filename_prefix", default="VHS/best", tooltip="As in Save Image."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, winners, filename_prefix: str) -> io.NodeOutput:
        winners = expect_hidden(winners, "Save Image with Best-of-N Scores")
        if images.shape[0] != len(winners):
            raise InputError(f"{images.shape[0]} images for {len(winners)} winners: connect the same winners")
        from PIL import Image

        results = []
        for i, image in enumerate(images):
            path, filename, subfolder = host.next_output_path(filename_prefix, image.shape[1], image.shape[0])
            pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            tmp = path + ".partial"
            Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=png_info(cls, vhs_metadata(winners, i)),
                                         compress_level=4)
            os.replace(tmp, path)
            results.append(ui.SavedResult(filename, subfolder, io.FolderType.output))
        return io.NodeOutput(ui=ui.SavedImages(results))
