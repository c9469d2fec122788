"""The one place that touches ComfyUI services (model folders, progress bar, interrupts, devices).

Every function degrades gracefully when ComfyUI is not importable (tests, scripts), so the node classes can
be exercised anywhere; inside ComfyUI they use folder_paths, comfy.utils.ProgressBar and
comfy.model_management exactly as core nodes do.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable

import torch

logger = logging.getLogger(__name__)

SANA_FOLDERS = ("sana", "diffusers")  # models/sana/<name>/ (ours) and models/diffusers/<name>/ (core)
VERIFIER_FOLDER = "vhs"  # models/vhs/<name>/
EMBEDDED = "embedded: ShapeWorld demo (64 px)"
EMBEDDED_CLIP = "embedded: ShapeWorld CLIP verifier (64 px)"
EMBEDDED_AE = "embedded: ShapeWorld AE-latent verifier (64 px)"


def _folder_paths():
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return folder_paths


def register_model_folders() -> None:
    """Add models/sana and models/vhs to ComfyUI's folders (extra_model_paths.yaml entries are kept)."""
    fp = _folder_paths()
    if fp is None:
        return
    for name in ("sana", VERIFIER_FOLDER):
        fp.add_model_folder_path(name, os.path.join(fp.models_dir, name))


def search_paths(folder: str) -> list[str]:
    """Where ComfyUI looks for `folder` (e.g. 'sana'); VHS_MODELS_DIR adds a root outside ComfyUI."""
    paths = []
    fp = _folder_paths()
    if fp is not None:
        try:
            paths += fp.get_folder_paths(folder)
        except KeyError:
            pass
    extra = os.environ.get("VHS_MODELS_DIR")
    if extra:
        paths.append(os.path.join(extra, folder))
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p)]


def _model_dirs(folders: tuple[str, ...], marker: Callable[[str], bool]) -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in folders:
        for root in search_paths(folder):
            for dirpath, dirnames, _ in os.walk(root, followlinks=True):
                if marker(dirpath):
                    found.setdefault(os.path.relpath(dirpath, root).replace(os.sep, "/"), dirpath)
                    dirnames[:] = []  # a model folder's subfolders are its components
    return found


def _is_sana(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "model_index.json")) and "SanaSprint" in _read_text(
        os.path.join(path, "model_index.json"))


def _is_verifier(path: str) -> bool:
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        return json.loads(_read_text(cfg)).get("model_type") == "llava_qwen"
    except json.JSONDecodeError:
        return False


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def sana_models() -> dict[str, str]:
    """Installed SANA-Sprint diffusers folders: name shown in the widget -> absolute path."""
    return _model_dirs(SANA_FOLDERS, _is_sana)


def verifier_models() -> dict[str, str]:
    """Installed verifier folders (llava_qwen layout) under models/vhs: name -> absolute path."""
    return _model_dirs((VERIFIER_FOLDER,), _is_verifier)


def _cache() -> str | None:
    fp = _folder_paths()
    return os.path.join(fp.models_dir, VERIFIER_FOLDER, ".embedded-random") if fp is not None else None


def embedded_model(role: str) -> str:
    """The embedded demo model for a role (the trained ShapeWorld miniature shipped in embedded/)."""
    from ..models.embedded import embedded_model as find

    return find(role, _cache())


def demo_settings() -> dict:
    """Native size and verifier block of the embedded demo."""
    from ..models.embedded import demo_settings as settings

    return settings(_cache())


def torch_device(policy: str) -> torch.device:
    """'auto' follows ComfyUI's device choice (--cpu, --gpu-only, ...); 'cpu' forces the CPU."""
    if policy == "cpu":
        return torch.device("cpu")
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]

        return mm.get_torch_device()
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def auto_dtype(device: torch.device) -> str:
    """bf16 on GPUs that support it, fp16 on other GPUs, fp32 on the CPU."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def progress(total: int) -> Callable[[int, int], None]:
    """A `callback(done, total)` for models/ that drives ComfyUI's progress bar and honours Cancel."""
    bar = None
    try:
        import comfy.utils  # type: ignore[import-not-found]

        bar = comfy.utils.ProgressBar(max(int(total), 1))
    except ImportError:
        pass

    def callback(done: int, total_now: int) -> None:
        check_interrupt()
        if bar is not None:
            bar.update_absolute(done, max(int(total_now), 1))

    return callback


