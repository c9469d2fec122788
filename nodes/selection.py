"""Best-of-N Select keeps the winners as hidden states; Decode Winner finishes only those and decodes them."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..models import HiddenStates, Scores, select_top_k
from . import host
from .edges import CATEGORY, CandidateScores, Hidden, SanaSprintModel, expect_hidden, expect_model, expect_scores
from .sampling import MAX_N


def ranking_report(hidden: HiddenStates, scores: Scores, winners: HiddenStates, indices: list[int],
                   values: list[float]) -> str:
    """Best-of-N as text: what ran, who won with which seed and score, and the rest by score."""
    sel = winners.selection
    stage = (f"cascade, {sel.pruned_to} kept by {hidden.selection.verifier}, re-ranked by {scores.verifier}"
             if sel.pruned_to else scores.verifier)
    head = (f"Best-of-{sel.n_candidates} ({stage}, {scores.mode} scores) at {hidden.width}x{hidden.height} px, "
            f"l*={hidden.layer}")
    lines = [head + (f", candidate #{sel.override} chosen by hand:" if sel.override is not None else ":")]
    for rank, (i, v, s) in enumerate(zip(indices, values, winners.seeds), start=1):
        lines.append(f"{rank}. candidate #{i} seed {s} score {v:+.4f}")
    others = [i for i in scores.ranking() if hidden.indices[i] not in indices]
    if others:
        lines.append("then: " + ", ".join(f"#{scores.indices[i]} {float(scores.scores[i]):+.4f}" for i in others))
    return "\n".join(lines)


def image_batch(images: torch.Tensor) -> torch.Tensor:
    """[k, 3, H, W] -> ComfyUI's IMAGE layout [k, H, W, 3] float32 0..1."""
    return images.permute(0, 2, 3, 1).contiguous().float().cpu()


class BestOfNSelect(io.ComfyNode):
    """Keep the top-k candidates by score; they stay hidden states until Decode Winner finishes them."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VHSBestOfNSelect",
            display_name="Best-of-N Select",
            category=CATEGORY,
            description="Best-of-N: keeps the k best-scored candidates (best first) without decoding anything. Set "
                        "override_index to pick a candidate yourself; Decode Winner resumes it exactly.",
            inputs=[
                Hidden.Input("hidden", tooltip="The N candidates."),
                CandidateScores.Input("scores", tooltip="Their scores, from a verifier node (of the same run)."),
                io.Int.Input("k", default=1, min=1, max=MAX_N, tooltip="How many of the best to keep."),
                io.Int.Input("override_index", default=-1, min=-1, max=MAX_N - 1, optional=True,
                             tooltip="-1: the verifier's choice. Otherwise the candidate index you want first (see "
                                     "the ranking); the rest follow by score."),
                SanaSprintModel.Input("model", optional=True,
                                      tooltip="Connect to get the winners' latents (finishes the DiT, no decode)."),
            ],
            outputs=[
                Hidden.Output("winners", display_name="winners", tooltip="The k best candidates, best first."),
                io.String.Output("report", display_name="report", tooltip="Ranking with scores and seeds."),
                io.Int.Output("winner_index", display_name="winner_index",
                              tooltip="Index (0-based) of the best candidate among the N."),
                io.Latent.Output("latent", display_name="latent",
                                 tooltip="The winners' final latents, without any decode (needs the optional model "
                                         "input)."),
            ],
        )

    @classmethod
    def execute(cls, hidden, scores, k: int, override_index: int = -1, model=None) -> io.NodeOutput:
        hidden = expect_hidden(hidden, "Best-of-N Select")
        scores = expect_scores(scores, "Best-of-N Select")
        override = None if override_index is None or override_index < 0 else int(override_index)
        winners, indices, values = select_top_k(hidden, scores, k=int(k), override=override)
        latent = {"samples": torch.zeros(0)}
        if model is not None:
            handle = expect_model(model, "Best-of-N Select (model)")
            host.load(handle.parts("transformer"), handle.model.activation_bytes(len(winners), winners.height,
                                                                                 winners.width))
            latent = {"samples": handle.model.suffix(winners).cpu()}
        report = ranking_report(hidden, scores, winners, indices, values)
        return io.NodeOutput(winners, report, int(indices[0]), latent)


class DecodeWinner(io.ComfyNode):
    """Finish the selected candidate(s): blocks l*+1.., output head, SCM update, DC-AE decode."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VHSDecodeWinner",
            display_name="Decode Winner",
            category=CATEGORY,
            description="Resumes only the selected candidates from block l*+1 and decodes them to pixels.",
            inputs=[
                SanaSprintModel.Input("model", tooltip="The same SANA-Sprint model that made the candidates."),
                Hidden.Input("hidden", tooltip="Usually the winners of Best-of-N Select."),
            ],
            outputs=[
                io.Image.Output("image", display_name="image", tooltip="The finished image(s), best first."),
                io.Latent.Output("latent", display_name="latent",
                                 tooltip="Their final SANA-Sprint latents (32 channels)."),
            ],
        )

    @classmethod
    def execute(cls, model, hidden) -> io.NodeOutput:
        handle = expect_model(model, "Decode Winner")
        hidden = expect_hidden(hidden, "Decode Winner")
        sana = handle.model
        host.load(handle.parts("transformer", "vae"), sana.finish_bytes(hidden))
        latents = sana.suffix(hidden, callback=host.progress(sana.num_layers - hidden.layer - 1))
        host.check_interrupt()
        return io.NodeOutput(image_batch(sana.decode(latents)), {"samples": latents.cpu()})
