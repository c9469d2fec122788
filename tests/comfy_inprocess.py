"""Run the pack inside ComfyUI's own model management, in this process (no server), and report what it saw.

    python tests/comfy_inprocess.py COMFYUI_DIR SANA_MODELS_DIR VHS_MODELS_DIR   # prints one JSON line

A script rather than an import in pytest: ComfyUI's modules (comfy.model_management, folder_paths) are process-wide
singletons configured from the command line, so each check gets a fresh process started with --cpu.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

comfy_dir, sana_dir, vhs_dir = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, comfy_dir)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management as mm  # noqa: E402
import torch  # noqa: E402

import folder_paths  # noqa: E402

spec = importlib.util.spec_from_file_location("ComfyUI_VHS", os.path.join(ROOT, "__init__.py"),
                                              submodule_search_locations=[ROOT])
pack = importlib.util.module_from_spec(spec)
sys.modules["ComfyUI_VHS"] = pack
spec.loader.exec_module(pack)
folder_paths.add_model_folder_path("sana", sana_dir)
folder_paths.add_model_folder_path("vhs", vhs_dir)
nodes = {cls.GET_SCHEMA().node_id: cls for cls in pack.nodes.NODES}
sys.path.append(ROOT)  # after ComfyUI: its `nodes` module stays first, and `models` resolves to this repository's
from apps.fixtures import TINY_RESOLUTION as RES  # noqa: E402


def run(node_id: str, **inputs):
    return nodes[node_id].execute(**inputs)


calls: list[tuple[list, int]] = []  # (patchers, memory_required) of every load request our nodes make
_load_models_gpu = mm.load_models_gpu


def _recording_load(models, memory_required=0, **kwargs):
    calls.append((list(models), int(memory_required)))
    return _load_models_gpu(models, memory_required=memory_required, **kwargs)


mm.load_models_gpu = _recording_load


def roles_of(patchers: list, *owners) -> list[str]:
    return sorted(role for owner in owners for role, p in owner.patchers.items() if any(p is q for q in patchers))


def sample(model, verifier):
    return run("SanaSprintHiddenSamplerVHS", model=model, verifier=verifier, prompt="a red cube", seed=0, candidates=3,
               layer=-1, width=RES, height=RES, steps=1, guidance=4.5, max_timestep=1.5708,
               intermediate_timestep=1.3)[0]


def loaded_roles(*owners) -> list[str]:
    """Which of our managed parts ComfyUI currently counts as loaded."""
    current = [lm.model for lm in mm.current_loaded_models]
    return sorted(role for owner in owners for role, p in owner.patchers.items() if any(p is c for c in current))


report = {}
for text_encoder in ("keep loaded", "offload after encoding"):
    model = run("SanaSprintLoaderVHS", model_name="Sana_Sprint_1.6B_1024px_diffusers", dtype="fp32", device="auto",
                weight_storage="fp8_e4m3fn", text_encoder=text_encoder)[0]
    verifier = run("VHSVerifierLoader", verifier_name="vhs-hidden-verifier", dtype="fp32", device="auto",
                   weight_storage="fp8_e4m3fn")[0]
    hidden = sample(model, verifier)
    after_sampling = loaded_roles(model)
    scores = run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="normalized")[0]
    winner = run("VHSBestOfNSelect", hidden=hidden, scores=scores, k=1)[0]
    image = run("VHSDecodeWinner", model=model, hidden=winner)[0]
    report[text_encoder] = {
        "after_sampling": after_sampling,
        "after_decode": loaded_roles(model, verifier),
        "transformer_weight": str(model.model.transformer.transformer_blocks[0].attn1.to_q.weight.dtype),
        "llm_weight": str(verifier.verifier.llm.model.layers[0].mlp.up_proj.weight.dtype),
        "image_ok": bool(torch.isfinite(image).all() and image.shape == (1, RES, RES, 3)),
    }
    mm.unload_all_models()
    report[text_encoder]["after_free"] = loaded_roles(model, verifier)

# the memory each node asks ComfyUI to free for its activations, and what it loads in one request
clip = run("MLLMVerifierLoaderVHS", verifier_name="vhs-mllm-clip-verifier", dtype="fp32", device="auto")[0]
calls.clear()
hidden = sample(model, verifier)
run("VHSVerifier", verifier=verifier, hidden=hidden, score_mode="normalized")
run("MLLMVerifierCLIPVHS", model=model, verifier=clip, hidden=hidden, score_mode="normalized")
sana = model.model
report["requests"] = [{"roles": roles_of(p, model, verifier, clip), "memory_required": m} for p, m in calls]
report["expected"] = {"prefix": sana.activation_bytes(3, RES, RES), "verify": verifier.verifier.activation_bytes(hidden),
                      "clip": sana.activation_bytes(3, RES, RES) + clip.verifier.activation_bytes(hidden)
                      + sana.decode_bytes(3, RES, RES)}
print(json.dumps(report))
