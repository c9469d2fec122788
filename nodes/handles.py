"""What the model edges carry: a library object plus the state only ComfyUI needs (model-management patchers,
options, a prompt cache). The library objects themselves stay plain: nothing is attached to them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..models import PromptEmbedding, SanaSprint, VHSVerifier
from . import host

PROMPT_CACHE_SIZE = 8


@dataclass(eq=False)
class SanaSprintHandle:
    """A loaded SANA-Sprint (transformer, Gemma-2 text encoder, DC-AE) under ComfyUI's model management."""

    model: SanaSprint
    patchers: dict  # role ("transformer", "text_encoder", "vae") -> ModelPatcher
    name: str  # the loader's choice, for reports
    offload_text_encoder: bool = False  # hand Gemma-2 back to model management right after encoding
    native_size: int | None = None  # a model that draws only this size (the embedded ShapeWorld demo: 64 px)
    _prompts: OrderedDict = field(default_factory=OrderedDict)

    def parts(self, *roles: str) -> list:
        return [self.patchers[r] for r in roles]

    def encode(self, prompt: str) -> PromptEmbedding:
        """The prompt's embedding, encoded once per handle: a new seed, N or layer re-uses it without loading Gemma-2
        again (which matters most with 'offload after encoding')."""
        if prompt in self._prompts:
            self._prompts.move_to_end(prompt)
            return self._prompts[prompt]
        host.load(self.parts("text_encoder"))
        emb = self.model.encode_prompt(prompt)
        if self.offload_text_encoder:
            host.unload(self.parts("text_encoder"), "text_encoder")
        self._prompts[prompt] = emb
        while len(self._prompts) > PROMPT_CACHE_SIZE:
            self._prompts.popitem(last=False)
        return emb


@dataclass(eq=False)
class VerifierHandle:
    """A loaded verifier (connector + Qwen2 LLM, and a CLIP tower for pixel-space ones) under model management."""

    verifier: VHSVerifier
    patchers: dict  # role ("llm", "connector", "vision_tower") -> ModelPatcher
    name: str

    def parts(self) -> list:
        return list(self.patchers.values())

    def block(self, model: SanaSprint) -> int:
        """The DiT block whose output this verifier needs: its own block for a hidden-state verifier; the last block
        for the baselines (they finish every candidate anyway)."""
        layer = self.verifier.spec.layer
        return model.num_layers - 1 if layer is None else layer
