"""The one place that talks to ComfyUI's services: model folders, devices, model management, progress, output paths.

Node classes call these functions and the library (models/); the library never imports ComfyUI.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch

logger = logging.getLogger(__name__)

SANA_FOLDERS = ("sana", "diffusers")  # models/sana/<name>/ (ours) and models/diffusers/<name>/ (core's folder)
VERIFIER_FOLDER = "vhs"  # models/vhs/<name>/
# folder scan bounds: a symlink loop or a huge tree must never stall /object_info
MAX_SCAN_DEPTH = 4
MAX_SCAN_DIRS = 4000


def register_model_folders() -> None:
    """Add models/sana and models/vhs to ComfyUI's folders (extra_model_paths.yaml entries are kept)."""
    for name in ("sana", VERIFIER_FOLDER):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))


def search_paths(folder: str) -> list[str]:
    """Where ComfyUI looks for `folder` (e.g. 'sana'), existing folders only."""
    try:
        paths = folder_paths.get_folder_paths(folder)
    except KeyError:
        paths = []
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p)]


def _head(path: str, size: int = 65536) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(size)
    except OSError:
        return ""


def scan_model_dirs(folders: Iterable[str], marker: Callable[[str, str], bool]) -> dict[str, str]:
    """Model folders under ComfyUI's `folders`: display name (relative path) -> absolute path.

    A folder counts when `marker(path, folder)` says so, and its subfolders are its components (not searched).
    The walk follows symbolic links (shared model stores use them) but never the same real folder twice, stops at
    MAX_SCAN_DEPTH levels and MAX_SCAN_DIRS folders, and skips hidden folders: a loop cannot hang the server."""
    found: dict[str, str] = {}
    visited: set[str] = set()
    budget = MAX_SCAN_DIRS
    for folder in folders:
        for root in search_paths(folder):
            stack = [(root, 0)]
            while stack and budget > 0:
                path, depth = stack.pop()
                budget -= 1
                if path != root and marker(path, folder):  # a model (the same one may be listed under two names)
                    found.setdefault(os.path.relpath(path, root).replace(os.sep, "/"), path)
                    continue
                real = os.path.realpath(path)
                if real in visited or depth >= MAX_SCAN_DEPTH:  # a folder is searched once: loops end here
                    continue
                visited.add(real)
                try:
                    entries = sorted(os.scandir(path), key=lambda e: e.name, reverse=True)
                except OSError:
                    continue
                for entry in entries:
                    try:
                        if not entry.name.startswith(".") and entry.is_dir():
                            stack.append((entry.path, depth + 1))
                    except OSError:
                        continue
            if budget <= 0:
                logger.warning("stopped scanning model folders after %d folders (is there a loop?)", MAX_SCAN_DIRS)
    return found


def _is_sana(path: str, folder: str) -> bool:
    index = os.path.join(path, "model_index.json")
    # models/sana: any pipeline folder (a broken one is listed, and its load says what is wrong);
    # models/diffusers holds every kind of pipeline: only SANA-Sprint ones
    return os.path.isfile(index) and (folder == "sana" or "SanaSprintPipeline" in _head(index))


def _is_verifier(path: str, folder: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def sana_models() -> dict[str, str]:
    """Installed SANA-Sprint diffusers folders: name shown in the widget -> absolute path."""
    return scan_model_dirs(SANA_FOLDERS, _is_sana)


def verifier_models() -> dict[str, str]:
    """Folders under models/vhs that hold a config.json (verifiers in the llava_qwen layout): name -> path."""
    return scan_model_dirs((VERIFIER_FOLDER,), _is_verifier)


def first_folder(folder: str) -> str:
    """The first models/<folder> ComfyUI uses (where the README tells users to put models)."""
    try:
        return folder_paths.get_folder_paths(folder)[0]
    except (KeyError, IndexError):
        return os.path.join(folder_paths.models_dir, folder)


# ---------------------------------------------------------------- devices
def torch_device(policy: str) -> torch.device:
    """'auto' follows ComfyUI's device choice (--cpu, --gpu-only, ...); 'cpu' forces the CPU."""
    return torch.device("cpu") if policy == "cpu" else mm.get_torch_device()


def auto_dtype(device: torch.device) -> str:
    """bf16 on GPUs that support it, fp16 on other GPUs, fp32 on the CPU."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


# ---------------------------------------------------------------- progress and Cancel
def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel."""
    mm.throw_exception_if_processing_interrupted()


def progress(total: int) -> Callable[[int, int], None]:
    """A `callback(done, total)` for models/ that drives ComfyUI's progress bar and honours Cancel."""
    bar = comfy.utils.ProgressBar(max(int(total), 1))

    def callback(done: int, total_now: int) -> None:
        check_interrupt()
        bar.update_absolute(done, max(int(total_now), 1))

    return callback


# ---------------------------------------------------------------- model management
class ManagedPart(torch.nn.Module):
    """One of our torch modules as ComfyUI's ModelPatcher holds it (it sets bookkeeping attributes on what it
    manages, and those belong here, not on the library's modules)."""

    def __init__(self, module: torch.nn.Module, role: str):
        super().__init__()
        self.inner = module
        self.role = role


def manage(modules: dict[str, torch.nn.Module], policy: str) -> dict[str, comfy.model_patcher.ModelPatcher]:
    """Register modules with ComfyUI's model management: each becomes a ModelPatcher that ComfyUI moves to the GPU
    when a node needs it, back to its offload device when memory is short or on "Free model and node cache", and
    counts in its memory accounting."""
    load = torch.device("cpu") if policy == "cpu" else mm.get_torch_device()
    offload = {"text_encoder": mm.text_encoder_offload_device(), "vae": mm.vae_offload_device()}
    return {role: comfy.model_patcher.ModelPatcher(ManagedPart(m, role), load_device=load,
                                                   offload_device=offload.get(role, mm.unet_offload_device()),
                                                   size=mm.module_size(m))
            for role, m in modules.items()}


def load(patchers: list, memory_required: int = 0) -> None:
    """Before computing: let ComfyUI load these parts onto their device in ONE request (so it never frees one to make
    room for another), first freeing `memory_required` bytes for the activations, as it does for its own models."""
    if patchers:
        # full loads only: ComfyUI's partial (lowvram) loading leaves plain torch layers - ours - on the offload
        # device, and only its own cast-weight layers can run like that; a full load also moves root-level parameters
        mm.load_models_gpu(patchers, memory_required=int(memory_required), force_full_load=True)


def unload(patchers: list, label: str) -> None:
    """After computing: move these parts to their offload device now, instead of when ComfyUI next needs memory."""
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        loaded = mm.current_loaded_models[i]
        if any(loaded.model is p for p in patchers) and loaded.model_unload():
            mm.current_loaded_models.pop(i)
            logger.info("%s moved to %s", label, loaded.model.offload_device)
    mm.soft_empty_cache()


# ---------------------------------------------------------------- output
def output_directory() -> str:
    return folder_paths.get_output_directory()


def next_output_path(prefix: str, width: int, height: int) -> tuple[str, str, str]:
    """(full path, file name, subfolder) of the next free <prefix>_00001_.png, with ComfyUI's own numbering and its
    refusal of paths outside the output folder."""
    out_dir = output_directory()
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out_dir, width, height)
    os.makedirs(folder, exist_ok=True)
    while os.path.exists(os.path.join(folder, f"{name}_{counter:05}_.png")):
        counter += 1
    filename = f"{name}_{counter:05}_.png"
    return os.path.join(folder, filename), filename, subfolder
