"""SANA-Sprint Hidden-State Sampler: N candidates of one prompt, run only up to the DiT block the verifier reads."""

from __future__ import annotations

import math

import torch
from comfy_api.latest import io

from ..models import InputError, candidate_seeds
from ..models.errors import check_text
from ..models.sana_sprint import (DEFAULT_GUIDANCE, DEFAULT_INTERMEDIATE_TIMESTEP, DEFAULT_MAX_TIMESTEP, MAX_SIDE,
                                  MAX_STEPS)
from . import host
from .edges import CATEGORY, Hidden, MLLMVerifier, SanaSprintModel, Verifier, expect, expect_model
from .handles import SanaSprintHandle, VerifierHandle

MAX_N = 64  # per node run (the library allows 256; ComfyUI users batch by running again)
MAX_LAYER = 63
# (default, min, max) of the number widgets: the schema and validate_inputs read the same table
NUMBERS = {
    "candidates": (4, 1, MAX_N),
    "layer": (-1, -1, MAX_LAYER),
    "width": (1024, 32, MAX_SIDE),
    "height": (1024, 32, MAX_SIDE),
    "steps": (1, 1, MAX_STEPS),
    "guidance": (DEFAULT_GUIDANCE, 0.0, 20.0),
    "max_timestep": (DEFAULT_MAX_TIMESTEP, 0.1, DEFAULT_MAX_TIMESTEP),
    "intermediate_timestep": (DEFAULT_INTERMEDIATE_TIMESTEP, 0.0, DEFAULT_MAX_TIMESTEP),
}
LAYER_TIP = ("l*, the last DiT block the candidates run. -1 (default): the block the connected verifier reads (7 "
             "for the released verifier; the last block for the baselines, which finish every candidate). Set a "
             "block yourself only without a verifier (previews, experiments).")


