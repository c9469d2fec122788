"""ShapeWorld: prompts cover GenEval's categories, the teacher always satisfies them, the judge is exact."""

from __future__ import annotations


import pytest
import torch

from apps.shapeworld import (all_prompts, compositional_prompts, detect, find_prompt, judge, layout_from_noise,
                              prompt_for, read_scene, render, split_prompts, truth, world_prompts)
from apps.shapeworld.world import COLORS, COMPOSITIONAL_TAGS, TAGS, Obj


def test_prompts_cover_the_six_geneval_categories_and_split_cleanly():
    prompts = all_prompts()
    assert {p["tag"] for p in prompts} == set(TAGS)
    assert len({p["prompt"] for p in world_prompts()}) == len(world_prompts()) == len(prompts) + 324
    splits = split_prompts()
    parts = [splits.train, splits.validation, splits.test]
    names = [{p["prompt"] for p in part} for part in parts + [splits.compositional]]
    assert all(a.isdisjoint(b) for i, a in enumerate(names) for b in names[i + 1:])
    assert all({p["tag"] for p in part} == set(TAGS) for part in parts)
    assert sum(len(part) for part in parts) == len(prompts)
    assert {p["tag"] for p in splits.compositional} == set(COMPOSITIONAL_TAGS) and len(splits.compositional) == 32
    assert split_prompts() == splits, "the split is fixed"


def test_compositional_prompts_combine_what_training_prompts_say_separately():
    """A counted colour and a related pair of coloured shapes: their words all occur in training prompts, the
    combinations never; the teacher and the judge follow them."""
    splits = split_prompts()
    trained = {p["prompt"] for p in splits.train}
    assert all(p["prompt"] not in trained for p in compositional_prompts())
    two_red = prompt_for("count_color", "circle", c1="red", n=2)
    assert two_red["prompt"] == "a photo of two red circles" and find_prompt("a photo of two red circles") == two_red
    circles = [Obj("circle", "red", 8, 8, 6), Obj("circle", "red", 40, 8, 6)]
    assert judge(render(circles), two_red)
    assert not judge(render(circles[:1] + [Obj("circle", "blue", 40, 8, 6)]), two_red)
    pair = prompt_for("position_color", "square", "triangle", "green", "blue", rel="above")
    above = [Obj("triangle", "blue", 24, 40, 6), Obj("square", "green", 24, 8, 6)]
    assert judge(render(above), pair) and not judge(render([Obj("triangle", "blue", 24, 40, 6),
                                                           Obj("square", "red", 24, 8, 6)]), pair)
    g = torch.Generator().manual_seed(1)
    for p in compositional_prompts()[::9]:
        scene = layout_from_noise(p, torch.randn(8, 8, 8, generator=g))
        clause_colours = {c["shape"]: c["color"] for c in p["include"]}
        assert all(o.color == clause_colours[o.shape] for o in scene)


def test_the_judge_is_exact_on_crisp_teacher_scenes():
    """On teacher scenes (objects known), the judge's verdict from pixels is the truth, for every kind of prompt."""
    g = torch.Generator().manual_seed(11)
    prompts = world_prompts()
    for i in range(600):
        p = prompts[(i * 37) % len(prompts)]
        scene = layout_from_noise(p, torch.randn(8, 8, 8, generator=g))
        assert judge(render(scene), p) == truth(scene, p), (p["prompt"], scene)


def test_teacher_draws_are_right_or_wrong_depending_on_the_noise():
    """About 30-75% of single draws satisfy their prompt, and most prompts get both right and wrong draws."""
    g = torch.Generator().manual_seed(7)
    right = total = mixed = 0
    for p in all_prompts():
        verdicts = [judge(render(layout_from_noise(p, torch.randn(8, 8, 8, generator=g))), p) for _ in range(8)]
        right += sum(verdicts)
        total += len(verdicts)
        mixed += 0 < sum(verdicts) < len(verdicts)
    assert 0.30 <= right / total <= 0.75 and mixed > len(all_prompts()) * 0.8


def test_the_judge_accepts_every_scene_that_fits_its_prompt():
    """Scenes built to satisfy each prompt (two well-separated objects per clause shape) always pass."""
    for p in all_prompts():
        objs = []
        for i, clause in enumerate(p["include"]):
            colour = clause.get("color", "green")
            for k in range(clause["count"]):
                objs.append(Obj(clause["shape"], colour, 10 + 16 * k, 10 + 44 * i, 6))
        if p["tag"] == "position":  # include[1] placed relative to the anchor include[0]
            rel = p["include"][1]["position"][0]
            ax, ay = 40, 40
            bx, by = {"left of": (8, 40), "right of": (56, 40), "above": (40, 8), "below": (40, 56)}[rel]
            objs = [Obj(p["include"][0]["shape"], "red", ax, ay, 6), Obj(p["include"][1]["shape"], "blue", bx, by, 6)]
        assert judge(render(objs), p), p["prompt"]


def test_different_noise_gives_different_scenes():
    p = prompt_for("two_object", "circle", "square")
    scenes = {tuple((o.cx, o.cy, o.color) for o in layout_from_noise(p, torch.randn(8, 8, 8))) for _ in range(20)}
    assert len(scenes) > 10


