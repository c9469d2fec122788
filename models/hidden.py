"""The typed objects that flow between the stages: prompt embeddings, candidate hidden states, scores, selections.

`HiddenStates` is what the hidden-states edge carries in ComfyUI: h_l* for N candidates of one prompt plus
everything the suffix needs to resume them (noise sample, timestep/guidance modulation, projected prompt).
`Scores` belong to exactly one run of hidden states (`run_key`); `Selection` records how winners were chosen.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .errors import InputError, NonFiniteError


@dataclass(frozen=True)
class PromptEmbedding:
    """A prompt encoded once by the text encoder, shared by every candidate (batch dimension 1)."""

    prompt: str
    embeds: torch.Tensor  # [1, L, caption_channels]
    mask: torch.Tensor  # [1, L] (1 = real token)
    model_key: str


@dataclass(frozen=True)
class Selection:
    """How the candidates of a HiddenStates were chosen (for reports and image metadata)."""

    verifier: str  # the verifier that ranked them; "a -> b" after a cascade
    n_candidates: int  # N of the original run
    score_mode: str
    ranks: tuple[int, ...]  # each kept candidate's rank among those the verifier scored (1 = best)
    override: int | None = None  # a candidate picked by hand
    pruned_to: int | None = None  # a cascade: an earlier verifier kept this many for this one to re-rank
    budget_ms: float | None = None  # the time budget of the run that made them, if any


def run_key(model_key: str, prompt: str, seeds: Sequence[int], settings: dict, noise_digest: str = "") -> str:
    """A fingerprint of what made a set of candidates (model, prompt, seeds or noise, sampling settings): scores
    carry it, so scores of another run can never pick a winner here."""
    blob = json.dumps([model_key, prompt, [int(s) for s in seeds], settings, noise_digest], sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class HiddenStates:
    """N candidates stopped after DiT block `layer`, with the context to finish any subset of them.

    Per-candidate tensors have batch dimension N (= len(self)); prompt tensors keep batch 1 and are
    broadcast when the suffix runs, since the prompt is the same for every candidate.
    """

    hidden: torch.Tensor  # h_l*  [N, tokens, inner_dim]
    layer: int  # index of the last block run (l*)
    num_layers: int  # blocks in the transformer
    seeds: tuple[int, ...]
    indices: tuple[int, ...]  # position of each candidate in the original batch
    prompt: str
    # resume context for the last (split) step
    sample: torch.Tensor  # x_t before the last step, sigma_data-scaled, float32 [N, C_lat, h, w]
    model_input: torch.Tensor  # the transformer input of the last step [N, C_lat, h, w]
    timestep: torch.Tensor  # TrigFlow t of the last step [N]
    scm_timestep: torch.Tensor  # the transformer's timestep input [N]
    temb: torch.Tensor  # block modulation [N, 6 * inner_dim]
    embedded_timestep: torch.Tensor  # head modulation [N, inner_dim]
    encoder_hidden_states: torch.Tensor  # projected + normed caption [1, L, inner_dim]
    encoder_bias: torch.Tensor | None  # additive cross-attention bias [1, 1, L]
    grid: tuple[int, int]  # token grid (H, W) after patchify
    # generation settings, kept for metadata and for checks downstream
    height: int
    width: int
    steps: int
    guidance: float
    max_timestep: float
    model_key: str
    run_key: str  # what made these candidates (see run_key()); kept by select()
    scores: torch.Tensor | None = None  # filled by selection; per candidate
    selection: Selection | None = None

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def tokens(self) -> int:
        return int(self.hidden.shape[1])

    @property
    def dim(self) -> int:
        return int(self.hidden.shape[2])

    def select(self, positions: Sequence[int], scores: torch.Tensor | None = None) -> "HiddenStates":
        """Keep only the candidates at `positions` (0-based positions in this object, not original indices)."""
        positions = [int(p) for p in positions]
        if not positions:
            raise InputError("select() needs at least one candidate position")
        bad = [p for p in positions if p < 0 or p >= len(self)]
        if bad:
            raise InputError(f"candidate positions {bad} are out of range for {len(self)} candidates")
        idx = torch.tensor(positions, dtype=torch.long, device=self.hidden.device)

        def take(t: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():  # the same kind of tensor prefix() made (a compiled suffix then reuses its graph)
                return t.index_select(0, idx.to(t.device))

        if scores is not None and scores.shape[0] != len(positions):
            raise InputError(f"got {scores.shape[0]} scores for {len(positions)} selected candidates")
        return replace(
            self,
            hidden=take(self.hidden),
            seeds=tuple(self.seeds[p] for p in positions),
            indices=tuple(self.indices[p] for p in positions),
            sample=take(self.sample),
            model_input=take(self.model_input),
            timestep=take(self.timestep),
            scm_timestep=take(self.scm_timestep),
            temb=take(self.temb),
            embedded_timestep=take(self.embedded_timestep),
            scores=scores if scores is not None else (take(self.scores) if self.scores is not None else None),
        )


@dataclass(frozen=True)
class Scores:
    """Per-candidate verifier output, aligned with the candidates of one HiddenStates run."""

    scores: torch.Tensor  # the value Best-of-N ranks by [N], float32 on CPU
    p_yes: torch.Tensor  # P("yes") at the answer position [N]
    p_no: torch.Tensor  # P("no") at the answer position [N]
    says_yes: torch.Tensor  # whether the verifier's top answer token reads "yes" [N] bool
    mode: str  # "reference" (P(yes) or -P(no)) or "normalized" (P(yes)/(P(yes)+P(no)))
    verifier: str  # a name for the verifier that produced them
    indices: tuple[int, ...]  # original candidate indices these scores belong to
    run_key: str = ""  # the HiddenStates run they were computed on ("" for features outside any run)

    def __post_init__(self) -> None:
        finite = torch.isfinite(self.scores)
        if not bool(finite.all()):
            bad = [self.indices[i] for i in torch.nonzero(~finite).flatten().tolist()]
            raise NonFiniteError(f"the verifier produced non-finite scores (NaN or infinity) for candidates {bad}: "
                                 "the hidden states or the verifier overflowed (in fp16, try bf16 or fp32)")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def ranking(self) -> list[int]:
        """Positions sorted best first (stable, so ties keep candidate order)."""
        return sorted(range(len(self)), key=lambda i: (-float(self.scores[i]), i))

    def with_mode(self, mode: str) -> "Scores":
        """The same verifier answers read another way, without running the verifier again."""
        if mode == self.mode:
            return self
        if mode == "normalized":
            values = self.p_yes / (self.p_yes + self.p_no).clamp_min(1e-12)
        elif mode == "reference":  # the reference answers with its top token: P(yes) if it reads "yes", else -P(no)
            values = torch.where(self.says_yes, self.p_yes, -self.p_no)
        else:
            raise InputError(f"unknown score mode {mode!r}; choose 'reference' or 'normalized'")
        return replace(self, scores=values, mode=mode)


def check_scores_match(hidden: HiddenStates, scores: Scores) -> None:
    """A clear error when `scores` were computed on other candidates than `hidden` (another run, or a subset)."""
    if scores.run_key != hidden.run_key:
        raise InputError("these scores were computed on other candidates (another prompt, seed, size or model): "
                         "connect the scores of the same sampler run")
    if len(scores) != len(hidden) or tuple(scores.indices) != tuple(hidden.indices):
        raise InputError(f"the scores belong to other candidates ({len(scores)} scores for candidates "
                         f"{list(scores.indices)}, here are {list(hidden.indices)})")


def check_finite_tensor(tensor: torch.Tensor, what: str, indices: Sequence[int]) -> None:
    """Refuse NaN or infinity in a per-candidate tensor, naming the candidates (one host sync per call)."""
    if tensor.is_meta:  # shapes only (FLOP counting): there are no values to check
        return
    bad = (~torch.isfinite(tensor.reshape(tensor.shape[0], -1))).any(dim=1)
    if bool(bad.any()):
        which = [indices[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise NonFiniteError(f"{what} are not finite (NaN or infinity) for candidates {which}: the model overflowed "
                             "(in fp16, try bf16 or fp32) or its weights are damaged")
