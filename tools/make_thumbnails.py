"""Card images for ComfyUI's template browser (workflows/<title>.jpg next to each workflow): what the workflow makes.

    python tools/make_thumbnails.py

The ShapeWorld demos are run here, on the embedded models, with their own prompt, seed and N, and the card shows
that run: the candidates, the verifier's pick framed. The paper's setups need SANA-Sprint 1.6B, which this build
cannot run, so their cards say what they are and what they cost instead of showing a picture they did not make.
"""

from __future__ import annotations

import logging
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from apps.sheets import BLUE, GREEN, GREY, INK, PAPER, Tile, contact_sheet, font, wrap  # noqa: E402
from apps.shapeworld import find_prompt, judge  # noqa: E402
from build_workflows import CASCADE, CLIP_SETUPS, DEMO_PROMPT, HERE, SEED, TITLES, VHS_SETUPS  # noqa: E402
from models import SanaSprint, VHSVerifier, candidate_seeds, select_top_k  # noqa: E402
from models.embedded import DEMO_SIZE, embedded_model  # noqa: E402
from models.io import to_uint8  # noqa: E402

logger = logging.getLogger("vhs.thumbnails")
CARD = (640, 360)


def fit(image, size=CARD):
    """`image` scaled into a white card of `size`, centred."""
    from PIL import Image

    image = image.copy()
    image.thumbnail(size, Image.LANCZOS)
    card = Image.new("RGB", size, PAPER)
    card.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return card


class Demo:
    """One Best-of-N run of the embedded models (prompt, seed and N of the demo workflows)."""

    def __init__(self, n: int):
        self.model = SanaSprint.from_pretrained(embedded_model("sana"), dtype="fp32")
        self.verifiers = {role: VHSVerifier.from_pretrained(embedded_model(role)) for role in ("hidden", "clip",
                                                                                                "latent")}
        layer = self.verifiers["hidden"].spec.layer
        self.hidden = self.model.prefix(DEMO_PROMPT, candidate_seeds(SEED, n), layer=layer, height=DEMO_SIZE,
                                        width=DEMO_SIZE)
        self.images = self.model.decode(self.model.suffix(self.hidden))  # for the picture only
        meta = find_prompt(DEMO_PROMPT)
        self.verdicts = [judge(to_uint8(im), meta) for im in self.images]

    def scores(self, role: str):
        return self.verifiers[role].score(self.model, self.hidden, mode="reference")

    def tiles(self, scores, decoded: set[int]) -> list[Tile]:
        return [Tile(self.images[i], f"#{i} {float(scores.scores[i]):+.2f}", self.verdicts[i], i in decoded)
                for i in range(len(self.images))]


def demo_best_of(demo: Demo, title: str):
    scores = demo.scores("hidden")
    winner = select_top_k(demo.hidden, scores)[1][0]
    return contact_sheet(demo.tiles(scores, {winner}), winner, title, [], tile_px=120)


def demo_cascade(demo: Demo):
    n, k = CASCADE
    vhs = demo.scores("hidden")
    survivors, kept, _ = select_top_k(demo.hidden, vhs, k=k)
    clip = demo.verifiers["clip"].score(demo.model, survivors, mode="reference")
    winner = select_top_k(survivors, clip)[1][0]
    title = f"Cascade: VHS keeps {k} of {n} (blue), CLIP picks 1 (green)"
    return contact_sheet(demo.tiles(vhs, set(kept)), winner, title, [], tile_px=96, columns=5, kept=tuple(kept))


def demo_baselines(demo: Demo):
    """The same candidates, three verifiers, three winners side by side."""
    tiles, labels = [], {"hidden": "VHS", "clip": "CLIP", "latent": "AE"}
    for role, label in labels.items():
        scores = demo.scores(role)
        i = select_top_k(demo.hidden, scores)[1][0]
        tiles.append(Tile(demo.images[i], f"{label} picks #{i}", demo.verdicts[i]))
    return contact_sheet(tiles, -1, f"VHS, MLLM w/ CLIP, MLLM w/ AE: each picks from the same {len(demo.images)}",
                         [], tile_px=170, columns=3)


def paper_card(title: str, facts: list[str], tiles: int, kept: int = 0):
    """A card for a setup this build cannot run, readable at the browser's card size: the title, two short facts,
    and N tiles with the pick (green) and a cascade's survivors (blue)."""
    from PIL import Image, ImageDraw

    card = Image.new("RGB", CARD, PAPER)
    draw = ImageDraw.Draw(card)
    y = 26
    for line in wrap(title, font(44), CARD[0] - 56):
        draw.text((28, y), line, fill=INK, font=font(44))
        y += 52
    y += 10
    for text, size, colour in zip(facts, (30, 26), (INK, GREY)):
        draw.text((28, y), text, fill=colour, font=font(size))
        y += size + 12
    side = min(52, (CARD[0] - 56) // max(tiles, 1) - 6)
    for i in range(tiles):
        x, top = 28 + i * (side + 6), CARD[1] - side - 28
        colour = GREEN if i == 0 else (BLUE if i < kept else (205, 205, 205))
        draw.rectangle([x, top, x + side, top + side], fill=colour)
    return card


def paper_cards() -> dict:
    cards = {}
    needs = "needs SANA-Sprint 1.6B weights"
    for budget, n, geneval in VHS_SETUPS:
        cards[("vhs", budget)] = paper_card(f"VHS Best-of-{n} at {budget} ms", [f"GenEval {geneval} in the paper",
                                                                                needs], n)
        cards[("budget", budget)] = paper_card(f"VHS in {budget} ms, N measured here",
                                               [f"an H100 fits N={n} (GenEval {geneval})", needs], n)
    for budget, n, geneval in CLIP_SETUPS:
        cards[("mllm_clip", budget)] = paper_card(f"MLLM w/ CLIP Best-of-{n} at {budget} ms",
                                                  [f"baseline: GenEval {geneval} in the paper", needs], n)
    n, k = CASCADE
    cards["cascade"] = paper_card(f"Cascade: VHS keeps {k} of {n}, CLIP picks 1", ["beyond the paper", needs], n, k)
    return cards


def main() -> list[str]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    demo8, demo9 = Demo(8), Demo(CASCADE[0])
    cards = paper_cards()
    cards["demo_best_of"] = demo_best_of(demo8, f"VHS Best-of-8: \"{DEMO_PROMPT}\"")
    cards["demo_budget"] = demo_best_of(demo8, "VHS in a time budget: as many candidates as fit")
    cards["demo_baselines"] = demo_baselines(demo8)
    cards["demo_cascade"] = demo_cascade(demo9)
    written = []
    for key, (title, _) in TITLES.items():
        path = os.path.join(HERE, f"{title}.jpg")
        fit(cards[key]).save(path, quality=85, optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main():
        logger.info("wrote %s", p)
