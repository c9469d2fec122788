"""Verifier nodes: VHS scores hidden states in one batched LLM pass; the baselines finish every candidate first."""

from __future__ import annotations

from comfy_api.latest import io

from ..models import InputError, Scores
from ..models.verifier import SCORE_MODES
from . import host
from .edges import (BASELINES, CATEGORY, CandidateScores, Hidden, MLLMVerifier, SanaSprintModel, Verifier,
                    expect_hidden, expect_model, expect_verifier)

SCORE_MODE_TIP = ("reference: as the authors' code, P(yes) when the verifier answers yes, else -P(no). "
                  "normalized: P(yes) / (P(yes) + P(no)).")
SCORES_TIP = "One score per candidate (higher is better)."


def score_report(scores: Scores) -> str:
    return ", ".join(f"#{i}: {float(s):+.4f}" for i, s in zip(scores.indices, scores.scores))


def _outputs() -> list:
    return [CandidateScores.Output("scores", display_name="scores", tooltip=SCORES_TIP),
            io.String.Output("report", display_name="report", tooltip="The scores as text.")]


class VHSVerifierNode(io.ComfyNode):
    """Score every candidate from its hidden state h_l* in one batched LLM pass (no decoding)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VHSVerifier",
            display_name="VHS Verifier",
            category=CATEGORY,
            description="Scores each candidate's DiT hidden state with the VHS verifier (does the image match the "
                        "prompt?), all N in one batched LLM pass, without decoding anything.",
            inputs=[
                Verifier.Input("verifier", tooltip="From VHS Verifier Loader."),
                Hidden.Input("hidden", tooltip="From SANA-Sprint Hidden-State Sampler (stopped at the block this "
                                               "verifier reads)."),
                io.Combo.Input("score_mode", options=list(SCORE_MODES), default="reference", tooltip=SCORE_MODE_TIP),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, verifier, hidden, score_mode: str) -> io.NodeOutput:
        handle = expect_verifier(verifier, "VHS Verifier")
        hidden = expect_hidden(hidden, "VHS Verifier")
        host.check_interrupt()
        host.load(handle.parts(), handle.verifier.activation_bytes(hidden))
        scores = handle.verifier.score(None, hidden, mode=score_mode)
        return io.NodeOutput(scores, score_report(scores))


class _MLLMVerifierNode(io.ComfyNode):
    """Baseline verifiers finish every candidate (all blocks + head), then score in pixel or AE-latent space."""

    NODE_ID = DISPLAY = DESCRIPTION = KIND = ""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY,
            category=BASELINES,
            description=cls.DESCRIPTION,
            inputs=[
                SanaSprintModel.Input("model", tooltip="The SANA-Sprint model that made the candidates (to finish "
                                                       "them)."),
                MLLMVerifier.Input("verifier", tooltip="From MLLM Verifier Loader."),
                Hidden.Input("hidden", tooltip="From SANA-Sprint Hidden-State Sampler, or the top-k winners of a VHS "
                                               "Best-of-N Select to re-rank only those (a cascade)."),
                io.Combo.Input("score_mode", options=list(SCORE_MODES), default="reference", tooltip=SCORE_MODE_TIP),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, verifier, hidden, score_mode: str) -> io.NodeOutput:
        handle = expect_model(model, cls.DISPLAY)
        vhandle = expect_verifier(verifier, cls.DISPLAY)
        hidden = expect_hidden(hidden, cls.DISPLAY)
        v = vhandle.verifier
        if v.kind != cls.KIND:
            raise InputError(f"{cls.DISPLAY} needs a {cls.KIND} verifier, got a {v.kind} one")
        sana = handle.model
        finish = sana.finish_bytes(hidden) if cls.KIND == "clip" else sana.activation_bytes(len(hidden), hidden.height,
                                                                                           hidden.width)
        host.load(handle.parts("transformer", "vae") + vhandle.parts(), v.activation_bytes(hidden) + finish)
        scores = v.score(sana, hidden, mode=score_mode, callback=host.progress(sana.num_layers - hidden.layer - 1))
        return io.NodeOutput(scores, score_report(scores))


class MLLMVerifierCLIP(_MLLMVerifierNode):
    """MLLM w/ CLIP: finish and decode every candidate, encode with CLIP, score with the LLM."""

    NODE_ID, DISPLAY, KIND = "MLLMVerifierCLIPVHS", "MLLM Verifier (CLIP)", "clip"
    DESCRIPTION = "Pixel-space baseline: decodes all N candidates and scores them through a CLIP tower + LLM."


class MLLMVerifierAE(_MLLMVerifierNode):
    """MLLM w/ AE: finish every candidate, score its final DC-AE latent with the LLM (no decode)."""

    NODE_ID, DISPLAY, KIND = "MLLMVerifierAEVHS", "MLLM Verifier (AE latent)", "latent"
    DESCRIPTION = "Latent baseline: finishes all N candidates and scores their final AE latents + LLM."
