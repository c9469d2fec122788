"""The typed objects that flow between the stages: prompt embeddings, candidate hidden states, scores.

`HiddenStates` is what the VHS_HIDDEN edge carries in ComfyUI: h_l* for N candidates of one prompt plus
everything the suffix needs to resume them (noise sample, timestep/guidance modulation, projected prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from .errors import InputError


@dataclass(frozen=True)
class PromptEmbedding:
    """A prompt encoded once by the text encoder, shared by every candidate (batch dimension 1)."""

    prompt: str
    embeds: torch.Tensor  # [1, L, caption_channels]
    mask: torch.Tensor  # [1, L] (1 = real token)
    model_key: str


@dataclass(frozen=True)
class HiddenStates:
    """N candidates stopped after DiT block `layer`, with the context to finish any subset of them.

    Per-candidate tensors have batch dimension N (= len(self)); prompt tensors keep batch 1 and are
    broadcast when the suffix runs, since the prompt is the same for every candidate.
    """

    hidden: torch.Tensor  # h_l*  [N, tokens, width]
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
    temb: torch.Tensor  # block modulation [N, 6*width]
    embedded_timestep: torch.Tensor  # head modulation [N, width]
    encoder_hidden_states: torch.Tensor  # projected + normed caption [1, L, width]
    encoder_bias: torch.Tensor | None  # additive cross-attention bias [1, 1, L]
    grid: tuple[int, int]  # token grid (H, W) after patchify
    # generation settings, kept for metadata and for checks downstream
    height: int
    width: int
    steps: int
    guidance: float
    max_timestep: float
    model_key: str
    scores: torch.Tensor | None = None  # filled by select(); per candidate
    extras: dict = field(default_factory=dict)

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
    """Per-candidate verifier output, aligned with the candidates of one HiddenStates."""

    scores: torch.Tensor  # the value Best-of-N ranks by [N], float32 on CPU
    p_yes: torch.Tensor  # P("yes") at the answer position [N]
    p_no: torch.Tensor  # P("no") at the answer position [N]
    mode: str  # "reference" (P(yes) or -P(no)) or "normalized" (P(yes)/(P(yes)+P(no)))
    verifier: str  # a name for the verifier that produced them
    indices: tuple[int, ...]  # original candidate indices these scores belong to

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def ranking(self) -> list[int]:
        """Positions sorted best first (stable, so ties keep candidate order)."""
        return sorted(range(len(self)), key=lambda i: (-float(self.scores[i]), i))
