"""Best-of-N in a Time Budget: a budget in milliseconds instead of N, measured on the user's own machine."""

from __future__ import annotations

import dataclasses
import logging

from comfy_api.latest import io

from ..models import CostCache, InputError, best_of_n_within_budget, measure_costs, select_top_k
from ..models.errors import check_text
from ..models.verifier import SCORE_MODES
from . import host
from .edges import CATEGORY, CandidateScores, Hidden, SanaSprintModel, Verifier, expect_model, expect_verifier
from .sampling import LAYER_TIP, MAX_N, NUMBERS, check_numbers, resolve_layer, resolve_size
from .verifiers import score_report

logger = logging.getLogger(__name__)
COSTS = CostCache(tolerance=2.0)  # per model, verifier, size, layer and device; forgotten when reality disagrees


class BestOfNTimeBudget(io.ComfyNode):
    """Generate, score and select within a time budget: N is the largest that fits, measured on this machine."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        width, height = NUMBERS["width"], NUMBERS["height"]
        return io.Schema(
            node_id="VHSBestOfNTimeBudget",
            display_name="Best-of-N in a Time Budget",
            category=CATEGORY,
            description="VHS Best-of-N with a budget in milliseconds instead of N: the costs of a candidate, its "
                        "verification and the winner's finish are measured on your device (once per model, size and "
                        "l*, again when a run disagrees with them), and N is the largest that fits. A budget smaller "
                        "than one candidate still gives an image (Best-of-1) and the report says by how much it was "
                        "exceeded. Optional anytime stop at a score threshold.",
            inputs=[
                SanaSprintModel.Input("model", tooltip="From SANA-Sprint Loader."),
                Verifier.Input("verifier", tooltip="From VHS Verifier Loader; it also decides l*."),
                io.String.Input("prompt", multiline=True, default="a photo of a red apple left of a blue cup",
                                tooltip="The text prompt."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Candidate i uses seed + i."),
                io.Int.Input("budget_ms", default=1100, min=10, max=600000, step=10,
                             tooltip="Wall-clock budget for the whole Best-of-N, winner's finish included (the "
                                     "paper's setups: 550, 1100, 1650 ms on an H100)."),
                io.Int.Input("layer", default=-1, min=-1, max=NUMBERS["layer"][2],
                             tooltip=LAYER_TIP + " Here the verifier is always connected: leave -1."),
                io.Int.Input("width", default=width[0], min=width[1], max=width[2], step=32,
                             tooltip="Image width (px)."),
                io.Int.Input("height", default=height[0], min=height[1], max=height[2], step=32,
                             tooltip="Image height (px)."),
                io.Int.Input("max_candidates", default=MAX_N, min=1, max=MAX_N,
                             tooltip="Never generate more than this many, whatever the budget."),
                io.Float.Input("threshold", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Anytime stop: 0 = off. Otherwise stop generating further batches once a "
                                       "candidate scores at least this."),
                io.Combo.Input("score_mode", options=list(SCORE_MODES), default="normalized",
                               tooltip="normalized: P(yes)/(P(yes)+P(no)), best for thresholds."),
                io.Boolean.Input("remeasure", default=False,
                                 tooltip="Measure the costs again (after changing GPU load)."),
            ],
            outputs=[
                Hidden.Output("winner", display_name="winner",
                              tooltip="The best candidate (finish it with Decode Winner)."),
                Hidden.Output("candidates", display_name="candidates", tooltip="Every candidate generated."),
                CandidateScores.Output("scores", display_name="scores", tooltip="Their scores."),
                io.String.Output("report", display_name="report", tooltip="N chosen, time spent, ranking."),
                io.Int.Output("n", display_name="n", tooltip="How many candidates were generated."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompt=None, threshold=None) -> bool | str:
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            return f"threshold must be a number from 0 to 1, got {threshold!r}"  # NaN fails both comparisons
        if prompt is not None:
            try:
                check_text(prompt)
            except InputError as e:
                return str(e)
        return True

    @classmethod
    def execute(cls, model, verifier, prompt: str, seed: int, budget_ms: int, layer: int, width: int, height: int,
                max_candidates: int, threshold: float, score_mode: str, remeasure: bool) -> io.NodeOutput:
        handle = expect_model(model, "Best-of-N in a Time Budget")
        vhandle = expect_verifier(verifier, "Best-of-N in a Time Budget")
        problem = check_numbers(width=width, height=height)
        if problem:
            raise InputError(problem)
        layer, _ = resolve_layer(int(layer), vhandle, handle)
        width, height, size_note = resolve_size(handle, int(width), int(height))
        sana, v = handle.model, vhandle.verifier
        # the largest batch the budget may run (the plan is only known after measuring)
        need = sana.activation_bytes(max_candidates, height, width) + sana.decode_bytes(1, height, width)
        host.load(handle.parts("text_encoder", "transformer", "vae") + vhandle.parts(), need)
        key = (sana.key, vhandle.name, id(v), height, width, layer, str(sana.device))
        cost = COSTS.get(key, lambda: measure_costs(sana, v, prompt, layer, height, width), remeasure=bool(remeasure))
        logger.info("Best-of-N costs here: %s", cost)
        run = best_of_n_within_budget(sana, v, prompt, seed, float(budget_ms), cost, layer, height, width,
                                      threshold=threshold or None, max_n=max_candidates, mode=score_mode,
                                      callback=lambda d, t: host.check_interrupt())
        if handle.offload_text_encoder:
            host.unload(handle.parts("text_encoder"), "text_encoder")
        if COSTS.observe(key, run.generated, run.elapsed_ms):
            logger.info("this run disagreed with the measured costs by more than 2x: the next run measures again")
        winner, indices, values = select_top_k(run.hidden, run.scores, k=1)
        winner = dataclasses.replace(winner, selection=dataclasses.replace(winner.selection,
                                                                           budget_ms=float(budget_ms)))
        planned = (f"planned N={run.planned_n}" if run.fits else
                   f"not even one candidate fits {budget_ms} ms here (one costs about {cost.total_ms(1):.0f} ms with "
                   f"the winner's finish): ran Best-of-1")
        spent = run.predicted_total_ms(cost)
        over = (f"; the budget is exceeded by about {spent - budget_ms:.0f} ms" if spent > budget_ms else "")
        report = (f"budget {budget_ms} ms: {planned}, generated {run.generated}"
                  + (" (stopped at the threshold)" if run.stopped_early else "")
                  + f" at {width}x{height} px, l*={layer}; prompt + candidates + scoring took {run.elapsed_ms:.0f} ms, "
                  f"the winner's finish is predicted at {cost.winner_ms:.0f} ms{over}"
                  + (f"\n{size_note}" if size_note else "")
                  + f"\nwinner #{indices[0]} (seed {winner.seeds[0]}) score {values[0]:+.4f}\n"
                  + score_report(run.scores))
        logger.info("%s", report.splitlines()[0])
        return io.NodeOutput(winner, run.hidden, run.scores, report, run.generated)

