"""Loader nodes: SANA-Sprint pipelines and verifiers from ComfyUI's model folders, or the embedded ShapeWorld demo.

A name that is not installed is a validation error before anything runs, naming the folder and the download; it
is never replaced by another model. The embedded ShapeWorld models are explicit, labelled choices.
"""

from __future__ import annotations

import logging
import os

from comfy_api.latest import io

from ..models import SanaSprint, VHSError, VHSVerifier, check_sana_sprint_folder, check_verifier_folder
from ..models.embedded import DEMO_SIZE, embedded_model
from ..models.precision import STORAGE_DTYPES, check_storage_device
from ..models.releases import install_hint
from . import host
from .edges import CATEGORY, BASELINES, MLLMVerifier, SanaSprintModel, Verifier
from .handles import SanaSprintHandle, VerifierHandle

logger = logging.getLogger(__name__)

EMBEDDED_SANA = "embedded: ShapeWorld demo (64 px)"
EMBEDDED_HIDDEN = EMBEDDED_SANA  # the hidden-state verifier of the same demo
EMBEDDED_CLIP = "embedded: ShapeWorld CLIP verifier (64 px)"
EMBEDDED_AE = "embedded: ShapeWorld AE-latent verifier (64 px)"
DTYPES = ["auto", "bf16", "fp16", "fp32"]
DEVICES = ["auto", "cpu"]
TEXT_ENCODER = ["keep loaded", "offload after encoding"]
DTYPE_TIP = ("Compute precision (and the weights', unless weight_storage says fp8). auto: bf16 on GPUs that support "
             "it, fp16 on other GPUs, fp32 on the CPU and for the embedded demo models.")
DEVICE_TIP = "auto follows ComfyUI's device choice (--cpu, --gpu-only, ...); cpu forces the CPU."
STORAGE_TIP = ("How the weights are kept in memory. fp8_e4m3fn / fp8_e5m2 store linear layers in 8 bits (about half "
               "the memory of bf16) and upcast each layer to the compute dtype while it runs; norms and embeddings "
               "stay in the compute dtype (not on Apple MPS). default: the compute dtype.")


def _resolve(name: str, installed: dict[str, str], embedded: dict[str, str], kind: str, folder: str) -> str | None:
    """The folder a widget value names: an embedded demo model or an installed folder; None when it names nothing."""
    if name in embedded:
        return embedded_model(embedded[name])
    return installed.get(name)


def _not_installed(name: object, kind: str, folder: str, embedded: dict[str, str]) -> str:
    """One line: what is missing, where it goes, how to get it, and the embedded alternative."""
    shown = str(name) if isinstance(name, str) and name.strip() else "(none chosen)"
    hint = install_hint(os.path.basename(str(name)) if _plain_name(name) else "<name>", host.first_folder(folder))
    return (f"{kind} {shown!r} is not installed: {hint}, then press R to refresh; or choose "
            f"{next(iter(embedded))!r} to try the pack without weights")


def _plain_name(name: object) -> bool:
    """A folder name as the widget lists them: relative, no '..', no drive or root."""
    if not isinstance(name, str) or not name.strip() or os.path.isabs(name) or "\\" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _device_dtype(device: str, dtype: str, embedded: bool):
    dev = host.torch_device(device)
    if dtype == "auto":  # the embedded demo models are tiny and trained in fp32: auto keeps them there
        dtype = "fp32" if embedded else host.auto_dtype(dev)
    return dev, dtype


