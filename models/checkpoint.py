"""Checks a model folder must pass before anything is built from it: readable configs, sane sizes, whole weights.

A damaged or hostile folder must fail with one clear line naming the file and the problem, never with a raw
library traceback, a multi-gigabyte allocation from a nonsense config, or random weights where tensors are missing.
Weights are read only from safetensors files (never pickles); their headers are checked before any load.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

import torch

from .errors import ModelFolderError

# Upper bounds for size fields of the configs we read (real models are far below: Gemma-2-2B hidden 2304,
# SANA-Sprint 1.6B 20 blocks x 2240, Qwen2.5-0.5B 896 / 24 layers / 151,936 tokens). A config above them is
# refused before anything is allocated.
SIZE_LIMITS = {
    "hidden_size": 65_536, "intermediate_size": 262_144, "num_hidden_layers": 512, "num_attention_heads": 1_024,
    "num_key_value_heads": 1_024, "head_dim": 4_096, "vocab_size": 4_000_000, "max_position_embeddings": 10_000_000,
    "num_layers": 512, "attention_head_dim": 4_096, "num_cross_attention_heads": 1_024,
    "cross_attention_head_dim": 4_096, "cross_attention_dim": 65_536, "caption_channels": 65_536,
    "in_channels": 4_096, "out_channels": 4_096, "latent_channels": 4_096, "sample_size": 65_536, "patch_size": 64,
    "mm_hidden_size": 65_536, "image_size": 65_536, "projection_dim": 65_536, "num_channels": 4_096,
}
LIST_LIMITS = {"block_out_channels": 65_536, "encoder_block_out_channels": 65_536,
               "decoder_block_out_channels": 65_536, "encoder_layers_per_block": 256, "decoder_layers_per_block": 256}
MAX_LIST_LENGTH = 64
SHOWN = 5  # missing tensor names quoted in an error


def read_json(path: str) -> dict:
    """A JSON object from `path`, or a ModelFolderError naming the file (missing, empty, not JSON, not an object)."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ModelFolderError(path, f"{name} is missing")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelFolderError(path, f"{name} cannot be read: {e}") from e
    if not text.strip():
        raise ModelFolderError(path, f"{name} is empty (an interrupted download?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFolderError(path, f"{name} is not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, dict):
        raise ModelFolderError(path, f"{name} must hold a JSON object, found {type(data).__name__}")
    return data


def check_config_sizes(config: dict, path: str) -> None:
    """Refuse size fields that are not positive integers within SIZE_LIMITS (before a library allocates them)."""
    for key, limit in SIZE_LIMITS.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ModelFolderError(path, f"config value {key}={value!r} is not a size this loader accepts "
                                         f"(a whole number from 1 to {limit:,})")
    for key, limit in LIST_LIMITS.items():
        value = config.get(key)
        if value is None or isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit:
            continue
        if not isinstance(value, (list, tuple)) or len(value) > MAX_LIST_LENGTH or any(
                isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit for v in value):
            raise ModelFolderError(path, f"config value {key}={value!r} is not a list of sizes this loader accepts "
                                         f"(at most {MAX_LIST_LENGTH} whole numbers from 1 to {limit:,})")


def read_header(path: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors file, after checking that the file is whole."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise ModelFolderError(path, "the weights file is missing")
    if os.path.getsize(path) == 0:
        raise ModelFolderError(path, "the weights file is empty (an interrupted download?)")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFolderError(path, f"the weights file is damaged or truncated ({e})") from e


def weight_files(folder: str, stem: str) -> list[str]:
    """The safetensors files of one checkpoint: `<stem>.safetensors` or the shards `<stem>.safetensors.index.json`
    lists. Pickled weights (.bin, .pt) are never read: they can run code."""
    index = os.path.join(folder, f"{stem}.safetensors.index.json")
    single = os.path.join(folder, f"{stem}.safetensors")
    if os.path.isfile(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFolderError(index, "the weights index has no weight_map")
        files = sorted({os.path.join(folder, str(name)) for name in weight_map.values()})
        outside = [f for f in files if os.path.dirname(os.path.abspath(f)) != os.path.abspath(folder)]
        if outside:
            raise ModelFolderError(index, f"the weights index points outside its folder: {outside[0]}")
        return files
    if os.path.isfile(single):
        return [single]
    pickles = [f for f in sorted(os.listdir(folder)) if f.endswith((".bin", ".pt", ".pth", ".ckpt"))] \
        if os.path.isdir(folder) else []
    hint = f" (found {pickles[0]}: only .safetensors weights are read; convert it)" if pickles else ""
    raise ModelFolderError(folder, f"no {stem}.safetensors weights{hint}")


def inventory(files: Iterable[str]) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """Tensor name -> (dtype, shape, file) over the given safetensors files (each checked whole)."""
    found = {}
    for path in files:
        for name, (dtype, shape) in read_header(path).items():
            found[name] = (dtype, shape, path)
    return found


def refuse_missing(missing: Iterable[str], mismatched: Iterable = (), files: list[str] | None = None,
                   where: str = "") -> None:
    """One clear error when a library's loading report lists tensors the weights files did not provide (or gave in
    another shape), naming the file(s) and the first missing names."""
    missing = sorted(missing)
    mismatched = sorted(str(m[0] if isinstance(m, (tuple, list)) else m) for m in mismatched)
    files = list(files or [])
    subject = (os.path.basename(files[0]) + " lacks" if len(files) == 1 else
               f"the {len(files)} weight shards lack" if files else "the checkpoint lacks")
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
        raise ModelFolderError(files[0] if len(files) == 1 else where,
                               f"{subject} {len(missing)} tensor(s) the model needs: {shown}; the file is incomplete "
                               "or belongs to another model (download it again)")
    if mismatched:
        shown = ", ".join(mismatched[:SHOWN])
        raise ModelFolderError(files[0] if len(files) == 1 else where,
                               f"{subject.replace(' lacks', ' has').replace(' lack', ' have')} tensors of the wrong "
                               f"shape for the config: {shown}")


def refuse_meta(module: torch.nn.Module, where: str) -> None:
    """After loading: no parameter may be left without data (what a missing tensor looks like in a lazy load)."""
    empty = [name for name, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if empty:
        refuse_missing(empty, where=where)


def fingerprint(folder: str, sample: int = 65536) -> str:
    """A short identity of a model folder's content, cheap even for gigabytes of weights: every file's relative path
    and size, every JSON file's text, and for weights files their header and first and last `sample` bytes. Two
    folders with the same fingerprint hold the same model (a moved or renamed folder keeps its fingerprint)."""
    import hashlib

    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            digest.update(f"{os.path.relpath(path, folder)}:{size}\n".encode())
            with open(path, "rb") as f:
                if name.endswith(".json"):
                    digest.update(f.read())
                elif name.endswith((".safetensors", ".pt", ".bin")):
                    digest.update(f.read(sample))
                    f.seek(max(0, size - sample))
                    digest.update(f.read(sample))
    return digest.hexdigest()[:16]
