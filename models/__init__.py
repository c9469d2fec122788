"""ComfyUI-VHS library layer: SANA-Sprint split forward, hidden-state verifiers, Best-of-N selection.

Plain torch + diffusers + transformers; never imports ComfyUI, so scripts and notebooks can use it directly.
"""

from .budget import CostModel, measure_costs
from .errors import InputError, ModelFolderError, VHSError
from .features import convert_stats_to_safetensors
from .hidden import HiddenStates, PromptEmbedding, Scores
from .sana_sprint import SanaSprint, candidate_seeds, check_sana_sprint_folder
from .search import BudgetRun, best_of_n_within_budget
from .verifier import VHSVerifier, VerifierSpec, select_top_k

__all__ = [
    "BudgetRun", "CostModel", "best_of_n_within_budget", "measure_costs", "HiddenStates", "InputError", "ModelFolderError", "PromptEmbedding", "SanaSprint", "Scores", "VHSError",
    "VHSVerifier", "VerifierSpec", "candidate_seeds", "check_sana_sprint_folder", "convert_stats_to_safetensors",
    "select_top_k",
]
