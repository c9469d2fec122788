"""What made an output folder, so that a re-run can never mix, drop or erase: settings, the identity of every input
prompt (a content hash, not a line number), the models' fingerprints and the code version, recorded in the folder
and compared on every re-run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from typing import Sequence

from models.checkpoint import fingerprint
from models.errors import InputError
from models.io import write_text_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_version() -> str:
    """The pack's version and, in a git checkout, its commit ('0.2.0+3f2a1bc', '+dirty' with local changes)."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                   text=True, timeout=10)
        if described.returncode == 0 and described.stdout.strip():
            version += "+" + described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def prompt_ids(records: Sequence[dict]) -> list[str]:
    """A content identity per prompt record (prompt and metadata), stable when other lines are added, removed or
    moved; the k-th repeat of the same record gets '~k', so repeats stay distinct."""
    seen: dict[str, int] = {}
    ids = []
    for record in records:
        blob = json.dumps({"prompt": record["prompt"], "metadata": record.get("metadata", {})}, sort_keys=True)
        base = "p" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}~{seen[base]}")
    return ids


def model_identity(path: str) -> dict:
    """How a model folder is recorded: its name (for people) and its content fingerprint (for the checks)."""
    return {"name": os.path.basename(os.path.normpath(path)), "fingerprint": fingerprint(path)}


def differences(recorded: dict, asked: dict) -> list[str]:
    """'key: recorded X, asked Y' for each setting that differs (model names are informational only)."""
    out = []
    for key in sorted(set(recorded) | set(asked)):
        a, b = recorded.get(key), asked.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and "fingerprint" in a:
            if a.get("fingerprint") != b.get("fingerprint"):
                out.append(f"{key}: this folder was made with {a.get('name')} ({a.get('fingerprint')}), you gave "
                           f"{b.get('name')} ({b.get('fingerprint')})")
        elif a != b:
            out.append(f"{key}: this folder has {a!r}, you asked {b!r}")
    return out


def check_or_record(folder: str, filename: str, settings: dict, prompts: list[dict], extend: bool = False,
                    append_only: bool = False) -> list[dict]:
    """Compare what this run was asked for with what made `folder` (recorded in `filename`), then record it.

    The same settings and prompts: a resume. Other settings: refused, naming what differs. Other prompts: refused,
    unless `extend`; then new prompts are added by content identity (with `append_only`, only at the end of the
    recorded list, for layouts numbered by position) and recorded ones are never dropped or renumbered. Returns the
    full prompt list of the folder after this run: the recorded ones first, then the new ones."""
    path = os.path.join(folder, filename)
    record = {"settings": settings, "prompts": prompts}
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        write_text_atomic(path, json.dumps({**record, "code": code_version()}, indent=1))
        return prompts
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        old_settings, old_prompts = old["settings"], old["prompts"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} does not say what made this folder ({e}); use a new output folder") from e
    changed = differences(old_settings, settings)
    if changed:
        raise InputError(f"{folder} was made with other settings - " + "; ".join(changed)
                         + ". Use a new output folder (or the same settings to resume)")
    old_ids = [p["id"] for p in old_prompts]
    new = [p for p in prompts if p["id"] not in set(old_ids)]
    gone = [p for p in old_prompts if p["id"] not in {q["id"] for q in prompts}]
    if not new and not gone:
        return old_prompts
    summary = (f"{len(new)} new (first: {new[0]['prompt']!r})" if new else "none new") + ", " + (
        f"{len(gone)} of this folder's missing (first: {gone[0]['prompt']!r})" if gone else "none missing")
    if not extend:
        raise InputError(f"the prompts differ from those that made {folder}: {summary}. Use a new output folder, or "
                         "--extend to add the new prompts (the folder keeps all it has)")
    if append_only and [p["id"] for p in prompts[:len(old_ids)]] != old_ids:
        raise InputError(f"--extend adds prompts at the end of the list that made {folder}; this file changes or "
                         f"reorders its first {len(old_ids)} prompts ({summary}). Use a new output folder")
    merged = old_prompts + new
    write_text_atomic(path, json.dumps({**old, "prompts": merged, "code": code_version()}, indent=1))
    return merged
