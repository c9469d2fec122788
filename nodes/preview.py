"""Best-of-N Candidate Preview: every candidate with its rank and score, free from h_l* or decoded when asked."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io

from ..models import InputError, check_scores_match
from ..models.io import to_uint8
from ..models.preview import hidden_state_maps
from . import host
from .edges import CATEGORY, CandidateScores, Hidden, SanaSprintModel, expect_hidden, expect_model, expect_scores


def label(image: np.ndarray, text: str) -> np.ndarray:
    """A caption strip on top of an [H, W, 3] uint8 picture."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, im.width, 12], fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))
    return np.asarray(im)


class CandidatePreview(io.ComfyNode):
    """See all N candidates with their rank and score: free hidden-state maps, or small decodes when asked."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VHSCandidatePreview",
            display_name="Best-of-N Candidate Preview",
            category=CATEGORY,
            description="Previews every candidate with its rank and score. 'hidden map' costs nothing (the first three "
                        "principal components of h_l* on the token grid); 'decode' finishes and decodes every "
                        "candidate.",
            inputs=[
                Hidden.Input("hidden", tooltip="The N candidates."),
                CandidateScores.Input("scores", tooltip="Their scores."),
                io.Combo.Input("mode", options=["hidden map", "decode"], default="hidden map",
                               tooltip="hidden map: free; decode: runs the rest of the DiT and the AE for every "
                                       "candidate (what VHS normally avoids)."),
                io.Int.Input("size", default=192, min=64, max=1024, step=32, tooltip="Preview side in px."),
                SanaSprintModel.Input("model", optional=True, tooltip="Needed for 'decode'."),
            ],
            outputs=[io.Image.Output("previews", display_name="previews",
                                     tooltip="One labelled preview per candidate, best first (connect a Preview "
                                             "Image node).")],
        )

    @classmethod
    def execute(cls, hidden, scores, mode: str, size: int, model=None) -> io.NodeOutput:
        hidden = expect_hidden(hidden, "Candidate Preview")
        scores = expect_scores(scores, "Candidate Preview")
        check_scores_match(hidden, scores)
        if mode == "decode":
            if model is None:
                raise InputError("'decode' previews need the SANA-Sprint model connected")
            handle = expect_model(model, "Candidate Preview (model)")
            host.load(handle.parts("transformer", "vae"), handle.model.finish_bytes(hidden))
            images = handle.model.decode(handle.model.suffix(hidden))
        else:
            images = hidden_state_maps(hidden)
        images = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="nearest")
        out = [label(to_uint8(images[i]), f"#{hidden.indices[i]} rank {rank} {float(scores.scores[i]):+.3f}")
               for rank, i in enumerate(scores.ranking(), start=1)]
        return io.NodeOutput(torch.from_numpy(np.stack(out)).float() / 255)
