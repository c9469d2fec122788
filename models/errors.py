"""Errors raised by the VHS library: specific, user-facing, and never a bare torch traceback."""

from __future__ import annotations


class VHSError(ValueError):
    """Base class for every error the library raises on bad input or bad files."""


class ModelFolderError(VHSError):
    """A model folder is missing, incomplete, or holds another kind of model."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        import os

        kind = "file" if os.path.isfile(self.path) or (os.path.splitext(self.path)[1] and not os.path.isdir(self.path)) \
            else "folder"
        super().__init__(f"{problem} ({kind}: {self.path})")


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
        raise DependencyError(f"SANA-Sprint Best-of-N needs {package}>={minimum} ({have}): run "
                              f"`pip install -r requirements.txt` in ComfyUI's Python environment")


class NonFiniteError(VHSError):
    """A computation produced NaN or infinity: never a result, never a winner."""


def check_text(text: object, what: str = "the prompt") -> str:
    """A non-empty string that is valid Unicode text (a lone surrogate, e.g. from a broken copy-paste, is not)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{what} holds a character that is not valid text ({text[e.start]!r} at position "
                         f"{e.start}); retype or remove it") from e
    return text


def check_finite(**values: float) -> None:
    """Refuse NaN and infinite settings (a NaN guidance would otherwise run and pick a winner among NaN scores)."""
    import math

    for name, value in values.items():
        if value is None:
            continue
        try:
            ok = math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{name} must be a finite number, got {value!r}")