class SanaSprintLoader(io.ComfyNode):
    """Load a SANA-Sprint diffusers folder (models/sana or models/diffusers) for the hidden-state sampler."""

    EMBEDDED = {EMBEDDED_SANA: "sana"}

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SanaSprintLoaderVHS",
            display_name="SANA-Sprint Loader",
            category=CATEGORY,
            description="Loads a SANA-Sprint pipeline folder (diffusers layout) from models/sana or models/diffusers, "
                        "or the embedded 64 px ShapeWorld demo model.",
            inputs=[
                io.Combo.Input("model_name", options=sorted(host.sana_models()) + list(cls.EMBEDDED),
                               tooltip="A SANA-Sprint diffusers folder (with model_index.json) in models/sana or "
                                       "models/diffusers, e.g. Sana_Sprint_1.6B_1024px_diffusers; or the embedded "
                                       "ShapeWorld demo (64 px coloured shapes, no download)."),
                io.Combo.Input("dtype", options=DTYPES, default="auto", tooltip=DTYPE_TIP),
                io.Combo.Input("device", options=DEVICES, default="auto", tooltip=DEVICE_TIP),
                io.Combo.Input("weight_storage", options=list(STORAGE_DTYPES), default="default", optional=True,
                               tooltip=STORAGE_TIP),
                io.Combo.Input("text_encoder", options=TEXT_ENCODER, default="keep loaded", optional=True,
                               tooltip="offload after encoding: the Gemma-2 text encoder leaves the GPU as soon as the "
                                       "prompt is encoded (saves ~5 GB of VRAM at 1.6B; the next new prompt loads it "
                                       "again). keep loaded: ComfyUI unloads it only when it needs the memory."),
            ],
            outputs=[SanaSprintModel.Output("model", display_name="model",
                                            tooltip="SANA-Sprint transformer, Gemma-2 text encoder, DC-AE and SCM "
                                                    "scheduler.")],
        )

    @classmethod
    def validate_inputs(cls, model_name=None) -> bool | str:
        """A name that is not installed (or a damaged folder) fails here, before anything runs."""
        if model_name is None or model_name in cls.EMBEDDED:
            return True
        path = host.sana_models().get(model_name)
        if path is None:
            return _not_installed(model_name, "SANA-Sprint model", "sana", cls.EMBEDDED)
        try:
            check_sana_sprint_folder(path)
        except VHSError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model_name: str, dtype: str, device: str, weight_storage: str = "default",
                text_encoder: str = "keep loaded") -> io.NodeOutput:
        path = _resolve(model_name, host.sana_models(), cls.EMBEDDED, "SANA-Sprint model", "sana")
        if path is None:
            raise VHSError(_not_installed(model_name, "SANA-Sprint model", "sana", cls.EMBEDDED))
        embedded = model_name in cls.EMBEDDED
        dev, dt = _device_dtype(device, dtype, embedded)
        check_storage_device(weight_storage, dev)  # the device ComfyUI will load to, not where loading starts
        # weights start on the CPU; ComfyUI's model management moves each part where it is needed
        model = SanaSprint.from_pretrained(path, dtype=dt, device="cpu", weight_storage=weight_storage)
        patchers = host.manage({"transformer": model.transformer, "text_encoder": model.pipe.text_encoder,
                                "vae": model.pipe.vae}, device)
        handle = SanaSprintHandle(model, patchers, model_name, offload_text_encoder=text_encoder ==
                                  "offload after encoding", native_size=DEMO_SIZE if embedded else None)
        return io.NodeOutput(handle)


