"""ComfyUI-VHS library layer: SANA-Sprint split forward, hidden-state verifiers, Best-of-N selection.

Plain torch + diffusers + transformers; never imports ComfyUI, so scripts and notebooks can use it directly.
"""

from .budget import CostCache, CostModel, measure_costs
from .errors import InputError, ModelFolderError, NonFiniteError, VHSError
from .features import convert_stats_to_safetensors
from .hidden import HiddenStates, PromptEmbedding, Scores, Selection, check_scores_match
from .sana_sprint import SanaSprint, candidate_seeds, check_sana_sprint_folder
from .search import BudgetRun, best_of_n_within_budget, select_top_k
from .verifier import VerifierSpec, VHSVerifier, check_verifier_folder

__all__ = [
    "BudgetRun", "CostCache", "CostModel", "HiddenStates", "InputError", "ModelFolderError", "NonFiniteError",
    "PromptEmbedding", "SanaSprint", "Scores", "Selection", "VHSError", "VHSVerifier", "VerifierSpec",
    "best_of_n_within_budget", "candidate_seeds", "check_sana_sprint_folder", "check_scores_match",
    "check_verifier_folder", "convert_stats_to_safetensors", "measure_costs", "select_top_k",
]
