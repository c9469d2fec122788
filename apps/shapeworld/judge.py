"""The exact ShapeWorld judge: decide from pixels whether an image satisfies a prompt's metadata.

A fixed rule, calibrated only on teacher scenes (crisp renders and their round trip through the generator's DC-AE),
never on any verifier's output:

1. Colour: each pixel is read as a blend of white and one palette colour (the blur an autoencoder leaves at edges);
   its opacity towards the best-fitting colour is estimated, and pixels at least half opaque belong to that colour.
2. Objects: the 4-connected components of each colour. A component is matched against the world's three shapes,
   drawn at their one size and slid to the best sub-pixel position; the best intersection-over-union names the shape
   and the position gives the object's centre, the same centre the scene was drawn from.
3. A component that is no recognisable shape (a smear, two objects fused, a fragment of a real size) or that sits off
   the world's grid makes the picture no clean scene, as does a picture that is not mostly white: the answer is then
   False. Relations are GenEval's rule on the objects' grid cells.
4. The prompt's clauses are checked by `satisfies`, the same function that says whether a teacher scene (whose
   objects are known) satisfies its prompt - so on teacher scenes the judge and the truth can only differ in seeing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, Sequence

import numpy as np

from .world import BACKGROUND, COLORS, GRID, OBJECT_RADIUS, SHAPES, SIZE, shape_mask

MIN_AREA = 25  # pixels: a coloured component smaller than this is edge noise, not an object (objects cover 60-115)
MIN_IOU = 0.62  # a component matching no shape at least this well is not a recognisable object
MAX_RESIDUAL = 60.0  # RGB distance from the white-to-colour line beyond which a pixel is no palette blend at all
MIN_BACKGROUND = 0.6  # a scene is mostly white; a picture that is not is no scene at all
OFF_GRID = 4.0  # pixels: the world draws every object within 1.5 px of its cell's centre; farther is no scene of it
WHITE = np.array(BACKGROUND, dtype=np.float32)
PALETTE = np.array(list(COLORS.values()), dtype=np.float32)
NAMES = list(COLORS)
SEARCH = np.arange(-1.5, 1.51, 0.5)  # sub-pixel offsets (px) tried around a component's first guess of its centre


class SceneObject(Protocol):
    shape: str
    color: str
    cx: float
    cy: float


@dataclass(frozen=True)
class Found:
    shape: str
    color: str
    cx: float  # centre of the drawn shape's box, pixels (as world.Obj)
    cy: float
    area: int
    iou: float  # how well the component matches the named shape


# ------------------------------------------------------------------ the prompt's clauses (shared with the truth)
def cell_of(o: SceneObject) -> tuple[int, int]:
    """(column, row) of the grid cell an object sits in (the world places every object in a cell, near its centre)."""
    step = SIZE / GRID
    return round((o.cx - step / 2) / step), round((o.cy - step / 2) / step)


def relation_holds(rel: str, a: SceneObject, b: SceneObject) -> bool:
    """GenEval's rule (the offset's direction within 60 degrees of the relation's axis: cosine > 0.5), applied to the
    objects' grid cells. On cells the rule has no borderline case, so the judge, which reads cells exactly, agrees
    with the truth; on raw pixel offsets a sub-pixel jitter could tip a diagonal pair either way."""
    (ax, ay), (bx, by) = cell_of(a), cell_of(b)
    dx, dy = ax - bx, ay - by
    norm = (dx * dx + dy * dy) ** 0.5
    if norm == 0:
        return False
    if rel == "left of":
        return dx / norm < -0.5
    if rel == "right of":
        return dx / norm > 0.5
    if rel == "above":
        return dy / norm < -0.5
    return dy / norm > 0.5


def satisfies(objects: Sequence[SceneObject], meta: dict) -> bool:
    """Whether a scene's objects satisfy every include clause of the prompt's metadata (GenEval's rules: a shape
    present, with a colour; an exact count; a relation to another clause's objects)."""
    groups = []
    for clause in meta["include"]:
        group = [o for o in objects if o.shape == clause["shape"] and
                 ("color" not in clause or o.color == clause["color"])]
        if clause.get("exact"):
            if len(group) != clause["count"]:
                return False
        elif len(group) < clause["count"]:
            return False
        groups.append(group)
    for i, clause in enumerate(meta["include"]):
        if "position" in clause:
            rel, anchor = clause["position"]
            if not any(relation_holds(rel, a, b) for a in groups[i] for b in groups[anchor]):
                return False
    return True


def truth(objects: Sequence[SceneObject], meta: dict) -> bool:
    """Whether a teacher scene (its drawn objects known) satisfies its prompt: what the judge must say of its image."""
    return satisfies(objects, meta)


# ------------------------------------------------------------------ seeing
def colour_labels(image: np.ndarray) -> np.ndarray:
    """Per pixel: 1 + the index of its palette colour when it is at least half opaque in it, 0 for background (white
    or nearly), -1 for a colour that is no blend of white and any palette colour."""
    p = image.astype(np.float32)[:, :, None, :]  # [H, W, 1, 3]
    d = (PALETTE - WHITE)[None, None]  # [1, 1, K, 3]
    alpha = np.clip(((p - WHITE) * d).sum(-1) / (d * d).sum(-1), 0.0, 1.0)  # [H, W, K] opacity towards each colour
    residual = np.linalg.norm(p - (WHITE + alpha[..., None] * d), axis=-1)
    best = residual.argmin(-1)
    a = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
    r = residual.min(-1)
    label = np.where(a >= 0.5, best + 1, 0)
    label[r > MAX_RESIDUAL] = -1
    return label


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


@lru_cache(maxsize=None)
def _centroid_offset(shape: str) -> tuple[float, float]:
    """Where a shape's pixel centroid lies relative to its box centre (a triangle's lies lower), in pixels."""
    side = 64
    ys, xs = np.nonzero(shape_mask(shape, side / 2, side / 2, OBJECT_RADIUS * 4, side))
    return (float(xs.mean()) + 0.5 - side / 2) / 4, (float(ys.mean()) + 0.5 - side / 2) / 4


def match_shape(pixels: np.ndarray) -> tuple[str, float, float, float]:
    """(shape, box centre x, y, IoU): the world shape, at its one size, that best covers a component when slid over
    sub-pixel positions around the component's centroid."""
    ys, xs = pixels[:, 0], pixels[:, 1]
    pad = int(np.ceil(OBJECT_RADIUS))
    y0, x0 = int(ys.min()) - pad, int(xs.min()) - pad
    h, w = int(ys.max()) - y0 + pad + 1, int(xs.max()) - x0 + pad + 1
    comp = np.zeros((h, w), dtype=bool)
    comp[ys - y0, xs - x0] = True
    gx, gy = float(xs.mean()) + 0.5 - x0, float(ys.mean()) + 0.5 - y0
    ox, oy = (a.reshape(-1, 1, 1) for a in np.meshgrid(SEARCH, SEARCH))
    best = ("", 0.0, 0.0, -1.0)
    for shape in SHAPES:
        dx, dy = _centroid_offset(shape)
        cx, cy = gx - dx + ox, gy - dy + oy  # [positions, 1, 1]
        drawn = shape_mask(shape, cx, cy, OBJECT_RADIUS, h, w)  # [positions, h, w]
        inter = (drawn & comp).sum(axis=(1, 2))
        iou = inter / (drawn.sum(axis=(1, 2)) + len(pixels) - inter)
        k = int(iou.argmax())
        if iou[k] > best[3]:
            best = (shape, float(cx.flat[k]) + x0, float(cy.flat[k]) + y0, float(iou[k]))
    return best


def read_scene(image: np.ndarray) -> tuple[list[Found], bool]:
    """(objects in an [H, W, 3] uint8 image, whether the picture is a clean scene: mostly white, and every coloured
    component a recognisable object)."""
    label = colour_labels(image)
    clean = bool((label == 0).mean() >= MIN_BACKGROUND) and not bool((label == -1).sum() > MIN_AREA)
    found = []
    for ci, name in enumerate(NAMES, start=1):
        for comp in _components(label == ci):
            if len(comp) < MIN_AREA:
                continue
            shape, cx, cy, iou = match_shape(comp)
            if iou < MIN_IOU:
                clean = False
                continue
            obj = Found(shape, name, cx, cy, len(comp), iou)
            col, row = cell_of(obj)
            step = SIZE / GRID
            if max(abs(cx - (col + 0.5) * step), abs(cy - (row + 0.5) * step)) > OFF_GRID:
                clean = False
            found.append(obj)
    return found, clean


def detect(image: np.ndarray) -> list[Found]:
    """The recognisable objects in an [H, W, 3] uint8 image."""
    return read_scene(image)[0]


def judge(image: np.ndarray, meta: dict) -> bool:
    """True when the picture is a clean scene and its objects satisfy every include clause of the prompt."""
    objects, clean = read_scene(image)
    return clean and satisfies(objects, meta)
