"""Loader nodes: SANA-Sprint pipelines and verifiers from ComfyUI's model folders."""

from __future__ import annotations

import logging

from ..models import SanaSprint, VHSVerifier
from ..models.precision import STORAGE_DTYPES, check_storage_device
from . import comfy

logger = logging.getLogger(__name__)

DTYPES = ["auto", "bf16", "fp16", "fp32"]
DEVICES = ["auto", "cpu"]
STORAGES = list(STORAGE_DTYPES)
TEXT_ENCODER = ["keep loaded", "offload after encoding"]
_STORAGE_TIP = ("How the weights are kept in memory. fp8_e4m3fn / fp8_e5m2 store linear layers in 8 bits (about half "
                "the memory of bf16) and upcast each layer to the compute dtype while it runs; norms and embeddings "
                "stay in the compute dtype (not on Apple MPS). default: the compute dtype.")
_DTYPE_TIP = ("Compute precision (and the weights', unless weight_storage says fp8). auto: bf16 on GPUs that support "
              "it, fp16 on other GPUs, fp32 on the CPU.")
_DEVICE_TIP = "auto follows ComfyUI's device choice (--cpu, --gpu-only, ...); cpu forces the CPU."


def _resolve(name: str, found: dict[str, str], embedded: dict[str, str], kind: str, folders: str,
             fallback: str | None) -> tuple[str, bool]:
    """(folder, is_demo) for a widget value: an installed model, the embedded demo, or - for a model a workflow
    names but this machine lacks - the embedded demo in its place, with a warning (fallback=None: an error)."""
    if name in embedded:
        return comfy.embedded_model(embedded[name]), True
    if name in found:
        return found[name], False
    if fallback is None:
        raise ValueError(f"{kind} {name!r} is not installed: put its folder in {folders} (see the README), "
                         f"or choose {next(iter(embedded))!r}")
    logger.warning("%s %r is not installed (put it in %s): using the embedded ShapeWorld demo model instead",
                   kind, name, folders)
    return comfy.embedded_model(fallback), True


def _device_dtype(device: str, dtype: str):
    dev = comfy.torch_device(device)
    return dev, comfy.auto_dtype(dev) if dtype == "auto" else dtype


class SanaSprintLoader:
    """Load a SANA-Sprint diffusers folder (models/sana or models/diffusers) for the hidden-state sampler."""

    CATEGORY = "VHS"
    RETURN_TYPES = ("SANA_SPRINT",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("SANA-Sprint transformer, Gemma-2 text encoder, DC-AE and SCM scheduler.",)
    FUNCTION = "load"
    DESCRIPTION = "Loads a SANA-Sprint pipeline folder (diffusers layout) from models/sana or models/diffusers."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (sorted(comfy.sana_models()) + list(cls.EMBEDDED), {
                "tooltip": "A SANA-Sprint diffusers folder (with model_index.json) in models/sana or models/diffusers, "
                           "e.g. Sana_Sprint_1.6B_1024px_diffusers."}),
            "dtype": (DTYPES, {"default": "auto", "tooltip": _DTYPE_TIP}),
            "device": (DEVICES, {"default": "auto", "tooltip": _DEVICE_TIP}),
        }, "optional": {
            "weight_storage": (STORAGES, {"default": "default", "tooltip": _STORAGE_TIP}),
            "text_encoder": (TEXT_ENCODER, {
                "default": "keep loaded",
                "tooltip": "offload after encoding: the Gemma-2 text encoder leaves the GPU as soon as the prompt is "
                           "encoded (saves ~5 GB of VRAM at 1.6B; the next new prompt loads it again). keep loaded: "
                           "ComfyUI unloads it only when it needs the memory."}),
        }}

    EMBEDDED = {comfy.EMBEDDED: "sana"}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        """Any name passes: a workflow's model that is not installed falls back to the embedded demo at run time."""
        return True

    def load(self, model_name: str, dtype: str, device: str, weight_storage: str = "default",
             text_encoder: str = "keep loaded"):
        path, demo = _resolve(model_name, comfy.sana_models(), self.EMBEDDED, "SANA-Sprint model", "models/sana/",
                              fallback="sana")
        dev, dt = _device_dtype(device, dtype)
        check_storage_device(weight_storage, dev)  # the device ComfyUI will load to, not where loading starts
        managed = comfy.manage({}, device) is not None  # inside ComfyUI: weights start on the offload device
        offload = text_encoder == "offload after encoding"
        model = SanaSprint.from_pretrained(path, dtype="fp32" if demo else dt, device="cpu" if managed else dev,
                                           weight_storage=weight_storage, text_encoder_offload=offload and not managed)
        model.release_text_encoder = offload  # inside ComfyUI the sampler hands it back to model management
        model.patchers = comfy.manage({"transformer": model.transformer, "text_encoder": model.pipe.text_encoder,
                                       "vae": model.pipe.vae}, device)
        if demo:
            model.demo = comfy.demo_settings()
        return (model,)


