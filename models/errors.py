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
