"""The embedded default models: the trained ShapeWorld miniature shipped in the repository's embedded/ folder.

Used by the demo and by the nodes when no real weights are installed. A checkout without embedded/ (it should
not happen) gets tiny random models in the same layouts instead, so everything still runs, with a warning.
"""

from __future__ import annotations

import json
import logging
import os

logger = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED_DIR = os.path.join(ROOT, "embedded")
SHIPPED = {"sana": "sana_sprint_shapeworld", "hidden": "vhs_hidden_shapeworld", "clip": "vhs_clip_shapeworld",
           "latent": "vhs_ae_shapeworld"}
DEMO_SIZE = 64  # the ShapeWorld generator makes 64 px images


def embedded_model(role: str, cache: str | None = None) -> str:
    """Folder of the embedded model for a role: 'sana', 'hidden', 'clip' or 'latent'."""
    shipped = os.path.join(EMBEDDED_DIR, SHIPPED[role])
    if os.path.isdir(shipped):
        return shipped
    from .fixtures import build_tiny_bundle

    logger.warning("the embedded ShapeWorld models are missing from %s; using tiny random models instead", EMBEDDED_DIR)
    return build_tiny_bundle(cache or os.path.join(ROOT, ".cache", "embedded-random"))[role]


def is_shapeworld() -> bool:
    return os.path.isdir(os.path.join(EMBEDDED_DIR, SHIPPED["sana"]))


def demo_settings(cache: str | None = None) -> dict:
    """What the embedded demo runs at: its native size and the DiT block its hidden-state verifier reads."""
    with open(os.path.join(embedded_model("hidden", cache), "config.json"), encoding="utf-8") as f:
        feature = json.load(f).get("mm_vision_select_feature", "block_1")
    return {"width": DEMO_SIZE, "height": DEMO_SIZE, "layer": int(feature.split("_")[-1])}
