"""Where labels and captions come from: pluggable judges (yes/no) and captioners (stage-1 text).

A judge maps dataset candidates to True (the image matches its prompt), False, or None (no verdict). Ship:
a labels-file judge for labels made elsewhere (e.g. GenEval's detector run offline), and the ShapeWorld
exact judge lives in apps/shapeworld. A captioner maps candidates to the text stage 1 aligns on; the
default is the prompt itself, the paper re-captions each image with a VLM and plugs in here.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Protocol, Sequence

import torch

from models.errors import InputError
from .data import CandidateDataset

YES_WORDS = {"yes", "true", "1", "correct", "y"}
NO_WORDS = {"no", "false", "0", "incorrect", "n"}


class Judge(Protocol):
    def __call__(self, dataset: CandidateDataset, ids: Sequence[str]) -> dict[str, bool | None]: ...


class Captioner(Protocol):
    def __call__(self, dataset: CandidateDataset, ids: Sequence[str]) -> dict[str, str]: ...


def _as_label(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in YES_WORDS:
        return True
    if text in NO_WORDS:
        return False
    raise InputError(f"{where}: label {value!r} is not yes/no")


class LabelsFileJudge:
    """Labels produced elsewhere: a JSONL file of {"id": <candidate id>, "label": yes/no/true/false}."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise InputError(f"labels file not found: {path}")
        self.labels: dict[str, bool] = {}
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    self.labels[str(obj["id"])] = _as_label(obj["label"], f"{path}:{i}")
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise InputError(f"{path}:{i}: expected {{\"id\": ..., \"label\": ...}} ({e})") from e

    def __call__(self, dataset: CandidateDataset, ids: Sequence[str]) -> dict[str, bool | None]:
        return {cid: self.labels.get(cid) for cid in ids}


class ImageJudge:
    """Adapter for a judge that looks at decoded pixels: fn(image [3,H,W] uint8, prompt, metadata) -> bool."""

    def __init__(self, fn: Callable[[torch.Tensor, str, dict], bool | None]):
        self.fn = fn

    def __call__(self, dataset: CandidateDataset, ids: Sequence[str]) -> dict[str, bool | None]:
        out = {}
        for cid in ids:
            row = dataset.by_id[cid]
            out[cid] = self.fn(dataset.tensor(cid, "image"), row["prompt"], row.get("metadata", {}))
        return out


def prompt_captioner(dataset: CandidateDataset, ids: Sequence[str]) -> dict[str, str]:
    """Stage-1 captions when no VLM re-captioner is available: the prompt each candidate was made from."""
    return {cid: dataset.by_id[cid]["prompt"] for cid in ids}


def apply_judge(dataset: CandidateDataset, judge: Judge, replace: bool = False) -> dict[str, int]:
    """Label candidates with `judge`, merged into labels.jsonl: new labels are added; labels the dataset already has
    stay as they are unless `replace`. A judge that labels none of the candidates is an error (its ids, or its file,
    belong to another dataset). Returns how many matched, were added, replaced, kept, and are still unlabelled."""
    ids = [r["id"] for r in dataset.rows]
    verdicts = {k: bool(v) for k, v in judge(dataset, ids).items() if v is not None and k in dataset.by_id}
    if not verdicts:
        raise InputError(f"the labels match none of the {len(ids)} candidates of {dataset.folder} (its ids look like "
                         f"{ids[0]!r}): they belong to another dataset")
    existing = dataset.labels()
    new = {k: v for k, v in verdicts.items() if k not in existing}
    differing = {k: v for k, v in verdicts.items() if k in existing and existing[k] != v}
    merged = {**existing, **new, **(differing if replace else {})}
    dataset.write_map("labels.jsonl", "label", merged)
    yes = sum(merged.values())
    return {"matched": len(verdicts), "added": len(new), "replaced": len(differing) if replace else 0,
            "kept": 0 if replace else len(differing), "yes": yes, "no": len(merged) - yes,
            "unlabelled": len(ids) - len(merged)}


def apply_captioner(dataset: CandidateDataset, captioner: Captioner, replace: bool = False,
                    fill_only: bool = False) -> int:
    """Captions merged into captions.jsonl like labels (`fill_only`: only for candidates without one, as the default
    prompt captioner does). Returns how many were written."""
    existing = dataset.captions()
    ids = [r["id"] for r in dataset.rows if not (fill_only and r["id"] in existing)]
    captions = {k: v for k, v in captioner(dataset, ids).items() if k in dataset.by_id}
    if not fill_only and not captions:
        raise InputError(f"the captions match none of the candidates of {dataset.folder}: they belong to another "
                         "dataset")
    written = {k: v for k, v in captions.items() if replace or k not in existing}
    dataset.write_map("captions.jsonl", "caption", {**existing, **written})
    return len(written)