class VHSManagedModule(torch.nn.Module):
    """Holds one of our torch modules for ComfyUI's ModelPatcher (which sets bookkeeping attributes on what it manages)."""

    def __init__(self, module: torch.nn.Module, role: str):
        super().__init__()
        self.inner = module
        self.role = role


def manage(modules: dict[str, torch.nn.Module], policy: str) -> dict[str, object] | None:
    """Register modules with ComfyUI's model management (None outside ComfyUI).

    Each becomes a ModelPatcher: ComfyUI moves it to the GPU when a node needs it, back to its offload device when
    memory is short or on "Free model and node cache", and counts it in its memory accounting.
    """
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
        import comfy.model_patcher  # type: ignore[import-not-found]
    except ImportError:
        return None
    load = torch.device("cpu") if policy == "cpu" else mm.get_torch_device()
    offload = {"text_encoder": mm.text_encoder_offload_device(), "vae": mm.vae_offload_device()}
    return {role: comfy.model_patcher.ModelPatcher(VHSManagedModule(m, role), load_device=load,
                                                   offload_device=offload.get(role, mm.unet_offload_device()),
                                                   size=mm.module_size(m))
            for role, m in modules.items()}


def use(owner, *roles: str, memory_required: int = 0, also: tuple = ()) -> None:
    """Before computing: let ComfyUI load these managed parts of `owner` (and of each (owner, roles) pair in `also`,
    in the same call, so ComfyUI never frees one to make room for the other) onto their device, first freeing
    `memory_required` bytes for the activations as it does for its own models. No-op outside ComfyUI."""
    wanted = [(owner, roles), *also]
    patchers = [p[r] for o, rs in wanted for r in rs if (p := getattr(o, "patchers", None)) and r in p]
    if not patchers:
        return
    import comfy.model_management as mm  # type: ignore[import-not-found]

    # full loads only: ComfyUI's partial (lowvram) loading leaves plain torch layers - ours - on the offload device,
    # and only its own cast-weight layers can run like that; a full load also moves root-level parameters
    mm.load_models_gpu(patchers, memory_required=int(memory_required), force_full_load=True)


def release(owner, *roles: str) -> None:
    """After computing: unload these managed parts of `owner` to their offload device now, instead of when ComfyUI
    next needs the memory (no-op outside ComfyUI, where models/ offloads by itself)."""
    patchers = getattr(owner, "patchers", None)
    if not patchers:
        return
    import comfy.model_management as mm  # type: ignore[import-not-found]

    wanted = [patchers[r] for r in roles if r in patchers]
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        loaded = mm.current_loaded_models[i]
        if any(loaded.model is p for p in wanted) and loaded.model_unload():
            mm.current_loaded_models.pop(i)
            logger.info("VHS: %s moved to %s", "/".join(roles), loaded.model.offload_device)
    mm.soft_empty_cache()


def output_directory() -> str:
    """ComfyUI's output folder (outside ComfyUI: ./out)."""
    fp = _folder_paths()
    path = fp.get_output_directory() if fp is not None else os.path.abspath("out")
    os.makedirs(path, exist_ok=True)
    return path


def next_output_path(out_dir: str, prefix: str, width: int, height: int) -> str:
    """The next free <prefix>_00001_.png path, using ComfyUI's own numbering when available."""
    fp = _folder_paths()
    if fp is not None:
        folder, name, counter, _, _ = fp.get_save_image_path(prefix, out_dir, width, height)
    else:
        folder = os.path.join(out_dir, os.path.dirname(prefix))
        name = os.path.basename(prefix)
        os.makedirs(folder, exist_ok=True)
        counter = 1 + sum(1 for f in os.listdir(folder) if f.startswith(name + "_"))
    os.makedirs(folder, exist_ok=True)
    while os.path.exists(os.path.join(folder, f"{name}_{counter:05}_.png")):
        counter += 1
    return os.path.join(folder, f"{name}_{counter:05}_.png")
