"""The data types on the graph's edges, and what each carries (the one definition the node schemas share)."""

from __future__ import annotations

from comfy_api.latest import io

from ..models import HiddenStates, InputError, Scores
from .handles import SanaSprintHandle, VerifierHandle

CATEGORY = "sampling/SANA-Sprint Best-of-N"  # where the nodes sit in ComfyUI's node library
BASELINES = f"{CATEGORY}/baselines"

SanaSprintModel = io.Custom("SANA_SPRINT")  # SanaSprintHandle: the pipeline and its ComfyUI-managed parts
Hidden = io.Custom("SANA_HIDDEN_STATES")  # models.HiddenStates: N candidates stopped after block l*, resumable
CandidateScores = io.Custom("BEST_OF_N_SCORES")  # models.Scores of one run of hidden states
Verifier = io.Custom("HIDDEN_STATE_VERIFIER")  # VerifierHandle of a hidden-state verifier
MLLMVerifier = io.Custom("MLLM_VERIFIER")  # VerifierHandle of a pixel-space (CLIP) or AE-latent baseline verifier


def expect(value, cls: type, node: str):
    """A clear error when an edge carries another kind of object (e.g. a look-alike type of another pack)."""
    if not isinstance(value, cls):
        raise InputError(f"{node} expects {cls.__name__}, got {type(value).__name__}; check the connection")
    return value


def expect_model(value, node: str) -> SanaSprintHandle:
    return expect(value, SanaSprintHandle, node)


def expect_verifier(value, node: str) -> VerifierHandle:
    return expect(value, VerifierHandle, node)


def expect_hidden(value, node: str) -> HiddenStates:
    return expect(value, HiddenStates, node)


def expect_scores(value, node: str) -> Scores:
    return expect(value, Scores, node)
