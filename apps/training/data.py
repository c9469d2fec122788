"""Training data for verifiers: K candidates per prompt, stored as sharded safetensors plus a JSONL index.

Layout of a dataset folder:
    manifest.json                 what made it: settings, the SANA-Sprint fingerprint, the code version, and every
                                  prompt with its content identity (checked on every re-run: nothing mixes)
    shard_<hash>.safetensors      h<l> [M, tokens, inner_dim] per stored layer, latent [M, C, h, w], optional image
    shard_<hash>.jsonl            one line per candidate: id, row, prompt_id, prompt, seed, metadata
    labels.jsonl, captions.jsonl  written by judges / captioners (id -> label / caption), merged, never erased
Prompts, candidates and shards are keyed by prompt content, not by line number: a candidate is <prompt id>_c<k>, its
seed derives from the prompt id, and a shard is named after the prompts it holds. A shard's .jsonl is written last,
atomically: it is the shard's completion marker, so an interrupted shard never looks complete, and a re-run makes
exactly the prompts no complete shard holds - whatever --prompts-per-shard it uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from typing import Iterator, Sequence

import torch

from models.errors import InputError
from models.io import write_atomic, write_text_atomic
from models.sana_sprint import SanaSprint

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def candidate_seed(seed: int, prompt_id: str, k: int) -> int:
    """The k-th candidate's seed for a prompt: from the prompt's identity, not its position in a file."""
    digest = hashlib.sha256(f"{int(seed)}:{prompt_id}:{int(k)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


def generate_dataset(model: SanaSprint, prompts: Sequence[dict], out: str, layers: Sequence[int], candidates: int,
                     height: int, width: int, steps: int = 1, seed: int = 0, prompts_per_shard: int = 8,
                     save_images: bool = False, progress=None, store_dtype: torch.dtype = torch.float16,
                     part: int = 0, parts: int = 1, extend: bool = False, model_path: str | None = None) -> list[str]:
    """Generate K candidates per prompt and store h_l for every layer in `layers`, the final latent and optionally
    the decoded image. Hidden states are stored as `store_dtype` (fp16: half the disk; the real model runs in bf16
    anyway). With parts > 1, this call makes only the prompts whose identity hashes to `part`, so several processes
    (one per GPU) fill one folder. A re-run with other settings or other prompts is refused (with `extend`, new prompts
    are added). Returns the shard names written in this call."""
    from apps.runs import check_or_record, model_identity, prompt_ids

    layers = tuple(sorted({int(l) for l in layers}))
    if not layers:
        raise InputError("choose at least one layer to store")
    if not all(0 <= l < model.num_layers for l in layers):
        raise InputError(f"layers {list(layers)} out of range: this SANA-Sprint has blocks 0..{model.num_layers - 1}")
    if not 1 <= candidates <= 256:
        raise InputError(f"candidates per prompt must be between 1 and 256, got {candidates}")
    if prompts_per_shard < 1:
        raise InputError(f"prompts per shard must be at least 1, got {prompts_per_shard}")
    if parts < 1 or not 0 <= part < parts:
        raise InputError(f"part {part} of {parts} does not exist")
    model.check_request([0] * candidates, max(layers), height, width, steps)  # before anything is written
    ids = prompt_ids(prompts)
    records = [{"id": i, "prompt": r["prompt"], "metadata": r.get("metadata", {})} for i, r in zip(ids, prompts)]
    settings = {"layers": list(layers), "candidates": candidates, "height": height, "width": width, "steps": steps,
                "seed": seed, "save_images": save_images, "store_dtype": str(store_dtype).replace("torch.", ""),
                "model": model_identity(model_path) if model_path else {"name": model.key.split("|")[0],
                                                                         "fingerprint": model.key.split("|")[0]}}
    everything = check_or_record(out, MANIFEST, settings, records, extend=extend)
    finished = {row["prompt_id"] for row in _finished_rows(out)}
    mine = [r for r in everything if r["id"] not in finished and int(hashlib.sha256(r["id"].encode()).hexdigest(), 16)
            % parts == part]
    written = []
    for start in range(0, len(mine), prompts_per_shard):
        group = mine[start:start + prompts_per_shard]
        name = "shard_" + hashlib.sha256(",".join(r["id"] for r in group).encode()).hexdigest()[:12]
        tensors: dict[str, list[torch.Tensor]] = {f"h{l}": [] for l in layers}
        tensors["latent"], images, rows = [], [], []
        for record in group:
            seeds = [candidate_seed(seed, record["id"], k) for k in range(candidates)]
            hidden, captured = model.capture(record["prompt"], seeds, layers, height=height, width=width, steps=steps)
            latents = model.suffix(hidden)
            captured[hidden.layer] = hidden.hidden
            for l in layers:
                tensors[f"h{l}"].append(captured[l].to(store_dtype).cpu())
            tensors["latent"].append(latents.float().cpu())
            if save_images:
                images.append((model.decode(latents) * 255).round().to(torch.uint8).cpu())
            for k, s in enumerate(seeds):
                rows.append({"id": f"{record['id']}_c{k:03d}", "prompt_id": record["id"], "candidate": k, "seed": s,
                             "prompt": record["prompt"], "metadata": record["metadata"]})
            if progress is not None:
                progress(1)
        data = {k: torch.cat(v).contiguous() for k, v in tensors.items()}
        if save_images:
            data["image"] = torch.cat(images).contiguous()
        from safetensors.torch import save_file

        write_atomic(os.path.join(out, name + ".safetensors"), lambda p: save_file(data, p, metadata={"format": "pt"}))
        for row_index, row in enumerate(rows):
            row.update(shard=name, row=row_index)
        write_text_atomic(os.path.join(out, name + ".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
        written.append(name)
        logger.info("wrote %s (%d candidates)", name, len(rows))
    return written


def _finished_rows(folder: str) -> list[dict]:
    """The index rows of every complete shard (a shard is complete once its .jsonl exists)."""
    rows = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("shard_") and name.endswith(".jsonl"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                rows += [json.loads(line) for line in f if line.strip()]
    return rows


class CandidateDataset:
    """Read access to a generated dataset: index rows, tensors by id, labels and captions."""

    def __init__(self, folder: str):
        if not os.path.isfile(os.path.join(folder, MANIFEST)):
            raise InputError(f"{folder} is not a generated dataset (no {MANIFEST})")
        self.folder = folder
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        self.manifest = manifest.get("settings", manifest)  # 0.1.0 datasets kept their settings at the top level
        self.rows: list[dict] = _finished_rows(folder)
        if not self.rows:
            raise InputError(f"{folder} holds no finished shards: the dataset is empty")
        self.by_id = {r["id"]: r for r in self.rows}
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.cache_bytes = int(os.environ.get("VHS_DATASET_CACHE_MB", "4096")) * 2**20

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    def grid(self, layer: int) -> tuple[int, int]:
        """The DiT token grid (rows, columns) of the stored h_<layer>, from the image size and the token count."""
        import math

        tokens = self.tensor(self.rows[0]["id"], f"h{layer}").shape[0]
        ratio = math.sqrt(self.manifest["height"] * self.manifest["width"] / tokens)
        return round(self.manifest["height"] / ratio), round(self.manifest["width"] / ratio)

    def _shard(self, name: str) -> dict[str, torch.Tensor]:
        """Shards stay in memory (least recently used first out) up to VHS_DATASET_CACHE_MB, for shuffled access."""
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        from safetensors.torch import load_file

        self._cache[name] = load_file(os.path.join(self.folder, name + ".safetensors"))
        size = lambda shard: sum(t.numel() * t.element_size() for t in shard.values())  # noqa: E731
        while len(self._cache) > 1 and sum(size(sh) for sh in self._cache.values()) > self.cache_bytes:
            self._cache.popitem(last=False)
        return self._cache[name]

    def tensor(self, cid: str, key: str) -> torch.Tensor:
        """One candidate's tensor: key 'h<l>', 'latent' or 'image'."""
        row = self.by_id[cid]
        shard = self._shard(row["shard"])
        if key not in shard:
            raise InputError(f"the dataset has no {key!r} (stored: {sorted(shard)})")
        return shard[key][row["row"]]

    def _read_map(self, filename: str, field: str) -> dict[str, object]:
        path = os.path.join(self.folder, filename)
        if not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as f:
            return {o["id"]: o[field] for o in (json.loads(line) for line in f if line.strip())}

    def labels(self) -> dict[str, bool]:
        return {k: bool(v) for k, v in self._read_map("labels.jsonl", "label").items()}

    def captions(self) -> dict[str, str]:
        return {k: str(v) for k, v in self._read_map("captions.jsonl", "caption").items()}

    def write_map(self, filename: str, field: str, values: dict[str, object]) -> None:
        write_text_atomic(os.path.join(self.folder, filename),
                          "".join(json.dumps({"id": k, field: v}) + "\n" for k, v in values.items()))

    def split(self, holdout: float, seed: int = 0) -> tuple[list[str], list[str]]:
        """Train / held-out candidate ids, split by prompt so no prompt is in both."""
        pids = sorted({r["prompt_id"] for r in self.rows})
        g = torch.Generator().manual_seed(seed)
        order = [pids[i] for i in torch.randperm(len(pids), generator=g).tolist()]
        n_test = int(round(len(pids) * holdout))
        test = set(order[:n_test])
        return ([r["id"] for r in self.rows if r["prompt_id"] not in test],
                [r["id"] for r in self.rows if r["prompt_id"] in test])

    def iter_prompts(self, ids: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
        groups: dict[int, list[str]] = {}
        for cid in ids:
            groups.setdefault(self.by_id[cid]["prompt_id"], []).append(cid)
        yield from sorted(groups.items())


def position_stats(dataset: CandidateDataset, layer: int, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position mean and variance of h_l over candidates and channels (the released statistics' shape, [tokens])."""
    total = total_sq = None
    count = 0
    for cid in ids:
        h = dataset.tensor(cid, f"h{layer}").double()  # [tokens, channels]
        s, sq = h.sum(dim=1), (h * h).sum(dim=1)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += h.shape[1]
    if not count:
        raise InputError("no candidates to compute statistics from")
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    return mean.float(), var.float()
