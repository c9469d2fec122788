"""ComfyUI nodes (V3 schema): a thin skin over models/ - widgets in, one library call, typed objects out."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import host
from .budget import BestOfNTimeBudget
from .loaders import MLLMVerifierLoader, SanaSprintLoader, VHSVerifierLoader
from .preview import CandidatePreview
from .sampling import SanaSprintHiddenSampler
from .save import SaveImageWithScores
from .selection import BestOfNSelect, DecodeWinner
from .verifiers import MLLMVerifierAE, MLLMVerifierCLIP, VHSVerifierNode

NODES: list[type[io.ComfyNode]] = [
    SanaSprintLoader, SanaSprintHiddenSampler, VHSVerifierLoader, VHSVerifierNode, BestOfNSelect, DecodeWinner,
    MLLMVerifierLoader, MLLMVerifierCLIP, MLLMVerifierAE, BestOfNTimeBudget, CandidatePreview, SaveImageWithScores,
]


class VHSExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> VHSExtension:
    """ComfyUI calls this to load the pack's nodes."""
    host.register_model_folders()
    return VHSExtension()