class _VerifierLoaderBase:
    CATEGORY = "VHS"
    FUNCTION = "load"
    KINDS: tuple[str, ...] = ()
    EMBEDDED: dict[str, str] = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "verifier_name": (sorted(comfy.verifier_models()) + list(cls.EMBEDDED), {"tooltip": cls.NAME_TIP}),
            "dtype": (DTYPES, {"default": "auto", "tooltip": _DTYPE_TIP}),
            "device": (DEVICES, {"default": "auto", "tooltip": _DEVICE_TIP}),
        }, "optional": {
            "weight_storage": (STORAGES, {"default": "default", "tooltip": _STORAGE_TIP}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, verifier_name):
        """Any name passes: a workflow's verifier that is not installed falls back to the embedded demo at run time."""
        return True

    def load(self, verifier_name: str, dtype: str, device: str, weight_storage: str = "default"):
        path, demo = _resolve(verifier_name, comfy.verifier_models(), self.EMBEDDED, "verifier", "models/vhs/",
                              fallback=self.FALLBACK)
        if demo:
            dtype = "fp32"
        dev, dt = _device_dtype(device, dtype)
        check_storage_device(weight_storage, dev)
        managed = comfy.manage({}, device) is not None
        verifier = VHSVerifier.from_pretrained(path, dtype=dt, device="cpu" if managed else dev,
                                               weight_storage=weight_storage)
        parts = {"llm": verifier.llm, "connector": verifier.connector}
        if verifier.clip is not None:
            parts["vision_tower"] = verifier.clip.model
        verifier.patchers = comfy.manage(parts, device)
        if verifier.kind not in self.KINDS:
            raise ValueError(f"{verifier_name!r} is a {verifier.kind} verifier; {self.WRONG_KIND_HINT}")
        return (verifier,)


class VHSVerifierLoader(_VerifierLoaderBase):
    """Load a hidden-state verifier (e.g. aimagelab/vhs-hidden-verifier) from models/vhs."""

    RETURN_TYPES = ("VHS_VERIFIER",)
    RETURN_NAMES = ("verifier",)
    OUTPUT_TOOLTIPS = ("Connector + Qwen2 LLM that scores DiT hidden states.",)
    DESCRIPTION = "Loads a VHS hidden-state verifier folder (llava_qwen layout with its block statistics)."
    KINDS = ("hidden",)
    EMBEDDED = {comfy.EMBEDDED: "hidden"}
    FALLBACK = "hidden"
    NAME_TIP = ("A verifier folder in models/vhs (llava_qwen config + safetensors + tokenizer + "
                "block_<l>_mean/variance statistics), e.g. vhs-hidden-verifier.")
    WRONG_KIND_HINT = "load it with 'MLLM Verifier Loader' and score with an MLLM Verifier node"


class MLLMVerifierLoader(_VerifierLoaderBase):
    """Load a pixel-space (CLIP) or AE-latent baseline verifier from models/vhs."""

    RETURN_TYPES = ("MLLM_VERIFIER",)
    RETURN_NAMES = ("verifier",)
    OUTPUT_TOOLTIPS = ("Baseline MLLM verifier (CLIP vision tower or AE latent + connector + Qwen2).",)
    DESCRIPTION = "Loads a baseline verifier (e.g. aimagelab/vhs-mllm-clip-verifier with its vision_tower/)."
    KINDS = ("clip", "latent")
    EMBEDDED = {comfy.EMBEDDED_CLIP: "clip", comfy.EMBEDDED_AE: "latent"}
    FALLBACK = "clip"
    NAME_TIP = ("A baseline verifier folder in models/vhs: a CLIP verifier (its CLIP tower in vision_tower/ "
                "or beside it) or an AE-latent verifier.")
    WRONG_KIND_HINT = "load it with 'VHS Verifier Loader' and score with the VHS Verifier node"
