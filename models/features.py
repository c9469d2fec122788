"""What each verifier kind looks at, as [N, tokens, channels] features ready for the connector.

- hidden: the DiT hidden state h_l*, standardised per position with the released statistics, optionally pooled.
- latent: the final DC-AE latent of each finished candidate ("MLLM w/ AE").
- clip:   decoded pixels through a CLIP vision tower from transformers ("MLLM w/ CLIP").
"""

from __future__ import annotations

import glob
import logging
import os

import torch
import torch.nn.functional as F

from .errors import InputError, ModelFolderError
from .io import to_uint8

logger = logging.getLogger(__name__)

STATS_EPS = 1e-6  # as the reference's hidden-state processor


# ------------------------------------------------------------------ normalisation statistics
def _load_tensor_pt(path: str) -> torch.Tensor:
    """Load a released `.pt` statistics file safely: tensors only, no arbitrary unpickling."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here; report them all the same way
        raise ModelFolderError(path, f"cannot read normalisation statistics safely (tensors only): {e}") from e
    if not isinstance(obj, torch.Tensor):
        raise ModelFolderError(path, f"normalisation statistics must be a single tensor, found {type(obj).__name__}")
    return obj


def find_stats_files(folder: str, layer: int) -> tuple[str, str] | str | None:
    """Locate statistics for block `layer` in `folder`: a converted safetensors file, or the released .pt pair."""
    st = os.path.join(folder, f"block_{layer}_stats.safetensors")
    if os.path.isfile(st):
        return st
    means = sorted(glob.glob(os.path.join(folder, f"block_{layer}_mean*.pt")))
    variances = sorted(glob.glob(os.path.join(folder, f"block_{layer}_variance*.pt")))
    if means and variances:
        return means[0], variances[0]
    return None


def load_stats(source: tuple[str, str] | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load (mean, variance) from a `(mean.pt, variance.pt)` pair or a `*_stats.safetensors` file."""
    if isinstance(source, str):
        from safetensors.torch import load_file

        try:
            data = load_file(source)
        except Exception as e:  # noqa: BLE001
            raise ModelFolderError(source, f"cannot read statistics file: {e}") from e
        if set(data) != {"mean", "variance"}:
            raise ModelFolderError(source, f"statistics file must hold 'mean' and 'variance', found {sorted(data)}")
        return data["mean"], data["variance"]
    mean_path, var_path = source
    return _load_tensor_pt(mean_path), _load_tensor_pt(var_path)


def convert_stats_to_safetensors(mean_path: str, variance_path: str, out_path: str) -> str:
    """One-shot conversion of the released pickled stats to a safetensors file (written atomically)."""
    from safetensors.torch import save_file

    mean, var = _load_tensor_pt(mean_path), _load_tensor_pt(variance_path)
    if mean.shape != var.shape:
        raise InputError(f"mean {tuple(mean.shape)} and variance {tuple(var.shape)} have different shapes")
    from .io import write_atomic

    write_atomic(out_path, lambda tmp: save_file({"mean": mean.contiguous(), "variance": var.contiguous()}, tmp,
                                                 metadata={"format": "pt"}))
    return out_path


