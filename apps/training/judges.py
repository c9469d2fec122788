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


def apply_judge(dataset: CandidateDataset, judge: Judge) -> dict[str, int]:
    """Label every candidate with `judge` and write labels.jsonl; returns the counts of yes, no and unlabelled."""
    verdicts = judge(dataset, [r["id"] for r in dataset.rows])
    labels = {k: bool(v) for k, v in verdicts.items() if v is not None}
    dataset.write_map("labels.jsonl", "label", labels)
    yes = sum(labels.values())
    return {"yes": yes, "no": len(labels) - yes, "unlabelled": len(verdicts) - len(labels)}


def apply_captioner(dataset: CandidateDataset, captioner: Captioner) -> int:
    captions = captioner(dataset, [r["id"] for r in dataset.rows])
    dataset.write_map("captions.jsonl", "caption", captions)
    return len(captions)
