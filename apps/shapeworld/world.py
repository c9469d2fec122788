"""ShapeWorld: coloured circles, squares and triangles on white, with GenEval's six prompt categories.

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
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
LATENT_CHANNELS = 8  # the noise the teacher reads: [8, 8, 8] for a 64 px image (AE downsamples x8)


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    cx: float  # centre, pixels
    cy: float
    r: float  # half size, pixels


def prompt_for(tag: str, s1: str, s2: str = "", c1: str = "", c2: str = "", n: int = 2, rel: str = "left of") -> dict:
    """A prompt of a GenEval category with its metadata: {"tag", "prompt", "include": [...]}."""
    if tag == "single_object":
        return {"tag": tag, "prompt": f"a photo of a {s1}", "include": [{"shape": s1, "count": 1}]}
    if tag == "two_object":
        return {"tag": tag, "prompt": f"a photo of a {s1} and a {s2}",
                "include": [{"shape": s1, "count": 1}, {"shape": s2, "count": 1}]}
    if tag == "counting":
        return {"tag": tag, "prompt": f"a photo of {NUMBERS[n]} {s1}s", "include": [{"shape": s1, "count": n, "exact": True}]}
    if tag == "colors":
        return {"tag": tag, "prompt": f"a photo of a {c1} {s1}", "include": [{"shape": s1, "count": 1, "color": c1}]}
    if tag == "position":  # "a s1 rel a s2": include[0] is the anchor s2, include[1] the located s1
        return {"tag": tag, "prompt": f"a photo of a {s1} {rel} a {s2}",
                "include": [{"shape": s2, "count": 1}, {"shape": s1, "count": 1, "position": [rel, 0]}]}
    if tag == "color_attr":
        return {"tag": tag, "prompt": f"a photo of a {c1} {s1} and a {c2} {s2}",
                "include": [{"shape": s1, "count": 1, "color": c1}, {"shape": s2, "count": 1, "color": c2}]}
    raise ValueError(f"unknown tag {tag!r}")


def make_prompt(tag: str, rng: random.Random) -> dict:
    """A random prompt of one category."""
    s1, s2 = rng.sample(SHAPES, 2)
    c1, c2 = rng.sample(list(COLORS), 2)
    return prompt_for(tag, s1, s2, c1, c2, rng.choice(list(NUMBERS)), rng.choice(RELATIONS))


def all_prompts() -> list[dict]:
    """Every distinct prompt of the world (to split into training and held-out prompts)."""
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


def split_prompts(seed: int = 0, held_out: float = 0.25) -> tuple[list[dict], list[dict]]:
    """Training and held-out prompts, split within each category so every category is in both."""
    rng = random.Random(seed)
    train, test = [], []
    for tag in TAGS:
        group = [p for p in all_prompts() if p["tag"] == tag]
        rng.shuffle(group)
        k = max(1, round(len(group) * held_out))
        test += group[:k]
        train += group[k:]
    return train, test


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
        objs.append(Obj(shape, colour, cx + jx, cy + jy, 6.0))
    return objs


def render(objs: list[Obj], size: int = SIZE) -> np.ndarray:
    """Draw the scene: [size, size, 3] uint8, white background, flat-coloured shapes."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for o in objs:
        dx, dy = xx - o.cx, yy - o.cy
        if o.shape == "circle":
            mask = dx * dx + dy * dy <= o.r * o.r
        elif o.shape == "square":
            mask = (np.abs(dx) <= o.r * 0.86) & (np.abs(dy) <= o.r * 0.86)
        else:  # upward triangle inscribed in the same box
            h = o.r * 1.7
            top = o.cy - h / 2
            frac = (yy - top) / h
            mask = (frac >= 0) & (frac <= 1) & (np.abs(dx) <= frac * o.r)
        img[mask] = COLORS[o.color]
    return img


def render_from_noise(meta: dict, z: torch.Tensor) -> np.ndarray:
    return render(layout_from_noise(meta, z))
