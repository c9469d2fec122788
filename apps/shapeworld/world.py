"""ShapeWorld: coloured circles, squares and triangles on white, with GenEval's six prompt categories and two
compositions of them.

Each prompt comes with GenEval-style metadata (tag + include clauses) that the exact judge checks. The
procedural teacher turns the *same Gaussian noise* SANA-Sprint starts from into a scene for the prompt, cell by
cell (whether a cell holds an object, which of the prompt's shapes, colour, jitter), then renders it; the one-step
student learns that noise -> image map, so different seeds give different scenes, right or wrong.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

SIZE = 64  # pixels
GRID = 4  # objects sit in a 4 x 4 grid of cells (16 px each), jittered
SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 30)}
BACKGROUND = (255, 255, 255)
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four"}
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")  # GenEval's categories
COMPOSITIONAL_TAGS = ("count_color", "position_color")
OBJECT_RADIUS = 6.0  # every object's half size, pixels
SQUARE_HALF = 0.86  # a square's half side, in object radii
TRIANGLE_HEIGHT = 1.7  # a triangle's height, in object radii (its base is 2 radii)
LATENT_CHANNELS = 8  # the noise the teacher reads: [8, 8, 8] for a 64 px image (AE downsamples x8)


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    cx: float  # centre, pixels
    cy: float
    r: float  # half size, pixels


def prompt_for(tag: str, s1: str, s2: str = "", c1: str = "", c2: str = "", n: int = 2, rel: str = "left of") -> dict:
    """A prompt of a category with its metadata: {"tag", "prompt", "include": [...]}. GenEval's six categories, and
    two compositions of them kept out of every verifier's training (the compositional test split): a counted colour
    ("count_color": two red circles) and a related pair of coloured shapes ("position_color")."""
    if tag == "single_object":
        return {"tag": tag, "prompt": f"a photo of a {s1}", "include": [{"shape": s1, "count": 1}]}
    if tag == "two_object":
        return {"tag": tag, "prompt": f"a photo of a {s1} and a {s2}",
                "include": [{"shape": s1, "count": 1}, {"shape": s2, "count": 1}]}
    if tag == "counting":
        return {"tag": tag, "prompt": f"a photo of {NUMBERS[n]} {s1}s",
                "include": [{"shape": s1, "count": n, "exact": True}]}
    if tag == "colors":
        return {"tag": tag, "prompt": f"a photo of a {c1} {s1}", "include": [{"shape": s1, "count": 1, "color": c1}]}
    if tag == "position":  # "a s1 rel a s2": include[0] is the anchor s2, include[1] the located s1
        return {"tag": tag, "prompt": f"a photo of a {s1} {rel} a {s2}",
                "include": [{"shape": s2, "count": 1}, {"shape": s1, "count": 1, "position": [rel, 0]}]}
    if tag == "color_attr":
        return {"tag": tag, "prompt": f"a photo of a {c1} {s1} and a {c2} {s2}",
                "include": [{"shape": s1, "count": 1, "color": c1}, {"shape": s2, "count": 1, "color": c2}]}
    if tag == "count_color":
        return {"tag": tag, "prompt": f"a photo of {NUMBERS[n]} {c1} {s1}s",
                "include": [{"shape": s1, "count": n, "exact": True, "color": c1}]}
    if tag == "position_color":
        return {"tag": tag, "prompt": f"a photo of a {c1} {s1} {rel} a {c2} {s2}",
                "include": [{"shape": s2, "count": 1, "color": c2},
                            {"shape": s1, "count": 1, "color": c1, "position": [rel, 0]}]}
    raise ValueError(f"unknown tag {tag!r}")


def make_prompt(tag: str, rng: random.Random) -> dict:
    """A random prompt of one category."""
    s1, s2 = rng.sample(SHAPES, 2)
    c1, c2 = rng.sample(list(COLORS), 2)
    return prompt_for(tag, s1, s2, c1, c2, rng.choice(list(NUMBERS)), rng.choice(RELATIONS))


def all_prompts() -> list[dict]:
    """Every distinct prompt of GenEval's six categories in this world (126)."""
    out = []
    for s1 in SHAPES:
        out.append(prompt_for("single_object", s1))
        out += [prompt_for("counting", s1, n=n) for n in NUMBERS]
        out += [prompt_for("colors", s1, c1=c) for c in COLORS]
        for s2 in (s for s in SHAPES if s != s1):
            out.append(prompt_for("two_object", s1, s2))
            out += [prompt_for("position", s1, s2, rel=r) for r in RELATIONS]
            out += [prompt_for("color_attr", s1, s2, c1, c2) for c1 in COLORS for c2 in COLORS if c1 != c2]
    return out


def compositional_prompts() -> list[dict]:
    """Every prompt of the two compositions (36 counted colours, 288 related coloured pairs)."""
    out = [prompt_for("count_color", s1, c1=c, n=n) for s1 in SHAPES for c in COLORS for n in NUMBERS]
    out += [prompt_for("position_color", s1, s2, c1, c2, rel=r) for s1 in SHAPES for s2 in SHAPES if s2 != s1
            for c1 in COLORS for c2 in COLORS if c2 != c1 for r in RELATIONS]
    return out


