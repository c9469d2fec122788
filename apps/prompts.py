"""Prompt files for the command lines: one prompt per line (.txt), or JSON lines with a "prompt" field (.jsonl, e.g.
GenEval's evaluation_metadata.jsonl), whose other fields travel along as metadata."""

from __future__ import annotations

import json
import os

from models.errors import InputError


def read_prompts(path: str) -> list[dict]:
    """Prompts from a .txt file (one per line) or a .jsonl file (objects with a "prompt" field and any metadata)."""
    if not os.path.isfile(path):
        raise InputError(f"prompt file not found: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if path.endswith(".jsonl"):
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{i}: not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
                raise InputError(f"{path}:{i}: each line needs a non-empty \"prompt\" string")
            records.append({"prompt": obj["prompt"], "metadata": {k: v for k, v in obj.items() if k != "prompt"}})
    else:
        records = [{"prompt": line.strip(), "metadata": {}} for line in lines if line.strip()]
    if not records:
        raise InputError(f"{path} holds no prompts")
    return records
