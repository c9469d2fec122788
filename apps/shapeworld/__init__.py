"""ShapeWorld: a miniature world where Best-of-N with VHS can be checked end to end, with an exact judge."""

from .judge import detect, judge, read_scene, satisfies, truth
from .world import (SHAPES, TAGS, Splits, all_prompts, compositional_prompts, find_prompt, layout_from_noise, prompt_for,
                    render, render_from_noise, split_prompts, world_prompts)


def shapeworld_judge():
    """The exact judge as a training-pipeline judge (needs datasets generated with --save-images)."""
    from apps.training.judges import ImageJudge

    return ImageJudge(lambda image, prompt, meta: judge(image.permute(1, 2, 0).cpu().numpy(), meta))


__all__ = ["SHAPES", "TAGS", "Splits", "all_prompts", "compositional_prompts", "detect", "find_prompt", "judge",
           "layout_from_noise", "prompt_for", "read_scene", "render", "render_from_noise", "satisfies",
           "shapeworld_judge", "split_prompts", "truth", "world_prompts"]
