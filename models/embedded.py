"""The embedded default models: the trained ShapeWorld miniature shipped in the repository's embedded/ folder.

The demo uses them when no real weights are given, and the nodes offer them as explicit, labelled choices. They are
never a stand-in for a model the user asked for: a checkout without embedded/ is an error, not random weights.
"""

from __future__ import annotations

import json
import os

from .errors import ModelFolderError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED_DIR = os.path.join(ROOT, "embedded")
SHIPPED = {"sana": "sana_sprint_shapeworld", "hidden": "vhs_hidden_shapeworld", "clip": "vhs_clip_shapeworld",
           "latent": "vhs_ae_shapeworld"}
DEMO_SIZE = 64  # the ShapeWorld generator makes 64 px images


def embedded_model(role: str) -> str:
    """Folder of the embedded model for a role: 'sana', 'hidden', 'clip' or 'latent'."""
    shipped = os.path.join(EMBEDDED_DIR, SHIPPED[role])
    if not os.path.isdir(shipped):
        raise ModelFolderError(shipped, "the embedded ShapeWorld model is missing from this copy of the pack; "
                                        "reinstall it (git clone or the registry archive include embedded/)")
    return shipped


def is_shapeworld() -> bool:
    return os.path.isdir(os.path.join(EMBEDDED_DIR, SHIPPED["sana"]))


def demo_settings() -> dict:
    """What the embedded demo runs at: its native size and the DiT block its hidden-state verifier reads."""
    with open(os.path.join(embedded_model("hidden"), "config.json"), encoding="utf-8") as f:
        feature = json.load(f).get("mm_vision_select_feature", "block_1")
    return {"width": DEMO_SIZE, "height": DEMO_SIZE, "layer": int(feature.split("_")[-1])}