def check_numbers(**values) -> str | None:
    """The first widget value that is not a finite number within its range (NaN passes ComfyUI's own min/max check:
    every comparison with NaN is false), as one line; None when all are fine."""
    for name, value in values.items():
        if value is None:  # a linked input: checked when the node runs
            continue
        _, lo, hi = NUMBERS[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"{name} must be a number, got {value!r}"
        if not math.isfinite(number):
            return f"{name} must be a finite number, got {value!r}"
        if not lo <= number <= hi:
            return f"{name} {value} is out of range: it must lie between {lo} and {hi}"
    return None


def resolve_layer(layer: int, verifier: VerifierHandle | None, handle: SanaSprintHandle) -> tuple[int, str]:
    """l* for this run and where it came from: the connected verifier (layer -1), or the widget."""
    model = handle.model
    if verifier is not None:
        block = verifier.block(model)
        if block >= model.num_layers:
            raise InputError(f"the verifier {verifier.name!r} reads DiT block {block}, but {handle.name!r} has blocks "
                             f"0..{model.num_layers - 1}: it was trained for another SANA-Sprint")
        if layer < 0 or layer == block:
            return block, f"from the verifier {verifier.name!r}"
        if verifier.verifier.kind == "hidden":
            raise InputError(f"layer {layer} differs from the block the connected verifier reads ({block}): set "
                             "layer to -1 to follow the verifier")
        return layer, "set on the sampler"
    if layer < 0:
        raise InputError("connect the verifier to the sampler (it knows which DiT block it reads), or set layer to "
                         "a block")
    return layer, "set on the sampler"


def resolve_size(handle: SanaSprintHandle, width: int, height: int) -> tuple[int, int, str]:
    """The size this model actually draws, and a note when it differs from the widgets."""
    native = handle.native_size
    if native is not None and (width, height) != (native, native):
        return native, native, (f"ran at {native}x{native} px: {handle.name!r} draws only that size "
                                f"(the widgets asked {width}x{height})")
    return width, height, ""


class SanaSprintHiddenSampler(io.ComfyNode):
    """Generate N candidates of one prompt up to DiT block l* (the prompt is encoded once)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        def number(kind, name: str, tooltip: str, **extra):
            default, lo, hi = NUMBERS[name]
            return kind.Input(name, default=default, min=lo, max=hi, tooltip=tooltip, **extra)

        return io.Schema(
            node_id="SanaSprintHiddenSamplerVHS",
            display_name="SANA-Sprint Hidden-State Sampler",
            category=CATEGORY,
            description=("Runs SANA-Sprint for N seeds only up to DiT block l* (the block the verifier reads). The "
                         "blocks after l*, the output head and the AE decode run later, for the selected candidate(s) "
                         "only."),
            inputs=[
                SanaSprintModel.Input("model", tooltip="From SANA-Sprint Loader."),
                io.String.Input("prompt", multiline=True, default="a photo of a red apple left of a blue cup",
                                tooltip="The text prompt (at most 298 Gemma tokens)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Candidate i uses seed + i, so any candidate can be re-made alone."),
                number(io.Int, "candidates", "N, the number of candidates for Best-of-N."),
                number(io.Int, "layer", LAYER_TIP),
                number(io.Int, "width", "Image width in pixels (multiple of 32; SANA-Sprint is trained at 1024).",
                       step=32),
                number(io.Int, "height", "Image height in pixels (multiple of 32).", step=32),
                number(io.Int, "steps", "Sampling steps. Earlier steps run the whole DiT; the last one is split."),
                number(io.Float, "guidance", "Embedded guidance scale (SANA-Sprint's default 4.5).", step=0.1),
                number(io.Float, "max_timestep", "TrigFlow start time (pi/2 = pure noise).", step=0.0001),
                number(io.Float, "intermediate_timestep", "Middle time of a 2-step schedule (ignored at other step "
                                                          "counts).", step=0.01),
                io.MultiType.Input("verifier", types=[Verifier, MLLMVerifier], optional=True,
                                   tooltip="The verifier that will score the candidates: with layer -1 the sampler "
                                           "stops at the block it reads."),
                io.Noise.Input("noise", optional=True,
                               tooltip="Optional: ComfyUI's NOISE (RandomNoise, DisableNoise), to share noise with "
                                       "other samplers. Candidate i then gets the i-th of one batch of noise drawn "
                                       "with that node's seed, and this node's seed is not used."),
            ],
            outputs=[
                Hidden.Output("hidden", display_name="hidden",
                              tooltip="N candidates stopped after block l*, with what is needed to finish any of them."),
                io.String.Output("info", display_name="info",
                                 tooltip="What ran: N, size, l* and where l* came from."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompt=None, guidance=None, max_timestep=None, intermediate_timestep=None) -> bool | str:
        """NaN or infinite floats and invalid text fail before anything runs (ComfyUI checks the whole numbers)."""
        problem = check_numbers(guidance=guidance, max_timestep=max_timestep,
                                intermediate_timestep=intermediate_timestep)
        if problem is None and prompt is not None:
            try:
                check_text(prompt)
            except InputError as e:
                problem = str(e)
        return problem or True

    @classmethod
    def execute(cls, model, prompt: str, seed: int, candidates: int, layer: int, width: int, height: int, steps: int,
                guidance: float, max_timestep: float, intermediate_timestep: float, verifier=None,
                noise=None) -> io.NodeOutput:
        handle = expect_model(model, "SANA-Sprint Hidden-State Sampler")
        if verifier is not None:
            expect(verifier, VerifierHandle, "SANA-Sprint Hidden-State Sampler (verifier)")
        problem = check_numbers(candidates=candidates, layer=layer, width=width, height=height, steps=steps,
                                guidance=guidance, max_timestep=max_timestep,
                                intermediate_timestep=intermediate_timestep)
        if problem:
            raise InputError(problem)
        layer, source = resolve_layer(int(layer), verifier, handle)
        width, height, size_note = resolve_size(handle, int(width), int(height))
        model_ = handle.model
        model_.check_request([0] * candidates, layer, height, width, steps, guidance, max_timestep,
                             intermediate_timestep)
        seeds, start, source_of_noise = candidate_seeds(seed, candidates), None, None
        if noise is not None:  # ComfyUI's NOISE: one batch for all candidates, drawn with that node's seed
            if not hasattr(noise, "generate_noise"):
                raise InputError(f"the noise input expects ComfyUI's NOISE, got {type(noise).__name__}")
            start = noise.generate_noise({"samples": torch.zeros(model_.noise_shape(candidates, height, width))})
            noise_seed = int(getattr(noise, "seed", 0) or 0)
            seeds = [noise_seed] * candidates
            source_of_noise = f"noise from the NOISE input ({type(noise).__name__}, seed {noise_seed})"
        emb = handle.encode(prompt)
        host.load(handle.parts("transformer"), model_.activation_bytes(len(seeds), height, width))
        hidden = model_.prefix(emb, seeds, layer=layer, height=height, width=width, steps=steps, guidance=guidance,
                               max_timestep=max_timestep, intermediate_timestep=intermediate_timestep,
                               callback=host.progress((steps - 1) * model_.num_layers + layer + 1), noise=start)
        info = (f"{len(seeds)} candidates ({source_of_noise or f'seeds {seeds[0]}..{seeds[-1]}'}) at {width}x{height} "
                f"px, {steps} step(s), stopped after DiT block {layer} of {model_.num_layers} (l* {source})")
        if size_note:
            info += f"; {size_note}"
        return io.NodeOutput(hidden, info)
