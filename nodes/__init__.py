"""ComfyUI node classes: a thin skin over models/ (widgets in, one library call, typed objects out)."""

from . import comfy
from .extra_nodes import BestOfNTimeBudget, CandidatePreview, SaveImageWithScores
from .loaders import MLLMVerifierLoader, SanaSprintLoader, VHSVerifierLoader
from .vhs_nodes import BestOfNSelect, DecodeWinner, MLLMVerifierAE, MLLMVerifierCLIP, SanaSprintHiddenSampler, VHSVerifierNode

comfy.register_model_folders()

NODE_CLASS_MAPPINGS = {
    "SanaSprintLoaderVHS": SanaSprintLoader,
    "SanaSprintHiddenSamplerVHS": SanaSprintHiddenSampler,
    "VHSVerifierLoader": VHSVerifierLoader,
    "VHSVerifier": VHSVerifierNode,
    "VHSBestOfNSelect": BestOfNSelect,
    "VHSDecodeWinner": DecodeWinner,
    "MLLMVerifierLoaderVHS": MLLMVerifierLoader,
    "MLLMVerifierCLIPVHS": MLLMVerifierCLIP,
    "MLLMVerifierAEVHS": MLLMVerifierAE,
    "VHSBestOfNTimeBudget": BestOfNTimeBudget,
    "VHSCandidatePreview": CandidatePreview,
    "VHSSaveImageWithScores": SaveImageWithScores,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SanaSprintLoaderVHS": "SANA-Sprint Loader",
    "SanaSprintHiddenSamplerVHS": "SANA-Sprint Hidden-State Sampler",
    "VHSVerifierLoader": "VHS Verifier Loader",
    "VHSVerifier": "VHS Verifier",
    "VHSBestOfNSelect": "Best-of-N Select",
    "VHSDecodeWinner": "Decode Winner",
    "MLLMVerifierLoaderVHS": "MLLM Verifier Loader",
    "MLLMVerifierCLIPVHS": "MLLM Verifier (CLIP)",
    "MLLMVerifierAEVHS": "MLLM Verifier (AE latent)",
    "VHSBestOfNTimeBudget": "VHS Best-of-N (Time Budget)",
    "VHSCandidatePreview": "VHS Candidate Preview",
    "VHSSaveImageWithScores": "Save Image (VHS scores)",
}
