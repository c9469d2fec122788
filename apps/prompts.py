"""Prompt files for the command lines: one prompt per line (.txt), or JSON lines with a "prompt" field (.jsonl, e.g.
GenEval's evaluation_metadata.jsonl), whose other fields travel along as metadata."""

from __future__ import annotations

import json
import os

from models.errors import InputError


def read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file; a line that is not UTF-8 is an error naming the file, the line and the byte."""
    if not os.path.isfile(path):
        raise InputError(f"prompt file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read().split(b"\n")
    lines = []
    for number, data in enumerate(raw, start=1):
        try:
            text = data.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}:{number}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {e.start + 1}); "
                             "save the file as UTF-8") from None
        lines.append(text.rstrip("\r"))
    return lines


def read_prompts(path: str) -> list[dict]:
    """Prompts from a .txt file (one per line) or a .jsonl file (objects with a "prompt" field and any metadata)."""
    lines = read_lines(path)
    records = []
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