class HiddenFeatures:
    """Standardise h_l* exactly as the reference does: (h - mean[:, None]) / sqrt(var[:, None] + 1e-6)."""

    def __init__(self, layer: int, mean: torch.Tensor | None, variance: torch.Tensor | None, token_pool: int = 1):
        self.layer = int(layer)
        self.mean, self.variance = mean, variance
        if (mean is None) != (variance is None):
            raise InputError("normalisation needs both the mean and the variance")
        if token_pool < 1:
            raise InputError(f"token pooling factor must be >= 1, got {token_pool}")
        self.token_pool = int(token_pool)

    def __call__(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[N, T, C] hidden states -> [N, T', C] normalised (and pooled) float32 features."""
        x = h.float()
        if self.mean is not None:
            mean = self.mean.to(x.device, torch.float32).unsqueeze(1)
            var = self.variance.to(x.device, torch.float32).unsqueeze(1)
            try:
                x = (x - mean) / torch.sqrt(var + STATS_EPS)
            except RuntimeError as e:
                raise InputError(
                    f"normalisation statistics of shape {tuple(self.mean.shape)} do not fit hidden states of shape "
                    f"{tuple(h.shape[1:])}; they were computed for another resolution or model"
                ) from e
            if x.shape != h.shape:
                raise InputError(
                    f"normalisation statistics of shape {tuple(self.mean.shape)} broadcast hidden states "
                    f"{tuple(h.shape)} to {tuple(x.shape)}; they were computed for another resolution or model"
                )
        if self.token_pool > 1:
            x = pool_tokens(x, grid, self.token_pool)
        return x


def pool_tokens(x: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """Average-pool a [N, H*W, C] token grid by `factor` per side (fewer visual tokens for the LLM)."""
    n, t, c = x.shape
    gh, gw = grid
    if gh * gw != t:
        raise InputError(f"token grid {gh}x{gw} does not match {t} tokens")
    if gh % factor or gw % factor:
        raise InputError(f"token grid {gh}x{gw} is not divisible by the pooling factor {factor}")
    x = x.transpose(1, 2).reshape(n, c, gh, gw)
    x = F.avg_pool2d(x, factor)
    return x.flatten(2).transpose(1, 2)


def latent_tokens(latents: torch.Tensor) -> torch.Tensor:
    """Final AE latents [N, C, h, w] -> [N, h*w, C] tokens (the "MLLM w/ AE" input)."""
    return latents.float().flatten(2).transpose(1, 2)


class ClipFeatures:
    """A CLIP vision tower (transformers' CLIPVisionModel) that turns decoded images into patch features."""

    def __init__(self, model, processor, select_layer: int = -2, select_feature: str = "patch"):
        if select_feature not in ("patch", "cls_patch"):
            raise InputError(f"unsupported CLIP feature selection {select_feature!r} (use 'patch' or 'cls_patch')")
        self.model, self.processor = model.eval(), processor
        self.select_layer, self.select_feature = int(select_layer), select_feature

    @classmethod
    def from_pretrained(cls, path: str, select_layer: int = -2, select_feature: str = "patch",
                        dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "ClipFeatures":
        """Load a local CLIP vision tower folder (config.json, weights, preprocessor_config.json)."""
        from transformers import CLIPImageProcessor, CLIPVisionModel

        from .checkpoint import check_config_sizes, read_header, read_json, refuse_meta, refuse_missing

        cfg_file = os.path.join(path, "config.json")
        cfg = read_json(cfg_file)
        check_config_sizes(cfg.get("vision_config", cfg), cfg_file)
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        for file in files:
            read_header(file)
        if not files and not glob.glob(os.path.join(path, "pytorch_model*.bin")):
            raise ModelFolderError(path, "the CLIP vision tower has no weights (model.safetensors or pytorch_model.bin)")
        try:  # a .bin (the released CLIP-L/336 has only that) is read by transformers with weights_only=True
            processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
            model, info = CLIPVisionModel.from_pretrained(path, dtype=dtype, local_files_only=True,
                                                          output_loading_info=True)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise ModelFolderError(path, f"could not load the CLIP vision tower: {e}") from e
        refuse_missing(info.get("missing_keys", ()), info.get("mismatched_keys", ()), files, path)
        refuse_meta(model, path)
        model.to(device)
        return cls(model, processor, select_layer, select_feature)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def save_pretrained(self, path: str) -> None:
        """Write the tower and its image processor (a transformers CLIPVisionModel folder)."""
        self.model.save_pretrained(path, safe_serialization=True)
        self.processor.save_pretrained(path)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in 0..1 -> [N, patches, hidden] features, preprocessed like PIL images would be."""
        arrays = [to_uint8(img) for img in images]
        pixels = self.processor(images=arrays, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = self.model(pixels.to(self.model.device, self.model.dtype), output_hidden_states=True)
        feats = out.hidden_states[self.select_layer]
        return (feats[:, 1:] if self.select_feature == "patch" else feats).float()