@pytest.mark.parametrize("prompt, objs, expected", [
    (prompt_for("single_object", "circle"), [Obj("circle", "red", 24, 24, 6)], True),
    (prompt_for("single_object", "circle"), [Obj("square", "red", 24, 24, 6)], False),
    (prompt_for("two_object", "circle", "triangle"), [Obj("circle", "blue", 8, 40, 6), Obj("triangle", "green", 40, 8, 6)], True),
    (prompt_for("two_object", "circle", "triangle"), [Obj("circle", "blue", 8, 40, 6), Obj("square", "green", 40, 8, 6)], False),
    (prompt_for("counting", "square", n=3), [Obj("square", "red", x, 24, 6) for x in (8, 24, 56)], True),
    (prompt_for("counting", "square", n=3), [Obj("square", "red", x, 24, 6) for x in (8, 56)], False),
    (prompt_for("counting", "square", n=2), [Obj("square", "red", x, 24, 6) for x in (8, 24, 56)], False),
    (prompt_for("colors", "triangle", c1="yellow"), [Obj("triangle", "yellow", 24, 24, 6)], True),
    (prompt_for("colors", "triangle", c1="yellow"), [Obj("triangle", "blue", 24, 24, 6)], False),
    (prompt_for("position", "circle", "square", rel="left of"), [Obj("circle", "red", 8, 24, 6), Obj("square", "red", 40, 24, 6)], True),
    (prompt_for("position", "circle", "square", rel="left of"), [Obj("circle", "red", 40, 24, 6), Obj("square", "red", 8, 24, 6)], False),
    (prompt_for("position", "circle", "square", rel="above"), [Obj("circle", "red", 24, 8, 6), Obj("square", "red", 24, 40, 6)], True),
    (prompt_for("position", "circle", "square", rel="below"), [Obj("circle", "red", 24, 8, 6), Obj("square", "red", 24, 40, 6)], False),
    (prompt_for("color_attr", "circle", "square", "red", "blue"), [Obj("circle", "red", 8, 8, 6), Obj("square", "blue", 40, 40, 6)], True),
    (prompt_for("color_attr", "circle", "square", "red", "blue"), [Obj("circle", "blue", 8, 8, 6), Obj("square", "red", 40, 40, 6)], False),
])
def test_judge_on_right_and_wrong_images(prompt, objs, expected):
    assert judge(render(objs), prompt) is expected


def test_detector_reads_shape_colour_and_position():
    objs = [Obj(s, c, x, y, 6) for s, c, x, y in (("circle", "red", 12, 12), ("square", "green", 44, 14),
                                                  ("triangle", "blue", 14, 46), ("circle", "yellow", 46, 46))]
    found = sorted(detect(render(objs)), key=lambda f: (round(f.cy / 32), f.cx))
    assert [(f.shape, f.color) for f in found] == [(o.shape, o.color) for o in objs]
    for f, o in zip(found, objs):  # the centre of the drawn shape's box, a triangle's too
        assert abs(f.cx - o.cx) <= 0.5 and abs(f.cy - o.cy) <= 0.5 and f.iou > 0.9


def test_judge_rejects_pictures_that_are_no_scene():
    rng = torch.Generator().manual_seed(0)
    blotches = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=rng), size=64, mode="nearest")
    img = (blotches[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()
    img[:32] = 255  # half white, half large random colour blocks
    assert not judge(img, prompt_for("single_object", "square"))
    big = render([Obj("square", "red", 32, 32, 14), Obj("circle", "blue", 8, 8, 6)])  # far larger than any object
    found, clean = read_scene(big)
    assert [f.shape for f in found] == ["circle"] and not clean
    assert not judge(big, prompt_for("single_object", "circle"))


def test_judge_ignores_specks_and_blurs_to_the_palette():
    img = render([Obj("circle", "red", 24, 24, 6)])
    img[0:2, 0:2] = COLORS["blue"]  # a 4-pixel speck is not an object
    noisy = (img.astype(int) + torch.randint(-25, 26, img.shape).numpy()).clip(0, 255).astype("uint8")
    assert judge(noisy, prompt_for("single_object", "circle"))
    assert not judge(noisy, prompt_for("two_object", "circle", "square"))


def test_training_step_equals_the_inference_path(sana, res):
    """The trainer's differentiable one step (32 text positions) equals SanaSprint's prefix+suffix (300 positions)."""
    from apps.shapeworld.train import one_step

    prompts = ["a photo of a red circle", "a photo of two squares"]
    seeds = [3, 4]
    z = torch.stack([torch.randn(1, 8, res // 4, res // 4, generator=torch.Generator().manual_seed(s))[0] for s in seeds])
    with torch.no_grad():
        train_path = one_step(sana.pipe, prompts, z)
    for i, p in enumerate(prompts):
        hidden = sana.prefix(p, [seeds[i]], layer=1, height=res, width=res)
        assert (sana.suffix(hidden)[0] - train_path[i]).abs().max().item() < 1e-5
