"""The VHS verifier: a LLaVA-style connector feeding a Qwen2 causal LM that answers "yes" or "no".

Checkpoints use the authors' layout (aimagelab/vhs-hidden-verifier, aimagelab/vhs-mllm-clip-verifier): a
Hugging Face folder whose config.json has `model_type: "llava_qwen"` plus `mm_*` keys, safetensors weights
with the connector under `model.mm_projector.*`, and the tokenizer files. We read it into transformers'
own `Qwen2ForCausalLM` plus a small connector module: no reference code, no `trust_remote_code`.

Checkpoint format, in brief (see README "Verifier checkpoints"):
    config.json            Qwen2 config + model_type "llava_qwen", mm_vision_tower ("hidden_7", "vae" or a CLIP
                           id), mm_vision_select_feature ("block_7" / "patch"), mm_vision_select_layer,
                           mm_hidden_size, mm_projector_type ("mlp2x_gelu" or "linear"),
                           optional vhs_token_pool (ours; default 1)
    model*.safetensors     model.embed_tokens/layers/norm (+ lm_head unless tied), model.mm_projector.{0,2}.*
    tokenizer files        with the chat template
    block_<l>_mean*.pt, block_<l>_variance*.pt (or block_<l>_stats.safetensors)   hidden verifiers only
    vision_tower/          CLIP verifiers only (a transformers CLIPVisionModel folder)
"""

from __future__ import annotations

import json
import math
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal

import torch
from torch import nn

from .checkpoint import read_json
from .errors import InputError, ModelFolderError, check_text, require
from .features import ClipFeatures, HiddenFeatures, find_stats_files, latent_tokens, load_stats
from .hidden import HiddenStates, Scores, check_finite_tensor
from .memory import check_memory
from .precision import check_storage_device, resolve_dtype, store_weights_in

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
# The question the released verifiers were trained with (latent_verifier.py in aimagelab/VHS).
VHS_INSTRUCTION = (
    "You are an AI assistant specializing in image analysis and ranking. Your task is to analyze and compare "
    "image based on how well they match the given prompt. <image> The given prompt is: {prompt}. Please consider "
    "the prompt and the image to make a decision and response directly with 'yes' or 'no'"
)
ScoreMode = Literal["reference", "normalized"]
SCORE_MODES = ("reference", "normalized")
VerifierKind = Literal["hidden", "latent", "clip"]
_NOT_QWEN_KEYS = {"model_type", "architectures", "auto_map", "transformers_version", "_name_or_path"}