def world_prompts() -> list[dict]:
    """Everything the grammar can say: what the generator learns (as SANA-Sprint was trained on far more than any
    benchmark asks), while verifiers train on the training split only."""
    return all_prompts() + compositional_prompts()


def find_prompt(text: str) -> dict | None:
    """The metadata of a prompt of this world, or None for text the grammar cannot produce."""
    return next((p for p in world_prompts() if p["prompt"] == text.strip()), None)


@dataclass(frozen=True)
class Splits:
    """Prompts by role: verifiers train on `train`; every choice (block, loss, learning rate, checkpoint) is made on
    `validation`; `test` and `compositional` are evaluated once, at the end."""

    train: list[dict]
    validation: list[dict]
    test: list[dict]
    compositional: list[dict]


def split_prompts(seed: int = 0, test: float = 0.25, validation: float = 0.15, compositional_per_tag: int = 16) -> Splits:
    """Split GenEval's six categories within each category (each category in every split, at least one prompt per
    split), and draw the compositional test prompts (never in training) from the two compositions."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for tag in TAGS:
        group = [p for p in all_prompts() if p["tag"] == tag]
        rng.shuffle(group)
        k_test = max(1, round(len(group) * test))
        k_val = max(1, round(len(group) * validation))
        out["test"] += group[:k_test]
        out["validation"] += group[k_test:k_test + k_val]
        out["train"] += group[k_test + k_val:]
    comp = []
    for tag in COMPOSITIONAL_TAGS:
        group = [p for p in compositional_prompts() if p["tag"] == tag]
        comp += rng.sample(group, min(compositional_per_tag, len(group)))
    return Splits(out["train"], out["validation"], out["test"], comp)


# ------------------------------------------------------------------ the teacher: noise -> a scene for the prompt
PRESENCE = 0.6  # a cell holds an object when its pooled channel-0 noise exceeds this (std 0.5): p ~ 0.115


def _cell_center(cell: int) -> tuple[float, float]:
    step = SIZE / GRID
    return (cell % GRID + 0.5) * step, (cell // GRID + 0.5) * step


def layout_from_noise(meta: dict, z: torch.Tensor) -> list[Obj]:
    """The scene the initial noise z [8, 8, 8] (channels, h, w) draws for a prompt, decided cell by cell.

    Every rule is local, so a one-step DiT can learn it: pooled to the 4 x 4 cells, channel 0 says whether a cell
    holds an object, channel 1 which of the prompt's shapes, channels 2-3 the jitter, channels 4-7 the colour when
    the prompt leaves it open. Counts and relations are not enforced, so a draw is right or wrong depending on the
    noise - the variety Best-of-N chooses from (about half of single draws satisfy their prompt).
    """
    pooled = torch.nn.functional.avg_pool2d(z[None].float(), 2)[0].flatten(1)  # [8, 16]
    shapes = [c["shape"] for c in meta["include"]]
    colour_of = {c["shape"]: c.get("color") for c in meta["include"]}
    objs = []
    for cell in range(GRID * GRID):
        if float(pooled[0, cell]) <= PRESENCE:
            continue
        shape = shapes[0] if len(set(shapes)) == 1 or float(pooled[1, cell]) > 0 else shapes[1]
        colour = colour_of.get(shape) or list(COLORS)[int(torch.argmax(pooled[4:8, cell]))]
        cx, cy = _cell_center(cell)
        jx = float(torch.tanh(pooled[2, cell])) * 1.5  # |jitter| <= 1.5 px: neighbours never touch
        jy = float(torch.tanh(pooled[3, cell])) * 1.5
        objs.append(Obj(shape, colour, cx + jx, cy + jy, OBJECT_RADIUS))
    return objs


def shape_mask(shape: str, cx: float, cy: float, r: float, height: int, width: int | None = None) -> np.ndarray:
    """Pixels (centres) inside one shape whose box is centred at (cx, cy) with half size r: [height, width] bool.
    The one definition of the world's shapes: the renderer draws it, the judge matches against it."""
    yy, xx = np.mgrid[0:height, 0:width or height] + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * SQUARE_HALF) & (np.abs(dy) <= r * SQUARE_HALF)
    if shape == "triangle":  # upward, inscribed in the same box
        h = r * TRIANGLE_HEIGHT
        frac = (yy - (cy - h / 2)) / h
        return (frac >= 0) & (frac <= 1) & (np.abs(dx) <= frac * r)
    raise ValueError(f"unknown shape {shape!r}")


def render(objs: list[Obj], size: int = SIZE) -> np.ndarray:
    """Draw the scene: [size, size, 3] uint8, white background, flat-coloured shapes."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for o in objs:
        img[shape_mask(o.shape, o.cx, o.cy, o.r, size)] = COLORS[o.color]
    return img


def render_from_noise(meta: dict, z: torch.Tensor) -> np.ndarray:
    return render(layout_from_noise(meta, z))
