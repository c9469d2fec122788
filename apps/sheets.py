"""Pictures that explain a Best-of-N run: every candidate with its score, the winner framed, the prompt on top and a
legend at the bottom. Used by the demo (candidates.png) and by the template browser's card images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.io import to_uint8

GREEN, BLUE, GREY, INK, PAPER = (0, 150, 60), (40, 90, 200), (120, 120, 120), (20, 20, 20), (255, 255, 255)


def font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def wrap(text: str, face, width: int) -> list[str]:
    """Break `text` into lines no wider than `width` pixels in `face`."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and face.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


@dataclass(frozen=True)
class Tile:
    """One candidate on the sheet."""

    image: torch.Tensor  # [3, H, W] in 0..1
    caption: str  # e.g. "#3 +0.52"
    verdict: bool | None = None  # the exact judge's verdict, when there is one
    decoded_by_verifier: bool = True  # False: the verifier never decoded it (shown here for the picture only)


def contact_sheet(tiles: list[Tile], winner: int, title: str, legend: list[str], tile_px: int = 160,
                  columns: int | None = None, kept: tuple[int, ...] = ()):
    """A grid of candidates, the winner framed in green (and `kept` ones in blue: a cascade's survivors), `title` on
    top and the `legend` lines below."""
    from PIL import Image, ImageDraw

    cols = columns or min(len(tiles), 4)
    rows = (len(tiles) + cols - 1) // cols
    pad, caption_h, head_h = 10, 22, 44
    width = max(cols * (tile_px + pad) + pad, 480)
    legend = [part for line in legend for part in wrap(line, font(13), width - 2 * pad)]
    legend_h = 8 + 18 * len(legend)
    sheet = Image.new("RGB", (width, head_h + rows * (tile_px + caption_h + pad) + pad + legend_h), PAPER)
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 12), title, fill=INK, font=font(18))
    for i, tile in enumerate(tiles):
        x = pad + (i % cols) * (tile_px + pad)
        y = head_h + (i // cols) * (tile_px + caption_h + pad)
        picture = Image.fromarray(to_uint8(tile.image)).resize((tile_px, tile_px), Image.NEAREST)
        if not tile.decoded_by_verifier:  # faded: the verifier judged it from hidden states, never as pixels
            picture = Image.blend(picture, Image.new("RGB", picture.size, PAPER), 0.45)
        sheet.paste(picture, (x, y))
        if i == winner or i in kept:
            draw.rectangle([x - 4, y - 4, x + tile_px + 3, y + tile_px + 3], outline=GREEN if i == winner else BLUE,
                           width=4)
        text = tile.caption + ("" if tile.verdict is None else ("  ok" if tile.verdict else "  wrong"))
        colour = GREEN if i == winner else (INK if tile.decoded_by_verifier else GREY)
        draw.text((x, y + tile_px + 3), text, fill=colour, font=font(14))
    y = sheet.height - legend_h + 4
    for line in legend:
        draw.text((pad, y), line, fill=GREY, font=font(13))
        y += 18
    return sheet


def best_of_n_sheet(prompt: str, images: torch.Tensor, scores, winner: int, verdicts: list[bool] | None,
                     mode: str = "reference"):
    """Every candidate with its score (and the judge's verdict), the winner framed, prompt and legend: the picture of
    one VHS Best-of-N run. The losers are decoded here for the picture only: VHS never decodes them."""
    tiles = [Tile(images[i], f"#{i} {float(scores.scores[i]):+.2f}", None if verdicts is None else verdicts[i],
                  decoded_by_verifier=i == winner) for i in range(len(images))]
    legend = [f"score: the VHS verifier's answer read from the hidden state ({mode}: "
              + ("P(yes), or -P(no) when it answers no" if mode == "reference" else "P(yes) / (P(yes) + P(no))")
              + "); higher is better",
              "green frame: the winner, the only candidate finished and decoded; faded: never decoded by VHS "
              "(decoded here only for this picture)"]
    if verdicts is not None:
        legend.append(f"ok / wrong: ShapeWorld's exact judge on the finished picture ({sum(verdicts)} of "
                      f"{len(verdicts)} right); the verifier never sees it")
    return contact_sheet(tiles, winner, f"Best-of-{len(images)} for \"{prompt}\"", legend)
