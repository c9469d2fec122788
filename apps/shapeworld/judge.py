"""The exact ShapeWorld judge: decide from pixels whether an image satisfies a prompt's metadata.

Pixels are snapped to the nearest palette colour (or background); each colour's connected components are the
objects; a component's fill of its bounding box tells its shape (a triangle fills about half, a square also fills its corners, a circle does not);
centroids decide positions. Clauses follow GenEval: a shape present (with a colour), an exact count, a relation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import BACKGROUND, COLORS, GRID, SIZE

MIN_AREA, MAX_AREA = 30, 300  # pixels: the world's objects cover about 60-130
MAX_SIDE = 20  # pixels: no object's bounding box is wider or taller
MAX_COLOUR_DIST = 80.0  # RGB distance to the nearest palette colour; farther pixels belong to nothing
MIN_BACKGROUND = 0.6  # a scene is mostly white; a picture that is not is no scene at all
PALETTE = np.array([BACKGROUND] + list(COLORS.values()), dtype=np.float32)
NAMES = ["background"] + list(COLORS)


@dataclass(frozen=True)
class Found:
    shape: str
    color: str
    cx: float
    cy: float
    area: int


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as arrays of (y, x) pixel coordinates."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    out = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, pixels = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        out.append(np.array(pixels))
    return out


def classify(pixels: np.ndarray) -> str:
    """Shape from its bounding box: a triangle fills about half of it, a square fills its corners, a circle not."""
    ys, xs = pixels[:, 0], pixels[:, 1]
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    fill = len(pixels) / ((y1 - y0 + 1) * (x1 - x0 + 1))
    if fill < 0.64:
        return "triangle"
    filled = {(int(y), int(x)) for y, x in pixels}
    corners = sum((y, x) in filled for y in (y0, y0 + 1, y1 - 1, y1) for x in (x0, x0 + 1, x1 - 1, x1))
    return "square" if corners >= 10 else "circle"


def _labels(image: np.ndarray) -> np.ndarray:
    """Per pixel: index of the nearest palette colour (0 = background), or -1 when none is near."""
    img = image.astype(np.float32)
    dist = ((img[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1)
    label = dist.argmin(-1)
    label[dist.min(-1) > MAX_COLOUR_DIST**2] = -1
    return label


def detect(image: np.ndarray) -> list[Found]:
    """Objects in an [H, W, 3] uint8 image: palette-coloured components of plausible size."""
    label = _labels(image)
    found = []
    for ci, name in enumerate(NAMES[1:], start=1):
        for comp in _components(label == ci):
            side = max(np.ptp(comp[:, 0]), np.ptp(comp[:, 1])) + 1
            if not MIN_AREA <= len(comp) <= MAX_AREA or side > MAX_SIDE:
                continue
            found.append(Found(classify(comp), name, float(comp[:, 1].mean()) + 0.5, float(comp[:, 0].mean()) + 0.5,
                               len(comp)))
    return found


def _relation(rel: str, a: Found, b: Found) -> bool:
    """GenEval-style: the offset along the relation's axis dominates and exceeds a margin."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    margin = 0.1 * SIZE / GRID * 2
    if rel == "left of":
        return dx < -margin and abs(dx) > abs(dy) * 0.5
    if rel == "right of":
        return dx > margin and abs(dx) > abs(dy) * 0.5
    if rel == "above":
        return dy < -margin and abs(dy) > abs(dx) * 0.5
    return dy > margin and abs(dy) > abs(dx) * 0.5


def judge(image: np.ndarray, meta: dict) -> bool:
    """True when the picture is a clean scene and every include clause of the prompt's metadata holds in it."""
    if (_labels(image) == 0).mean() < MIN_BACKGROUND:
        return False
    objs = detect(image)
    groups = []
    for clause in meta["include"]:
        group = [o for o in objs if o.shape == clause["shape"] and ("color" not in clause or o.color == clause["color"])]
        if clause.get("exact"):
            if len(group) != clause["count"]:
                return False
        elif len(group) < clause["count"]:
            return False
        groups.append(group)
    for i, clause in enumerate(meta["include"]):
        if "position" in clause:
            rel, anchor = clause["position"]
            if not any(_relation(rel, a, b) for a in groups[i] for b in groups[anchor]):
                return False
    return True
