"""Errors raised by the VHS library: specific, user-facing, and never a bare torch traceback."""

from __future__ import annotations


class VHSError(ValueError):
    """Base class for every error the library raises on bad input or bad files."""


class ModelFolderError(VHSError):
    """A model folder is missing, incomplete, or holds another kind of model."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{problem} (folder: {self.path})")


class InputError(VHSError):
    """An argument is out of range or inconsistent (N, layer, resolution, prompt length, ...)."""


class DependencyError(VHSError):
    """A required package is missing or older than the pack needs."""


# the oldest versions with what the library uses (SanaSprintPipeline and layerwise casting; from_pretrained(dtype=))
MINIMUM_VERSIONS = {"diffusers": "0.33.0", "transformers": "4.56.0", "safetensors": "0.4.2"}


def require(package: str) -> None:
    """Raise a DependencyError naming the fix when `package` is missing or older than MINIMUM_VERSIONS says."""
    import importlib.metadata
    import re

    def release(version: str) -> tuple[int, ...]:  # "4.56.0.dev0" -> (4, 56, 0)
        return tuple(int(x) for x in re.findall(r"\d+", version)[:3])

    minimum = MINIMUM_VERSIONS[package]
    try:
        found = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        found = None
    if found is None or release(found) < release(minimum):
        have = f"found {found}" if found else "it is not installed"
        raise DependencyError(f"ComfyUI-VHS needs {package}>={minimum} ({have}): run "
                              f"`pip install -r requirements.txt` in ComfyUI's Python environment")