@dataclass(frozen=True)
class VerifierSpec:
    """What a verifier checkpoint expects as input, read from its config.json."""

    kind: VerifierKind
    vision_tower: str  # raw mm_vision_tower value
    mm_hidden_size: int
    llm_hidden_size: int
    projector_type: str
    layer: int | None  # DiT block for hidden verifiers
    select_layer: int  # CLIP hidden-state layer
    select_feature: str
    token_pool: int
    normalize: bool
    instruction: str
    reference_vocab: bool = True  # False: a checkpoint of ours, scored with its vocabulary as saved

    @classmethod
    def from_config(cls, cfg: dict, path: str = "") -> "VerifierSpec":
        """Parse the llava_qwen config; a folder of another model type or a nonsense value is a clear error."""
        mt = cfg.get("model_type")
        if mt != "llava_qwen":
            raise ModelFolderError(path, f"config.json has model_type {mt!r}; a VHS verifier is a 'llava_qwen' checkpoint")
        tower = cfg.get("mm_vision_tower")
        if not tower or not isinstance(tower, str):
            raise ModelFolderError(path, "config.json has no mm_vision_tower: this is a plain LLM, not a VHS verifier")
        for key in ("mm_hidden_size", "hidden_size"):
            if key not in cfg:
                raise ModelFolderError(path, f"config.json is missing {key}")
        feature = str(cfg.get("mm_vision_select_feature") or "patch")
        low = tower.lower()
        layer = None
        if "hidden" in low:
            kind = "hidden"
            m = re.fullmatch(r"block_(\d+)", feature) or re.search(r"(\d+)(?!.*\d)", tower)
            if m is None:
                raise ModelFolderError(path, f"cannot tell which DiT block this verifier reads (mm_vision_tower={tower!r}, "
                                             f"mm_vision_select_feature={feature!r}); expected 'block_<n>' or 'hidden_<n>'")
            layer = int(m.group(1))
            if layer > 511:
                raise ModelFolderError(path, f"this verifier claims to read DiT block {layer}; no DiT has that many")
        elif "vae" in low or "latent" in low:
            kind = "latent"
        else:
            kind = "clip"
        projector = str(cfg.get("mm_projector_type") or "linear")
        projector_depth(projector, path)
        ints = {}
        for key, default, low_, high in (("vhs_token_pool", 1, 1, 64), ("mm_vision_select_layer", -2, -512, 512)):
            value = cfg.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low_ <= value <= high:
                raise ModelFolderError(path, f"config value {key}={value!r} must be a whole number from {low_} to {high}")
            ints[key] = value
        instruction = cfg.get("vhs_instruction") or VHS_INSTRUCTION
        if not isinstance(instruction, str) or instruction.count(IMAGE_TOKEN) != 1 or "{prompt}" not in instruction:
            raise ModelFolderError(path, f"vhs_instruction must contain {IMAGE_TOKEN!r} once and a {{prompt}} field")
        return cls(
            kind=kind,
            vision_tower=tower,
            mm_hidden_size=int(cfg["mm_hidden_size"]),
            llm_hidden_size=int(cfg["hidden_size"]),
            projector_type=projector,
            layer=layer,
            select_layer=ints["mm_vision_select_layer"],
            select_feature=feature,
            token_pool=ints["vhs_token_pool"],
            normalize=bool(cfg.get("mm_vision_normalize", kind == "hidden")) and kind == "hidden",
            instruction=instruction,
            reference_vocab=bool(cfg.get("vhs_reference_vocab", True)),
        )

    def to_config(self) -> dict:
        """The llava_qwen config keys that describe this verifier's input (as the authors' checkpoints write them)."""
        feature = f"block_{self.layer}" if self.kind == "hidden" else self.select_feature
        cfg = {
            "model_type": "llava_qwen", "architectures": ["LlavaQwenForCausalLM"],
            "mm_vision_tower": self.vision_tower, "mm_hidden_size": self.mm_hidden_size,
            "mm_projector_type": self.projector_type, "mm_vision_select_layer": self.select_layer,
            "mm_vision_select_feature": feature, "mm_patch_merge_type": "flat", "mm_use_im_start_end": False,
            "mm_use_im_patch_token": False, "use_mm_proj": True, "image_aspect_ratio": "pad",
            "mm_vision_normalize": self.normalize,
        }
        if self.token_pool != 1:
            cfg["vhs_token_pool"] = self.token_pool
        if not self.reference_vocab:
            cfg["vhs_reference_vocab"] = False
        if self.instruction != VHS_INSTRUCTION:
            cfg["vhs_instruction"] = self.instruction
        return cfg


MAX_PROJECTOR_DEPTH = 16


def projector_depth(projector_type: str, path: str = "") -> int:
    """Linear layers of a LLaVA projector type: 'linear' = 1, 'mlp<k>x_gelu' = k (1..MAX_PROJECTOR_DEPTH)."""
    if projector_type == "linear":
        return 1
    m = re.fullmatch(r"mlp(\d{1,3})x_gelu", projector_type)
    if m is None or not 1 <= int(m.group(1)) <= MAX_PROJECTOR_DEPTH:
        raise ModelFolderError(path, f"unsupported mm_projector_type {projector_type!r} (supported: 'linear', "
                                     f"'mlp<k>x_gelu' with k from 1 to {MAX_PROJECTOR_DEPTH})")
    return int(m.group(1))


def build_connector(projector_type: str, in_dim: int, out_dim: int) -> nn.Module:
    """The LLaVA projector: 'linear' or 'mlp<k>x_gelu' (Linear, then k-1 x [GELU, Linear])."""
    depth = projector_depth(projector_type)
    if projector_type == "linear":
        return nn.Linear(in_dim, out_dim)
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(1, depth):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
CONNECTOR_PREFIX = "model.mm_projector."