class _VerifierLoader(io.ComfyNode):
    """Shared by the two verifier loaders: same folder, widgets and checks; they differ in the kinds they accept."""

    NODE_ID = DISPLAY = DESCRIPTION = NAME_TIP = OUTPUT_TIP = WRONG_KIND_HINT = ""
    CATEGORY_ = CATEGORY
    KINDS: tuple[str, ...] = ()
    EMBEDDED: dict[str, str] = {}
    OUTPUT = Verifier

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY,
            category=cls.CATEGORY_,
            description=cls.DESCRIPTION,
            inputs=[
                io.Combo.Input("verifier_name", options=sorted(host.verifier_models()) + list(cls.EMBEDDED),
                               tooltip=cls.NAME_TIP),
                io.Combo.Input("dtype", options=DTYPES, default="auto", tooltip=DTYPE_TIP),
                io.Combo.Input("device", options=DEVICES, default="auto", tooltip=DEVICE_TIP),
                io.Combo.Input("weight_storage", options=list(STORAGE_DTYPES), default="default", optional=True,
                               tooltip=STORAGE_TIP),
            ],
            outputs=[cls.OUTPUT.Output("verifier", display_name="verifier", tooltip=cls.OUTPUT_TIP)],
        )

    @classmethod
    def validate_inputs(cls, verifier_name=None) -> bool | str:
        """A name that is not installed, a damaged folder or the wrong kind of verifier fails here."""
        if verifier_name is None or verifier_name in cls.EMBEDDED:
            return True
        path = host.verifier_models().get(verifier_name)
        if path is None:
            return _not_installed(verifier_name, "verifier", "vhs", cls.EMBEDDED)
        try:
            _, spec, _ = check_verifier_folder(path)
        except VHSError as e:
            return str(e)
        if spec.kind not in cls.KINDS:
            return f"{verifier_name!r} is a {spec.kind} verifier; {cls.WRONG_KIND_HINT}"
        return True

    @classmethod
    def execute(cls, verifier_name: str, dtype: str, device: str, weight_storage: str = "default") -> io.NodeOutput:
        path = _resolve(verifier_name, host.verifier_models(), cls.EMBEDDED, "verifier", "vhs")
        if path is None:
            raise VHSError(_not_installed(verifier_name, "verifier", "vhs", cls.EMBEDDED))
        dev, dt = _device_dtype(device, dtype, verifier_name in cls.EMBEDDED)
        check_storage_device(weight_storage, dev)
        verifier = VHSVerifier.from_pretrained(path, dtype=dt, device="cpu", weight_storage=weight_storage)
        if verifier.kind not in cls.KINDS:
            raise VHSError(f"{verifier_name!r} is a {verifier.kind} verifier; {cls.WRONG_KIND_HINT}")
        parts = {"llm": verifier.llm, "connector": verifier.connector}
        if verifier.clip is not None:
            parts["vision_tower"] = verifier.clip.model
        return io.NodeOutput(VerifierHandle(verifier, host.manage(parts, device), verifier_name))


class VHSVerifierLoader(_VerifierLoader):
    """Load a hidden-state verifier (e.g. aimagelab/vhs-hidden-verifier) from models/vhs."""

    NODE_ID, DISPLAY = "VHSVerifierLoader", "VHS Verifier Loader"
    DESCRIPTION = ("Loads a VHS hidden-state verifier folder (llava_qwen layout with its block statistics) from "
                   "models/vhs, or the embedded ShapeWorld demo verifier. It knows which DiT block it reads, and "
                   "tells the sampler.")
    KINDS = ("hidden",)
    EMBEDDED = {EMBEDDED_HIDDEN: "hidden"}
    NAME_TIP = ("A verifier folder in models/vhs (llava_qwen config + safetensors + tokenizer + "
                "block_<l>_mean/variance statistics), e.g. vhs-hidden-verifier; or the embedded ShapeWorld demo.")
    OUTPUT_TIP = "Connector + Qwen2 LLM that scores DiT hidden states; it reads one DiT block (l*)."
    WRONG_KIND_HINT = "load it with 'MLLM Verifier Loader' and score with an MLLM Verifier node"


class MLLMVerifierLoader(_VerifierLoader):
    """Load a pixel-space (CLIP) or AE-latent baseline verifier from models/vhs."""

    NODE_ID, DISPLAY = "MLLMVerifierLoaderVHS", "MLLM Verifier Loader"
    CATEGORY_ = BASELINES
    DESCRIPTION = ("Loads a baseline verifier (e.g. aimagelab/vhs-mllm-clip-verifier with its vision_tower/) from "
                   "models/vhs, or an embedded ShapeWorld baseline.")
    KINDS = ("clip", "latent")
    EMBEDDED = {EMBEDDED_CLIP: "clip", EMBEDDED_AE: "latent"}
    OUTPUT = MLLMVerifier
    NAME_TIP = ("A baseline verifier folder in models/vhs: a CLIP verifier (its CLIP tower in vision_tower/ or "
                "beside it) or an AE-latent verifier; or an embedded ShapeWorld baseline.")
    OUTPUT_TIP = "Baseline MLLM verifier (CLIP vision tower or AE latent + connector + Qwen2)."
    WRONG_KIND_HINT = "load it with 'VHS Verifier Loader' and score with the VHS Verifier node"
