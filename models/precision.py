"""Compute dtypes and low-precision weight storage (fp8) shared by SANA-Sprint and the verifiers.

fp8 storage keeps the weights of linear/conv layers in float8 and upcasts each layer to the compute dtype only
while it runs (diffusers' layerwise casting hooks), so a model takes about half its bf16 memory at a small cost in
precision. Norms, embeddings and the output head stay in the compute dtype: they are small and precision-critical.
"""

from __future__ import annotations

import logging

import torch

from .errors import InputError

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STORAGE_DTYPES: dict[str, torch.dtype | None] = {
    "default": None,  # weights stored in the compute dtype
    "fp8_e4m3fn": getattr(torch, "float8_e4m3fn", None),
    "fp8_e5m2": getattr(torch, "float8_e5m2", None),
}
# module-name patterns kept in the compute dtype (diffusers' defaults plus the LLMs' embeddings and heads)
KEEP_PRECISE = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$", "embed_tokens", "lm_head",
                "embeddings", "caption_projection", "time_embed")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map 'fp32' / 'fp16' / 'bf16' (or a torch dtype) to a torch dtype, with a clear error otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def resolve_storage(storage: str | torch.dtype | None) -> torch.dtype | None:
    """Map a weight-storage name ('default', 'fp8_e4m3fn', 'fp8_e5m2') to a dtype (None: the compute dtype)."""
    if storage is None or isinstance(storage, torch.dtype):
        return storage
    if storage not in STORAGE_DTYPES:
        raise InputError(f"unknown weight storage {storage!r}; choose one of {sorted(STORAGE_DTYPES)}")
    dtype = STORAGE_DTYPES[storage]
    if storage != "default" and dtype is None:
        raise InputError(f"this torch ({torch.__version__}) has no {storage} dtype; choose 'default'")
    return dtype


def check_storage_device(storage: str | torch.dtype | None, device: str | torch.device) -> None:
    """fp8 tensors cannot live on Apple's MPS backend: say so before anything is loaded."""
    if resolve_storage(storage) is not None and torch.device(device).type == "mps":
        raise InputError(f"fp8 weight storage ({storage}) is not supported on Apple MPS; choose 'default'")


def store_weights_in(module: torch.nn.Module, storage: str | torch.dtype | None, compute: torch.dtype) -> int:
    """Keep `module`'s linear/conv weights in `storage` (e.g. fp8) and compute in `compute`; returns the number
    of layers cast (0 when storage is the default)."""
    storage_dtype = resolve_storage(storage)
    if storage_dtype is None or storage_dtype == compute:
        return 0
    from diffusers.hooks import apply_layerwise_casting

    apply_layerwise_casting(module, storage_dtype=storage_dtype, compute_dtype=compute,
                            skip_modules_pattern=KEEP_PRECISE)
    cast = sum(1 for m in module.modules() if any(p.dtype == storage_dtype for p in m.parameters(recurse=False)))
    logger.info("%s: %d layers store their weights in %s (compute in %s)", type(module).__name__, cast,
                storage_dtype, compute)
    return cast


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (what storage choices change)."""
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
