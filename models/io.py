"""Small file helpers: folders that appear whole or not at all, and adding tensors to a safetensors checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator

import torch


PARTIAL = ".partial-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def honour_umask(path: str) -> None:
    """Give a file or folder made by tempfile (0600 / 0700) or safetensors (0600) the permissions any other tool's
    would have under the user's umask; inside folders too."""
    mask = _umask()
    if not os.path.isdir(path):
        os.chmod(path, 0o666 & ~mask)
        return
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _partial_prefix() -> str:
    import socket

    return f"{PARTIAL}{socket.gethostname()}-{os.getpid()}-"


def remove_stale_partials(folder: str) -> list[str]:
    """Remove the temporary folders and files that runs on this machine which no longer exist left in `folder`
    (killed mid-write); those of live processes, or of other machines sharing the folder, are left alone."""
    import socket

    removed = []
    if not os.path.isdir(folder):
        return removed
    host = socket.gethostname()
    for name in os.listdir(folder):
        if not name.startswith(PARTIAL):
            continue
        rest = name[len(PARTIAL):]
        if not rest.startswith(host + "-"):
            continue
        try:
            pid = int(rest[len(host) + 1:].split("-", 1)[0])
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        path = os.path.join(folder, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        removed.append(name)
    return removed


@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary folder next to `path`; it becomes `path` only if the block finishes without error. The
    temporary folder is named after this machine and process, so a later run can tell a dead run's leftovers."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; not overwriting it")
    tmp = tempfile.mkdtemp(prefix=_partial_prefix(), dir=parent)
    try:
        yield tmp
        honour_umask(tmp)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: str, write) -> None:
    """Call write(tmp_path), then rename into place: readers never see a half-written file (and it has the usual
    permissions, whatever the writer used)."""
    tmp = path + ".partial"
    write(tmp)
    honour_umask(tmp)
    os.replace(tmp, path)


def write_text_atomic(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    write_atomic(path, write)


def to_uint8(image: torch.Tensor):
    """[3, H, W] floats in 0..1 -> [H, W, 3] uint8 numpy array (rounded, as PIL and the reference's image path)."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def add_tensors_to_checkpoint(folder: str, tensors: dict[str, torch.Tensor], shard_name: str) -> None:
    """Add `tensors` to the Hugging Face safetensors checkpoint in `folder` (single file or sharded index)."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    index_file = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index_file):
        save_file(tensors, os.path.join(folder, shard_name), metadata={"format": "pt"})
        with open(index_file, encoding="utf-8") as f:
            index = json.load(f)
        index["weight_map"].update({k: shard_name for k in tensors})
        with open(index_file, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
        return
    single = os.path.join(folder, "model.safetensors")
    weights = load_file(single)
    weights.update(tensors)
    save_file(weights, single, metadata={"format": "pt"})