@lru_cache(maxsize=1)
def _llava_qwen_llm():
    """transformers' Qwen2ForCausalLM for the LLM part of a llava_qwen checkpoint: the connector's tensors beside it
    (model.mm_projector.*) are read separately, so the library must not report them as unexpected."""
    from transformers import Qwen2ForCausalLM

    class LlavaQwenLLM(Qwen2ForCausalLM):
        _keys_to_ignore_on_load_unexpected = [r"model\.mm_projector\."]

    return LlavaQwenLLM


def check_verifier_folder(path: str | os.PathLike) -> tuple[dict, VerifierSpec, list[str]]:
    """Check, without building anything, that `path` is a whole verifier folder in the llava_qwen layout: a sane
    config, tokenizer files, whole safetensors weights whose connector tensors fit the config. Returns (config, spec,
    weight files)."""
    from .checkpoint import check_config_sizes, inventory, weight_files

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelFolderError(path, "verifier folder not found")
    cfg_file = os.path.join(path, "config.json")
    cfg = read_json(cfg_file)
    check_config_sizes(cfg, cfg_file)
    spec = VerifierSpec.from_config(cfg, cfg_file)
    if not any(os.path.isfile(os.path.join(path, f)) for f in _TOKENIZER_FILES):
        raise ModelFolderError(path, "the verifier has no tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
    files = weight_files(path, "model")
    found = inventory(files)
    with torch.device("meta"):
        expected = build_connector(spec.projector_type, spec.mm_hidden_size, spec.llm_hidden_size).state_dict()
    for key, tensor in expected.items():
        name = CONNECTOR_PREFIX + key
        if name not in found:
            raise ModelFolderError(files[0] if len(files) == 1 else path,
                                   f"no connector weights {name} in the checkpoint (mm_projector_type "
                                   f"{spec.projector_type!r})")
        if found[name][1] != tuple(tensor.shape):
            raise ModelFolderError(found[name][2], f"connector tensor {name} is {list(found[name][1])}, but the config "
                                                   f"(mm_hidden_size {spec.mm_hidden_size}, hidden_size "
                                                   f"{spec.llm_hidden_size}) needs {list(tensor.shape)}")
    return cfg, spec, files


def _load_prefixed(files: list[str], prefix: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out = {}
    for fname in files:
        with safe_open(fname, framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    out[key[len(prefix):]] = f.get_tensor(key)
    return out


def top_tokens(logits: torch.Tensor) -> list[int]:
    """The answer token per row, ties broken as the authors' code breaks them: their 3-beam generate() finishes by
    taking the last of the equally scored hypotheses, which is the larger token id among tied top tokens (so a bf16
    tie between "no" (2152) and "yes" (9693) answers yes)."""
    best = logits.max(dim=-1, keepdim=True).values
    ids = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    return torch.where(logits == best, ids, -1).max(dim=-1).values.tolist()


def add_reference_unk_token(llm, tokenizer) -> int:
    """What the authors' loader does to a checkpoint whose name has no "qwen" when the tokenizer has no unk token:
    add "[UNK]" and resize the embeddings to len(tokenizer) rounded up to a multiple of 64 (for Qwen2.5's vocabulary:
    151,936 rows -> 151,680), filling the last row with the mean of the others. The logits' softmax then runs over
    the resized vocabulary, which is what the released verifiers were scored with. When the vocabulary grows instead
    (small test tokenizers), the new rows get that mean too, never random values. Returns the new row count."""
    old_rows = int(llm.get_input_embeddings().weight.shape[0])
    added = tokenizer.add_special_tokens({"unk_token": "[UNK]"})
    llm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
    rows = int(llm.get_input_embeddings().weight.shape[0])
    with torch.no_grad():
        for weight in {id(w): w for w in (llm.get_input_embeddings().weight,
                                          llm.get_output_embeddings().weight)}.values():
            first_new = min(old_rows, rows - added) if added else old_rows
            if first_new < rows:
                weight[first_new:] = weight[:first_new].mean(dim=0, keepdim=True)
    return rows


class VHSVerifier:
    """Scores N candidates of one prompt in one batched LLM forward; higher is better."""

    def __init__(self, llm, tokenizer, connector: nn.Module, spec: VerifierSpec, name: str = "vhs-verifier",
                 hidden_features: HiddenFeatures | None = None, clip: ClipFeatures | None = None):
        self.llm, self.tokenizer, self.connector, self.spec, self.name = llm, tokenizer, connector, spec, name
        self.hidden_features, self.clip = hidden_features, clip
        for module in (llm, connector) + ((clip.model,) if clip is not None else ()):
            module.requires_grad_(False)  # inference by default; training unfreezes what it trains
        self.yes_id = self._single_token("yes")
        self.no_id = self._single_token("no")
        self._prompt_ids = lru_cache(maxsize=64)(self._tokenize_prompt)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: str | torch.dtype = "fp32",
                        device: str | torch.device = "cpu", stats: tuple[str, str] | str | None = None,
                        vision_tower_path: str | None = None,
                        weight_storage: str | torch.dtype | None = "default") -> "VHSVerifier":
        """Load a verifier folder in the official llava_qwen layout (local files only).

        weight_storage='fp8_e4m3fn' keeps the LLM's (and CLIP tower's) linear weights in fp8, upcast per layer.
        """
        require("transformers")
        require("safetensors")
        from transformers import AutoTokenizer, Qwen2Config

        from .checkpoint import refuse_meta, refuse_missing

        path = os.fspath(path)
        cfg, spec, files = check_verifier_folder(path)
        torch_dtype = resolve_dtype(dtype)
        check_storage_device(weight_storage, device)
        try:
            qcfg = Qwen2Config(**{k: v for k, v in cfg.items() if k not in _NOT_QWEN_KEYS})
            llm, info = _llava_qwen_llm().from_pretrained(path, config=qcfg, dtype=torch_dtype, local_files_only=True,
                                                          use_safetensors=True, output_loading_info=True)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise ModelFolderError(path, f"could not load the verifier LLM: {e}") from e
        refuse_missing(info.get("missing_keys", ()), info.get("mismatched_keys", ()), files, path)
        refuse_meta(llm, path)
        try:  # the config is given: the tokenizer need not parse config.json, whose llava_qwen type it does not know
            tokenizer = AutoTokenizer.from_pretrained(path, config=qcfg, local_files_only=True)
        except (OSError, ValueError, ImportError, TypeError, KeyError) as e:
            raise ModelFolderError(path, f"the verifier's tokenizer cannot be loaded: {e}") from e
        if spec.reference_vocab and tokenizer.unk_token is None and "qwen" not in os.path.basename(
                os.path.normpath(path)).lower():  # the condition of the authors' loader, for released checkpoints
            rows = add_reference_unk_token(llm, tokenizer)
            logger.info("vocabulary as the authors' loader sets it: [UNK] added, %d embedding rows", rows)
        llm.to(device).eval()

        connector = build_connector(spec.projector_type, spec.mm_hidden_size, spec.llm_hidden_size)
        try:  # shapes were checked by check_verifier_folder; extra tensors are another projector
            connector.load_state_dict(_load_prefixed(files, CONNECTOR_PREFIX))
        except RuntimeError as e:
            raise ModelFolderError(path, f"the connector tensors do not match mm_projector_type "
                                         f"{spec.projector_type!r}: {e}") from e
        connector.to(device=device, dtype=torch_dtype).eval()

        hidden_features = clip = None
        if spec.kind == "hidden":
            mean = var = None
            if spec.normalize:
                source = stats or find_stats_files(path, spec.layer)
                if source is None:
                    raise ModelFolderError(
                        path, f"this hidden-state verifier needs normalisation statistics for block {spec.layer}: put "
                              f"block_{spec.layer}_mean_bf16.pt and block_{spec.layer}_variance_bf16.pt in the folder")
                mean, var = load_stats(source)
            hidden_features = HiddenFeatures(spec.layer, mean, var, spec.token_pool)
        elif spec.kind == "clip":
            tower = vision_tower_path or _find_vision_tower(path, spec.vision_tower)
            clip = ClipFeatures.from_pretrained(tower, spec.select_layer, spec.select_feature, torch_dtype, device)
            if clip.hidden_size != spec.mm_hidden_size:
                raise ModelFolderError(tower, f"vision tower width {clip.hidden_size} does not match the verifier's "
                                              f"mm_hidden_size {spec.mm_hidden_size}")
        store_weights_in(llm, weight_storage, torch_dtype)
        if clip is not None:
            store_weights_in(clip.model, weight_storage, torch_dtype)
        logger.info("loaded %s verifier from %s (%s)", spec.kind, path, torch_dtype)
        return cls(llm, tokenizer, connector, spec, os.path.basename(os.path.normpath(path)), hidden_features, clip)

    @classmethod
    def from_llm(cls, llm_path: str | os.PathLike, kind: VerifierKind, mm_hidden_size: int, layer: int | None = None,
                 projector_type: str = "mlp2x_gelu", stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                 vision_tower_path: str | None = None, token_pool: int = 1, dtype: str | torch.dtype = "fp32",
                 device: str | torch.device = "cpu", seed: int = 0) -> "VHSVerifier":
        """A new verifier to train: a plain Qwen2 LLM folder (e.g. Qwen2.5-0.5B) plus a freshly initialised connector."""
        from transformers import AutoTokenizer, Qwen2ForCausalLM

        llm_path = os.fspath(llm_path)
        cfg_file = os.path.join(llm_path, "config.json")
        if not os.path.isfile(cfg_file):
            raise ModelFolderError(llm_path, "LLM folder has no config.json")
        model_type = read_json(cfg_file).get("model_type")
        if model_type != "qwen2":
            raise ModelFolderError(llm_path, f"expected a Qwen2 causal LM (model_type 'qwen2'), found {model_type!r}")
        if kind == "hidden" and layer is None:
            raise InputError("a hidden-state verifier needs the DiT block it reads (layer)")
        torch_dtype = resolve_dtype(dtype)
        try:
            llm = Qwen2ForCausalLM.from_pretrained(llm_path, dtype=torch_dtype, local_files_only=True).to(device)
            tokenizer = AutoTokenizer.from_pretrained(llm_path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelFolderError(llm_path, f"could not load the LLM or its tokenizer: {e}") from e
        if not tokenizer.chat_template:
            raise ModelFolderError(llm_path, "the tokenizer has no chat template (use an instruct or base Qwen2.5 folder)")
        torch.manual_seed(seed)
        clip = None
        if kind == "clip":
            if vision_tower_path is None:
                raise InputError("a CLIP verifier needs vision_tower_path (a CLIPVisionModel folder)")
            clip = ClipFeatures.from_pretrained(vision_tower_path, dtype=torch_dtype, device=device)
            mm_hidden_size = clip.hidden_size
        spec = VerifierSpec(
            kind=kind, vision_tower={"hidden": f"hidden_{layer}", "latent": "vae"}.get(kind, "openai/clip-vit-large-patch14-336"),
            mm_hidden_size=int(mm_hidden_size), llm_hidden_size=int(llm.config.hidden_size), projector_type=projector_type,
            layer=layer if kind == "hidden" else None, select_layer=-2, select_feature="patch", token_pool=token_pool,
            normalize=kind == "hidden" and stats is not None, instruction=VHS_INSTRUCTION, reference_vocab=False)
        connector = build_connector(projector_type, spec.mm_hidden_size, spec.llm_hidden_size).to(device, torch_dtype)
        hidden = HiddenFeatures(layer, *(stats or (None, None)), token_pool) if kind == "hidden" else None
        name = f"vhs-{kind}-{os.path.basename(os.path.normpath(llm_path))}"
        return cls(llm, tokenizer, connector, spec, name, hidden_features=hidden, clip=clip)

    def save_pretrained(self, path: str | os.PathLike, stats_format: Literal["safetensors", "pt"] = "safetensors",
                        overwrite: bool = False) -> str:
        """Write this verifier in the official llava_qwen layout; the folder appears only once complete."""
        from .io import add_tensors_to_checkpoint, atomic_dir

        path = os.fspath(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.llm.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            connector = {f"model.mm_projector.{k}": v for k, v in self.connector.state_dict().items()}
            add_tensors_to_checkpoint(tmp, connector, "model-mm_projector.safetensors")
            cfg_file = os.path.join(tmp, "config.json")
            cfg = read_json(cfg_file)
            cfg.update(self.spec.to_config())
            with open(cfg_file, "w", encoding="utf-8") as f:
                json.dump(cfg, f, indent=2)
            hf = self.hidden_features
            if hf is not None and hf.mean is not None:
                if stats_format == "pt":  # the released form: one bf16 tensor per file
                    torch.save(hf.mean.to(torch.bfloat16), os.path.join(tmp, f"block_{hf.layer}_mean_bf16.pt"))
                    torch.save(hf.variance.to(torch.bfloat16), os.path.join(tmp, f"block_{hf.layer}_variance_bf16.pt"))
                else:
                    from safetensors.torch import save_file

                    save_file({"mean": hf.mean.contiguous(), "variance": hf.variance.contiguous()},
                              os.path.join(tmp, f"block_{hf.layer}_stats.safetensors"), metadata={"format": "pt"})
            if self.clip is not None:
                self.clip.save_pretrained(os.path.join(tmp, "vision_tower"))
        return path

    def compile(self, **kwargs) -> "VHSVerifier":
        """torch.compile each LLM decoder layer, the connector and, for a CLIP verifier, each layer of its vision tower
        (kwargs go to torch.compile)."""
        layers = list(self.llm.model.layers)
        if self.clip is not None:
            tower = self.clip.model
            layers += list(getattr(tower, "vision_model", tower).encoder.layers)  # transformers 5 flattened it
        for layer in layers:
            layer.compile(**kwargs)
        self.connector.compile(**kwargs)
        return self

    # ---------------------------------------------------------------- properties
    @property
    def kind(self) -> VerifierKind:
        return self.spec.kind

    @property
    def device(self) -> torch.device:
        return self.llm.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.dtype

    # ---------------------------------------------------------------- prompt layout
    def activation_bytes(self, hidden: HiddenStates, text_tokens: int = 128) -> int:
        """Rough upper bound of the activation memory of scoring these candidates: the LLM over text + visual tokens
        (per token a few hidden-size tensors and the gated MLP), plus the CLIP tower for pixel-space verifiers. For
        memory managers that free room before a run (ComfyUI's load_models_gpu(memory_required=...))."""
        item = self.dtype.itemsize
        n = len(hidden)
        if self.clip is not None:
            vc = self.clip.model.config
            image_tokens = (vc.image_size // vc.patch_size) ** 2
            tower = n * (image_tokens + 1) * (4 * vc.hidden_size + 2 * vc.intermediate_size) * item
        else:
            image_tokens = hidden.tokens // max(1, self.spec.token_pool) ** 2 if self.kind == "hidden" else hidden.tokens
            tower = 0
        return int(self.features_activation_bytes(n, image_tokens, text_tokens) + tower)

    def features_activation_bytes(self, n: int, image_tokens: int, text_tokens: int = 128) -> int:
        """Rough upper bound of the LLM's activation memory for n candidates of `image_tokens` visual tokens."""
        cfg = self.llm.config
        return int(n * (image_tokens + text_tokens) * (4 * cfg.hidden_size + 3 * cfg.intermediate_size)
                   * self.dtype.itemsize)

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if not ids:
            raise ModelFolderError("", f"the verifier tokenizer cannot encode {word!r}")
        return int(ids[0])

    def _tokenize_prompt(self, prompt: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        message = self.spec.instruction.format(prompt=prompt)
        return self.tokens_around_image(message)

    def tokens_around_image(self, message: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Token ids before and after the image placeholder of a user message in the chat template, chunk by chunk like
        LLaVA's tokenizer_image_token (a BOS the tokenizer adds to both chunks is kept once). Training's questions and
        the scoring question both go through here, so they see the same tokens."""
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                  add_generation_prompt=True)
        chunks = text.split(IMAGE_TOKEN)
        if len(chunks) != 2:
            raise InputError(f"the prompt must not contain {IMAGE_TOKEN!r}, and the template needs exactly one")
        before = self.tokenizer(chunks[0]).input_ids
        after = self.tokenizer(chunks[1]).input_ids
        bos = self.tokenizer.bos_token_id
        if bos is not None and before[:1] == [bos] and after[:1] == [bos]:
            after = after[1:]
        return tuple(before), tuple(after)

    def prompt_token_ids(self, prompt: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(ids before the image, ids after it) of the verifier's question about `prompt` (cached per prompt)."""
        return self._prompt_ids(self._check_prompt(prompt))

    def layout(self, prompt: str, image_tokens: int) -> tuple[int, int, int]:
        """(tokens before the image, image tokens, tokens after) for one candidate."""
        before, after = self.prompt_token_ids(prompt)
        return len(before), image_tokens, len(after)

    @staticmethod
    def _check_prompt(prompt: str) -> str:
        return check_text(prompt)

    def build_inputs(self, prompt: str, features: torch.Tensor) -> torch.Tensor:
        """Input embeddings [N, before + tokens + after, H]: text, connector(features), text."""
        before, after = self.prompt_token_ids(prompt)
        n, t, c = features.shape
        if c != self.spec.mm_hidden_size:
            raise InputError(f"features have {c} channels, the verifier's connector expects {self.spec.mm_hidden_size}")
        limit = int(getattr(self.llm.config, "max_position_embeddings", 32768))
        if len(before) + t + len(after) > limit:
            raise InputError(f"the prompt is too long: {len(before) + t + len(after)} tokens with the image, "
                             f"the verifier reads at most {limit}")
        embed = self.llm.get_input_embeddings()
        dev = self.device
        text = embed(torch.tensor(before + after, device=dev))
        visual = self.connector(features.to(dev, self.connector_dtype))
        text = text.to(visual.dtype).unsqueeze(0).expand(n, -1, -1)
        return torch.cat([text[:, : len(before)], visual, text[:, len(before):]], dim=1).to(self.dtype)

    @property
    def connector_dtype(self) -> torch.dtype:
        return next(self.connector.parameters()).dtype

    # ---------------------------------------------------------------- features
    def features(self, model, hidden: HiddenStates, callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """What this verifier reads for each candidate; pixel-space kinds finish (and decode) the candidates first."""
        if self.kind == "hidden":
            if hidden.layer != self.spec.layer:
                raise InputError(f"this verifier reads DiT block {self.spec.layer}, but the candidates stopped after "
                                 f"block {hidden.layer}: generate them with layer {self.spec.layer}")
            return self.stored_features(hidden=hidden.hidden, grid=hidden.grid)
        if model is None:
            raise InputError(f"the {self.kind} verifier needs the SANA-Sprint model to finish the candidates")
        latents = model.suffix(hidden, callback=callback)
        if self.kind == "latent":
            return self.stored_features(latents=latents)
        return self.stored_features(images=model.decode(latents))

    def stored_features(self, hidden: torch.Tensor | None = None, grid: tuple[int, int] | None = None,
                        latents: torch.Tensor | None = None, images: torch.Tensor | None = None) -> torch.Tensor:
        """[N, tokens, channels] features from what a candidate leaves behind: its h_l* [N, T, C] (hidden verifiers,
        with the token grid), its final latent [N, C, h, w] (AE-latent verifiers) or its image [N, 3, H, W] in 0..1
        or uint8 (CLIP verifiers). Live candidates (features()) and stored training data take this same path."""
        if self.kind == "hidden":
            if hidden is None or grid is None:
                raise InputError("a hidden-state verifier reads h_l* and its token grid")
            if hidden.shape[-1] != self.spec.mm_hidden_size:
                raise InputError(f"the hidden states are {hidden.shape[-1]} wide, the verifier expects "
                                 f"{self.spec.mm_hidden_size}: it was trained for another SANA-Sprint")
            return self.hidden_features(hidden, grid)
        if self.kind == "latent":
            if latents is None:
                raise InputError("an AE-latent verifier reads final latents")
            return latent_tokens(latents)
        if images is None:
            raise InputError("a CLIP verifier reads images")
        return self.clip(images.float() / 255 if images.dtype == torch.uint8 else images)

    # ---------------------------------------------------------------- scoring
    def score_features(self, prompt: str, features: torch.Tensor, mode: ScoreMode = "reference",
                       batch_size: int | None = None, indices: tuple[int, ...] | None = None,
                       run: str = "") -> Scores:
        """Score [N, T, C] features for one prompt with one forward per batch (all N by default).

        The one scoring pass of the library: inference, training's evaluation and the benchmarks all come here."""
        if mode not in SCORE_MODES:
            raise InputError(f"unknown score mode {mode!r}; choose one of {SCORE_MODES}")
        n = features.shape[0]
        if n < 1:
            raise InputError("no candidates to score")
        bs = n if not batch_size else max(1, int(batch_size))
        check_memory(self.features_activation_bytes(min(n, bs), features.shape[1]), self.device,
                     f"scoring {min(n, bs)} candidates", per_item=self.features_activation_bytes(1, features.shape[1]))
        logits = []
        with torch.inference_mode():
            for start in range(0, n, bs):
                logits.append(self.answer_logits(self.build_inputs(prompt, features[start:start + bs])))
        return self.scores_from_logits(torch.cat(logits), mode, indices or tuple(range(n)), run)

    def answer_logits(self, embeds: torch.Tensor) -> torch.Tensor:
        """Next-token logits at the answer position [N, vocab]: the LM head runs on that one position only."""
        extra = {}
        if embeds.is_meta:  # FLOP counting: transformers' mask shortcuts read values, so give the mask explicitly
            t = embeds.shape[1]
            extra = dict(attention_mask=torch.zeros(embeds.shape[0], 1, t, t, device="meta", dtype=embeds.dtype),
                         position_ids=torch.arange(t, device="meta")[None])
        out = self.llm(inputs_embeds=embeds, logits_to_keep=1, use_cache=False, **extra)
        return out.logits[:, -1].float()

    def scores_from_logits(self, logits: torch.Tensor, mode: ScoreMode, indices: tuple[int, ...],
                           run: str = "") -> Scores:
        """Answer-position logits [N, vocab] -> Scores (P(yes), P(no), the top token's verdict, the ranking value)."""
        # Before any token is decoded from them: NaN or +inf is an overflow (-inf only marks a token as impossible).
        check_finite_tensor(torch.nan_to_num(logits, nan=math.nan, posinf=math.inf, neginf=0.0), "the verifier's answer logits",
                            indices)
        probs = torch.softmax(logits.float(), dim=-1)
        p_yes, p_no = probs[:, self.yes_id], probs[:, self.no_id]
        top = top_tokens(logits)
        says_yes = torch.tensor([self._reads_yes(t) for t in top], dtype=torch.bool)
        scores = Scores(scores=p_yes.cpu(), p_yes=p_yes.cpu(), p_no=p_no.cpu(), says_yes=says_yes, mode="", verifier=self.name,
                        indices=tuple(indices), run_key=run)
        return scores.with_mode(mode)

    def _reads_yes(self, token_id: int) -> bool:
        """The reference's verdict rule: the decoded answer token contains "yes" (any case)."""
        return "yes" in self.tokenizer.decode([token_id], skip_special_tokens=True).lower()

    def score(self, model, hidden: HiddenStates, mode: ScoreMode = "reference", batch_size: int | None = None,
              callback: Callable[[int, int], None] | None = None) -> Scores:
        """Score every candidate of `hidden` (same interface for hidden, latent and CLIP verifiers)."""
        feats = self.features(model, hidden, callback=callback)
        return self.score_features(hidden.prompt, feats, mode=mode, batch_size=batch_size, indices=hidden.indices,
                                   run=hidden.run_key)

    def score_with_generate(self, prompt: str, features: torch.Tensor) -> Scores:
        """Slow path as the reference runs it: one candidate at a time, 3-beam generate of one token."""
        logits = []
        with torch.inference_mode():
            for i in range(features.shape[0]):
                embeds = self.build_inputs(prompt, features[i:i + 1])
                out = self.llm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                                        device=self.device), num_beams=3, max_new_tokens=1, do_sample=False,
                                        return_dict_in_generate=True, output_scores=True,
                                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
                logits.append(out.scores[0][0].float())  # first beam of the first step: log-softmax of the logits
        return self.scores_from_logits(torch.stack(logits), "reference", tuple(range(features.shape[0])))


def _find_vision_tower(path: str, tower: str) -> str:
    """Where a CLIP verifier's vision tower lives locally: <verifier>/vision_tower, a sibling folder, or a path."""
    candidates = [os.path.join(path, "vision_tower"),
                  os.path.join(os.path.dirname(os.path.normpath(path)), os.path.basename(tower.rstrip("/\\")))]
    for c in candidates:
        if os.path.isfile(os.path.join(c, "config.json")):
            return c
    raise ModelFolderError(path, f"this CLIP verifier needs its vision tower {tower!r}: put that model in "
                                 f"{candidates[0]} (or next to the verifier as {candidates[1]})")
