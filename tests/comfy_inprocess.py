"""Run the pack inside ComfyUI's own model management, in this process (no server), and report what it saw.

    python tests/comfy_inprocess.py COMFYUI_DIR MODELS_DIR   # prints one JSON line

A script rather than an import in pytest: ComfyUI's modules (comfy.model_management, folder_paths) are process-wide
singletons configured from the command line, so each check gets a fresh process started with --cpu.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

comfy_dir, models_dir = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, comfy_dir)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management as mm  # noqa: E402
import torch  # noqa: E402

os.environ["VHS_MODELS_DIR"] = models_dir
spec = importlib.util.spec_from_file_location("ComfyUI_VHS", os.path.join(ROOT, "__init__.py"),
                                              submodule_search_locations=[ROOT])
pack = importlib.util.module_from_spec(spec)
sys.modules["ComfyUI_VHS"] = pack
spec.loader.exec_module(pack)
nodes = pack.NODE_CLASS_MAPPINGS
RES = importlib.import_module("ComfyUI_VHS.models.fixtures").TINY_RESOLUTION


calls: list[tuple[list, int]] = []  # (patchers, memory_required) of every load request our nodes make
_load_models_gpu = mm.load_models_gpu


def _recording_load(models, memory_required=0, **kwargs):
    calls.append((list(models), int(memory_required)))
    return _load_models_gpu(models, memory_required=memory_required, **kwargs)


mm.load_models_gpu = _recording_load


def roles_of(patchers: list, *owners) -> list[str]:
    return sorted(role for owner in owners for role, p in owner.patchers.items() if any(p is q for q in patchers))


def loaded_roles(*owners) -> list[str]:
    """Which of our managed parts ComfyUI currently counts as loaded."""
    current = [lm.model for lm in mm.current_loaded_models]
    return sorted(role for owner in owners for role, p in owner.patchers.items() if any(p is c for c in current))


report = {}
for text_encoder in ("keep loaded", "offload after encoding"):
    model = nodes["SanaSprintLoaderVHS"]().load("Sana_Sprint_1.6B_1024px_diffusers", "fp32", "auto", "fp8_e4m3fn",
                                               text_encoder)[0]
    verifier = nodes["VHSVerifierLoader"]().load("vhs-hidden-verifier", "fp32", "auto", "fp8_e4m3fn")[0]
    hidden = nodes["SanaSprintHiddenSamplerVHS"]().sample(model, "a red cube", 0, 3, 1, RES, RES, 1, 4.5, 1.5708, 1.3)[0]
    after_sampling = loaded_roles(model)
    scores = nodes["VHSVerifier"]().score(verifier, hidden, "normalized")["result"][0]
    winner = nodes["VHSBestOfNSelect"]().select(hidden, scores, 1)["result"][0]
    image = nodes["VHSDecodeWinner"]().decode(model, winner)[0]
    report[text_encoder] = {
        "after_sampling": after_sampling,
        "after_decode": loaded_roles(model, verifier),
        "transformer_weight": str(model.transformer.transformer_blocks[0].attn1.to_q.weight.dtype),
        "llm_weight": str(verifier.llm.model.layers[0].mlp.up_proj.weight.dtype),
        "image_ok": bool(torch.isfinite(image).all() and image.shape == (1, RES, RES, 3)),
    }
    mm.unload_all_models()
    report[text_encoder]["after_free"] = loaded_roles(model, verifier)

# the memory each node asks ComfyUI to free for its activations, and what it loads in one request
clip = nodes["MLLMVerifierLoaderVHS"]().load("vhs-mllm-clip-verifier", "fp32", "auto")[0]
calls.clear()
hidden = nodes["SanaSprintHiddenSamplerVHS"]().sample(model, "a red cube", 0, 3, 1, RES, RES, 1, 4.5, 1.5708, 1.3)[0]
nodes["VHSVerifier"]().score(verifier, hidden, "normalized")
nodes["MLLMVerifierCLIPVHS"]().score(model, clip, hidden, "normalized")
report["requests"] = [{"roles": roles_of(p, model, verifier, clip), "memory_required": m} for p, m in calls]
report["expected"] = {"prefix": model.activation_bytes(3, RES, RES), "verify": verifier.activation_bytes(hidden),
                      "clip": model.activation_bytes(3, RES, RES) + clip.activation_bytes(hidden)
                      + model.decode_bytes(3, RES, RES)}
print(json.dumps(report))
