"""ShapeWorld: a miniature world where Best-of-N with VHS can be checked end to end, with an exact judge."""

from .judge import detect, judge
from .world import SHAPES, TAGS, all_prompts, layout_from_noise, prompt_for, render, render_from_noise, split_prompts


def shapeworld_judge():
    """The exact judge as a training-pipeline judge (needs datasets generated with --save-images)."""
    from apps.training.judges import ImageJudge

    return ImageJudge(lambda image, prompt, meta: judge(image.permute(1, 2, 0).cpu().numpy(), meta))


__all__ = ["SHAPES", "TAGS", "all_prompts", "detect", "judge", "layout_from_noise", "prompt_for", "render",
           "render_from_noise", "shapeworld_judge", "split_prompts"]
