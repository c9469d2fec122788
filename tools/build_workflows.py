"""Write the shipped workflows in ComfyUI's canvas (UI) format and their API-format twins.

    python tools/build_workflows.py        # rewrites workflows/*.json and workflows/api/*.json

The canvas files are what users drag onto ComfyUI (and what the template browser lists); the API files are what
scripts POST to /prompt. Both come from the specs below, so they cannot drift apart. Two families:
- the paper's setups (real SANA-Sprint 1.6B and the released verifiers; install them first), and
- ShapeWorld demos on the embedded models, which run on any machine without downloads.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "workflows")

SANA_NAME = "Sana_Sprint_1.6B_1024px_diffusers"
VHS_NAME = "vhs-hidden-verifier"
CLIP_NAME = "vhs-mllm-clip-verifier"
EMBEDDED_SANA = EMBEDDED_VHS = "embedded: ShapeWorld demo (64 px)"
EMBEDDED_CLIP = "embedded: ShapeWorld CLIP verifier (64 px)"
EMBEDDED_AE = "embedded: ShapeWorld AE-latent verifier (64 px)"
PROMPT = "a photo of a red bench left of a blue umbrella"
DEMO_PROMPT = "a photo of a triangle and a circle"
SEED = 42
LAYER = 7
PAPER_BEST_OF_1 = 71.6
VERIFIER_TYPES = "HIDDEN_STATE_VERIFIER,MLLM_VERIFIER"  # the sampler's optional verifier input accepts both kinds

# ComfyUI's template browser shows a custom-node template's file name as its title and description and lists them as
# the server globs them; the names are the titles, and their numbers give the order under "alphabetical" sorting.
TITLES = {  # key -> (template title = canvas file name, API twin's file name for scripts)
    "demo_best_of": ("01 Demo - VHS Best-of-8 (ShapeWorld, no download)", "shapeworld_demo_vhs_best_of_8"),
    "demo_baselines": ("02 Demo - VHS vs. MLLM baselines (ShapeWorld, no download)",
                       "shapeworld_demo_vhs_vs_baselines"),
    "demo_budget": ("03 Demo - VHS in a 550 ms budget (ShapeWorld, no download)", "shapeworld_demo_budget_550ms"),
    "demo_cascade": ("04 Demo - cascade, VHS keeps 3 of 9, CLIP picks 1 (ShapeWorld)",
                     "shapeworld_demo_cascade_best_of_9_clip_top_3"),
    ("vhs", 550): ("05 VHS Best-of-4 at 550 ms (SANA-Sprint 1.6B)", "vhs_550ms_best_of_4"),
    ("mllm_clip", 550): ("06 MLLM with CLIP Best-of-2 at 550 ms (baseline)", "mllm_clip_550ms_best_of_2"),
    ("budget", 550): ("07 VHS in 550 ms, N measured on your GPU", "vhs_budget_550ms"),
    ("vhs", 1100): ("08 VHS Best-of-9 at 1100 ms (SANA-Sprint 1.6B)", "vhs_1100ms_best_of_9"),
    ("mllm_clip", 1100): ("09 MLLM with CLIP Best-of-4 at 1100 ms (baseline)", "mllm_clip_1100ms_best_of_4"),
    ("budget", 1100): ("10 VHS in 1100 ms, N measured on your GPU", "vhs_budget_1100ms"),
    ("vhs", 1650): ("11 VHS Best-of-15 at 1650 ms (SANA-Sprint 1.6B)", "vhs_1650ms_best_of_15"),
    ("mllm_clip", 1650): ("12 MLLM with CLIP Best-of-6 at 1650 ms (baseline)", "mllm_clip_1650ms_best_of_6"),
    ("budget", 1650): ("13 VHS in 1650 ms, N measured on your GPU", "vhs_budget_1650ms"),
    "cascade": ("14 Cascade - VHS keeps 3 of 9, CLIP picks 1 (SANA-Sprint 1.6B)", "vhs_cascade_best_of_9_clip_top_3"),
}

# (budget ms, N, GenEval overall from the paper's Table 1)
VHS_SETUPS = [(550, 4, 78.1), (1100, 9, 80.5), (1650, 15, 80.9)]
CLIP_SETUPS = [(550, 2, 75.4), (1100, 4, 78.8), (1650, 6, 80.4)]
SCORES_OUT = [("scores", "BEST_OF_N_SCORES"), ("report", "STRING")]
SELECT_IN = [("hidden", "SANA_HIDDEN_STATES"), ("scores", "BEST_OF_N_SCORES"), ("model", "SANA_SPRINT")]
SELECT_OUT = [("winners", "SANA_HIDDEN_STATES"), ("report", "STRING"), ("winner_index", "INT"), ("latent", "LATENT")]


@dataclass
class Node:
    id: int
    type: str
    widgets: list
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type) of linked inputs, in order
    outputs: list[tuple[str, str]] = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)
    size: tuple[int, int] = (320, 130)
    title: str | None = None
    api_inputs: dict = field(default_factory=dict)  # widget name -> value, for the API twin


def sana_loader(node_id: int, name: str, pos: tuple[int, int]) -> Node:
    named = dict(model_name=name, dtype="auto", device="auto", weight_storage="default", text_encoder="keep loaded")
    return Node(node_id, "SanaSprintLoaderVHS", list(named.values()), outputs=[("model", "SANA_SPRINT")], pos=pos,
                size=(360, 180), api_inputs=named)


def verifier_loader(node_id: int, node_type: str, name: str, pos: tuple[int, int]) -> Node:
    output = ("verifier", "HIDDEN_STATE_VERIFIER" if node_type == "VHSVerifierLoader" else "MLLM_VERIFIER")
    named = dict(verifier_name=name, dtype="auto", device="auto", weight_storage="default")
    return Node(node_id, node_type, list(named.values()), outputs=[output], pos=pos, size=(360, 150),
                api_inputs=named)


def sampler(node_id: int, n: int, size: int, prompt: str, pos: tuple[int, int]) -> Node:
    """The sampler with layer -1: it stops at the block the connected verifier reads."""
    named = dict(prompt=prompt, seed=SEED, candidates=n, layer=-1, width=size, height=size, steps=1, guidance=4.5,
                 max_timestep=1.5708, intermediate_timestep=1.3)
    ui = [prompt, SEED, "fixed", n, -1, size, size, 1, 4.5, 1.5708, 1.3]  # "fixed": the seed's control widget
    return Node(node_id, "SanaSprintHiddenSamplerVHS", ui, inputs=[("model", "SANA_SPRINT"),
                                                                   ("verifier", VERIFIER_TYPES), ("noise", "NOISE")],
                outputs=[("hidden", "SANA_HIDDEN_STATES"), ("info", "STRING")], pos=pos, size=(340, 380), api_inputs=named)


def vhs_verifier(node_id: int, pos: tuple[int, int], title: str | None = None) -> Node:
    return Node(node_id, "VHSVerifier", ["reference"], inputs=[("verifier", "HIDDEN_STATE_VERIFIER"), ("hidden", "SANA_HIDDEN_STATES")],
                outputs=SCORES_OUT, pos=pos, title=title, api_inputs=dict(score_mode="reference"))


def mllm_verifier(node_id: int, kind: str, pos: tuple[int, int], title: str | None = None) -> Node:
    return Node(node_id, "MLLMVerifierCLIPVHS" if kind == "clip" else "MLLMVerifierAEVHS", ["reference"],
                inputs=[("model", "SANA_SPRINT"), ("verifier", "MLLM_VERIFIER"), ("hidden", "SANA_HIDDEN_STATES")],
                outputs=SCORES_OUT, pos=pos, title=title, api_inputs=dict(score_mode="reference"))


def select(node_id: int, k: int, pos: tuple[int, int], title: str | None = None) -> Node:
    return Node(node_id, "VHSBestOfNSelect", [k, -1], inputs=SELECT_IN, outputs=SELECT_OUT, pos=pos, title=title,
                api_inputs=dict(k=k, override_index=-1))


def decode(node_id: int, pos: tuple[int, int], title: str | None = None) -> Node:
    return Node(node_id, "VHSDecodeWinner", [], inputs=[("model", "SANA_SPRINT"), ("hidden", "SANA_HIDDEN_STATES")],
                outputs=[("image", "IMAGE"), ("latent", "LATENT")], pos=pos, title=title)


def save_with_scores(node_id: int, prefix: str, pos: tuple[int, int]) -> Node:
    return Node(node_id, "VHSSaveImageWithScores", [prefix], inputs=[("images", "IMAGE"), ("winners", "SANA_HIDDEN_STATES")],
                pos=pos, size=(400, 440), api_inputs=dict(filename_prefix=prefix))


def save_image(node_id: int, prefix: str, pos: tuple[int, int]) -> Node:
    return Node(node_id, "SaveImage", [prefix], inputs=[("images", "IMAGE")], pos=pos, size=(400, 440),
                api_inputs=dict(filename_prefix=prefix))


def preview_text(node_id: int, pos: tuple[int, int], title: str) -> Node:
    return Node(node_id, "PreviewAny", [], inputs=[("source", "*")], pos=pos, size=(320, 200), title=title)


def note(node_id: int, text: str, title: str, pos: tuple[int, int], size: tuple[int, int] = (740, 260)) -> Node:
    return Node(node_id, "Note", [text], pos=pos, size=size, title=title)


# ------------------------------------------------------------------ the paper's setups
def build_paper(kind: str, budget: int, n: int, geneval: float) -> tuple[dict, dict, str]:
    """One budget setup of the paper's Table 1 as (canvas workflow, API prompt, file stem)."""
    vhs = kind == "vhs"
    if vhs:
        clip_n, clip_g = next((c, g) for b, c, g in CLIP_SETUPS if b == budget)
        text = (f"VHS Best-of-{n} at the {budget} ms budget (VHS paper, Table 1)\n\n"
                f"SANA-Sprint 1.6B, 1 step, 1024 px; candidates stop after DiT block l*={LAYER} (the block the "
                f"verifier reads: the sampler takes it from the connected verifier); the Qwen2.5-0.5B verifier scores "
                f"the hidden states; only the winner is finished and decoded.\n\nExpected GenEval overall: {geneval} "
                f"(Best-of-1 without a verifier: {PAPER_BEST_OF_1}; MLLM w/ CLIP Best-of-{clip_n} at the same budget: "
                f"{clip_g}).\n\nNeeds models/sana/{SANA_NAME} and models/vhs/{VHS_NAME} (with block_7_mean_bf16.pt "
                f"and block_7_variance_bf16.pt): see the README. Without them the loaders refuse to run; the "
                f"shapeworld_demo workflows run without any download.")
        loader = verifier_loader(3, "VHSVerifierLoader", VHS_NAME, (0, 420))
        scorer = vhs_verifier(4, (780, 300))
        edges = [((3, 0), (4, "verifier")), ((2, 0), (4, "hidden"))]
    else:
        vhs_n, vhs_g = next((v, g) for b, v, g in VHS_SETUPS if b == budget)
        text = (f"MLLM w/ CLIP Best-of-{n} at the {budget} ms budget (baseline of the VHS paper, Table 1)\n\n"
                f"Every candidate runs all 20 DiT blocks, is decoded to pixels, re-encoded by CLIP ViT-L/14@336 and "
                f"scored by the Qwen2.5-0.5B verifier.\n\nExpected GenEval overall: {geneval} (VHS Best-of-{vhs_n} at "
                f"the same budget: {vhs_g}).\n\nNeeds models/sana/{SANA_NAME} and models/vhs/{CLIP_NAME} (with its CLIP "
                f"tower in vision_tower/): see the README. Without them the loaders refuse to run.")
        loader = verifier_loader(3, "MLLMVerifierLoaderVHS", CLIP_NAME, (0, 420))
        scorer = mllm_verifier(4, "clip", (780, 300))
        edges = [((1, 0), (4, "model")), ((3, 0), (4, "verifier")), ((2, 0), (4, "hidden"))]
    stem = TITLES[(kind, budget)]
    prefix = f"VHS/{stem[1]}"
    nodes = [sana_loader(1, SANA_NAME, (0, 120)), sampler(2, n, 1024, PROMPT, (400, 60)), loader, scorer,
             select(5, 1, (1120, 120)), decode(6, (1460, 120)), save_image(7, prefix, (1780, 120)),
             preview_text(8, (1120, 360), "Ranking"),
             note(9, text, f"{budget} ms budget: Best-of-{n}", (0, 600))]
    edges += [((1, 0), (2, "model")), ((3, 0), (2, "verifier")), ((2, 0), (5, "hidden")), ((4, 0), (5, "scores")),
              ((1, 0), (6, "model")), ((5, 0), (6, "hidden")), ((6, 0), (7, "images")), ((5, 1), (8, "source"))]
    return assemble(nodes, edges, stem, f"comfyui-vhs/{kind}/{budget}")


def build_budget(budget: int, n_paper: int, geneval: float, demo: bool = False) -> tuple[dict, dict, str]:
    """A VHS run whose N is not fixed but measured to fit `budget` ms on the user's machine."""
    if demo:
        text = (f"ShapeWorld demo: VHS with a {budget} ms budget, measured on your machine\n\nRuns on the embedded "
                f"ShapeWorld models (64 px, no download). Best-of-N in a Time Budget measures once what a candidate, "
                f"its verification and the winner's finish cost here, picks the largest N that fits {budget} ms, and "
                f"reports N and the time spent (if not even one candidate fits, it still makes Best-of-1 and says by "
                f"how much the budget was exceeded). The saved PNG carries vhs_score, vhs_rank, vhs_n, vhs_seed, "
                f"vhs_layer and vhs_budget_ms text chunks next to ComfyUI's own.")
        stem, names, size, prompt = TITLES["demo_budget"], (EMBEDDED_SANA, EMBEDDED_VHS), 64, DEMO_PROMPT
    else:
        text = (f"VHS with a {budget} ms budget, measured on your machine\n\nBest-of-N in a Time Budget measures once "
                f"what a candidate, its verification and the winner's finish cost here, picks the largest N that fits "
                f"{budget} ms, and reports N and the time spent. On the paper's H100 this budget fits N={n_paper} "
                f"(GenEval {geneval}). Threshold > 0 stops early once a candidate scores that high. The saved PNG "
                f"carries vhs_score, vhs_rank, vhs_n, vhs_seed, vhs_layer, vhs_verifier and vhs_budget_ms text chunks "
                f"next to ComfyUI's own.\n\nNeeds models/sana/{SANA_NAME} and models/vhs/{VHS_NAME}: see the README.")
        stem, names, size, prompt = TITLES[("budget", budget)], (SANA_NAME, VHS_NAME), 1024, PROMPT
    prefix = f"VHS/{stem[1]}"
    widgets = [prompt, SEED, "fixed", budget, -1, size, size, 64, 0.0, "normalized", False]
    named = dict(prompt=prompt, seed=SEED, budget_ms=budget, layer=-1, width=size, height=size, max_candidates=64,
                 threshold=0.0, score_mode="normalized", remeasure=False)
    nodes = [
        sana_loader(1, names[0], (0, 120)),
        verifier_loader(3, "VHSVerifierLoader", names[1], (0, 300)),
        Node(2, "VHSBestOfNTimeBudget", widgets, inputs=[("model", "SANA_SPRINT"), ("verifier", "HIDDEN_STATE_VERIFIER")],
             outputs=[("winner", "SANA_HIDDEN_STATES"), ("candidates", "SANA_HIDDEN_STATES"), ("scores", "BEST_OF_N_SCORES"),
                      ("report", "STRING"), ("n", "INT")], pos=(400, 60), size=(360, 420), api_inputs=named),
        decode(6, (800, 60)),
        save_with_scores(7, prefix, (1140, 60)),
        preview_text(8, (800, 260), "N chosen, time spent"),
        note(9, text, f"{budget} ms budget, measured here", (0, 540), (760, 220)),
    ]
    edges = [((1, 0), (2, "model")), ((3, 0), (2, "verifier")), ((1, 0), (6, "model")), ((2, 0), (6, "hidden")),
             ((6, 0), (7, "images")), ((2, 0), (7, "winners")), ((2, 3), (8, "source"))]
    return assemble(nodes, edges, stem, f"comfyui-vhs/{stem[1]}")


CASCADE = (9, 3)  # VHS scores N=9 (its 1100 ms setup) and keeps 3; the CLIP verifier re-ranks only those 3


def build_cascade(demo: bool = False, n: int = CASCADE[0], k: int = CASCADE[1]) -> tuple[dict, dict, str]:
    """VHS prunes N candidates to k on hidden states; the pixel-space CLIP verifier re-ranks the k decoded survivors."""
    names = (EMBEDDED_SANA, EMBEDDED_VHS, EMBEDDED_CLIP) if demo else (SANA_NAME, VHS_NAME, CLIP_NAME)
    size, prompt = (64, DEMO_PROMPT) if demo else (1024, PROMPT)
    needs = ("Runs on the embedded ShapeWorld models (64 px, no download)." if demo else
             f"Needs models/sana/{SANA_NAME}, models/vhs/{VHS_NAME} and models/vhs/{CLIP_NAME}: see the README.")
    text = (f"{'ShapeWorld demo: ' if demo else ''}Cascade: VHS Best-of-{n}, then a CLIP re-rank of its top {k} "
            f"(beyond the paper)\n\nAll {n} candidates stop at the block the VHS verifier reads and it scores their "
            f"hidden states. Best-of-N Select keeps the {k} best; only those run the rest of the DiT and the DC-AE "
            f"decode, for the MLLM w/ CLIP verifier to re-rank in pixel space. A second Best-of-N Select keeps the CLIP "
            f"favourite; Decode Winner finishes it. The saved PNG names both verifiers and N={n}.\n\n"
            f"Cost: VHS Best-of-{n} plus the CLIP path (finish, decode, CLIP, LLM) for {k} candidates. The paper has "
            f"no GenEval figure for it.\n\n{needs}")
    stem = TITLES["demo_cascade" if demo else "cascade"]
    prefix = f"VHS/{stem[1]}"
    nodes = [
        sana_loader(1, names[0], (0, 120)),
        sampler(2, n, size, prompt, (400, 60)),
        verifier_loader(3, "VHSVerifierLoader", names[1], (0, 340)),
        vhs_verifier(4, (780, 60)),
        select(5, k, (780, 220), f"VHS keeps the top {k}"),
        verifier_loader(10, "MLLMVerifierLoaderVHS", names[2], (400, 480)),
        mllm_verifier(11, "clip", (780, 480), f"CLIP re-ranks the {k}"),
        select(12, 1, (1120, 60), "CLIP's choice"),
        decode(6, (1120, 480)),
        save_with_scores(7, prefix, (1460, 60)),
        preview_text(8, (1120, 240), "Ranking"),
        note(9, text, f"Cascade: VHS Best-of-{n}, CLIP re-rank of {k}", (0, 700), (760, 280)),
    ]
    edges = [((1, 0), (2, "model")), ((3, 0), (2, "verifier")), ((3, 0), (4, "verifier")), ((2, 0), (4, "hidden")),
             ((2, 0), (5, "hidden")), ((4, 0), (5, "scores")),
             ((1, 0), (11, "model")), ((10, 0), (11, "verifier")), ((5, 0), (11, "hidden")),
             ((5, 0), (12, "hidden")), ((11, 0), (12, "scores")),
             ((1, 0), (6, "model")), ((12, 0), (6, "hidden")), ((6, 0), (7, "images")), ((12, 0), (7, "winners")),
             ((12, 1), (8, "source"))]
    return assemble(nodes, edges, stem, f"comfyui-vhs/{stem[1]}")


# ------------------------------------------------------------------ ShapeWorld demos (embedded models)
def build_demo_best_of(n: int = 8) -> tuple[dict, dict, str]:
    """VHS Best-of-N on the embedded models, with a free preview of every candidate and the scores in the PNG."""
    text = (f"ShapeWorld demo: VHS Best-of-{n}, no download\n\nThe embedded ShapeWorld models (a trained miniature "
            f"SANA-Sprint drawing 64 px coloured shapes, and its hidden-state verifier) run on any machine. The sampler "
            f"stops the {n} candidates at the block the verifier reads; the verifier scores all of them in one pass; "
            f"only the winner is finished and decoded. Best-of-N Candidate Preview shows every candidate for free (principal "
            f"components of the hidden states: no decode). The saved PNG carries the score, rank, N, seed and l*.\n\n"
            f"For the real thing, switch the loaders to SANA-Sprint 1.6B and vhs-hidden-verifier (see the README), "
            f"set 1024 px, or open the vhs_*ms workflows.")
    stem = TITLES["demo_best_of"]
    nodes = [
        sana_loader(1, EMBEDDED_SANA, (0, 120)),
        sampler(2, n, 64, DEMO_PROMPT, (400, 60)),
        verifier_loader(3, "VHSVerifierLoader", EMBEDDED_VHS, (0, 340)),
        vhs_verifier(4, (780, 60)),
        select(5, 1, (780, 220)),
        decode(6, (1120, 60)),
        save_with_scores(7, f"VHS/{stem[1]}", (1460, 60)),
        preview_text(8, (1120, 260), "Ranking"),
        Node(10, "VHSCandidatePreview", ["hidden map", 192],
             inputs=[("hidden", "SANA_HIDDEN_STATES"), ("scores", "BEST_OF_N_SCORES"), ("model", "SANA_SPRINT")],
             outputs=[("previews", "IMAGE")], pos=(780, 480), api_inputs=dict(mode="hidden map", size=192)),
        Node(11, "PreviewImage", [], inputs=[("images", "IMAGE")], pos=(1120, 480), size=(400, 300),
             title="Every candidate (hidden maps)"),
        note(9, text, f"ShapeWorld demo: VHS Best-of-{n}", (0, 600), (740, 240)),
    ]
    edges = [((1, 0), (2, "model")), ((3, 0), (2, "verifier")), ((3, 0), (4, "verifier")), ((2, 0), (4, "hidden")),
             ((2, 0), (5, "hidden")), ((4, 0), (5, "scores")), ((1, 0), (6, "model")), ((5, 0), (6, "hidden")),
             ((6, 0), (7, "images")), ((5, 0), (7, "winners")), ((5, 1), (8, "source")),
             ((2, 0), (10, "hidden")), ((4, 0), (10, "scores")), ((10, 0), (11, "images"))]
    return assemble(nodes, edges, stem, f"comfyui-vhs/{stem[1]}")


def build_demo_baselines(n: int = 8) -> tuple[dict, dict, str]:
    """The same N candidates judged three ways: VHS on hidden states, MLLM w/ CLIP on pixels, MLLM w/ AE on latents."""
    text = (f"ShapeWorld demo: VHS and its baselines on the same {n} candidates, no download\n\nOne sampler, three "
            f"verifiers: VHS scores the hidden states (no decode), MLLM w/ CLIP finishes and decodes every candidate "
            f"and looks at the pixels through a CLIP tower, MLLM w/ AE finishes every candidate and reads its final "
            f"latent. Each picks its own winner; compare the three images and rankings. The baselines cost more per "
            f"candidate, which is why, at the same time budget, VHS can afford more candidates.")
    stem = TITLES["demo_baselines"]
    nodes = [
        sana_loader(1, EMBEDDED_SANA, (0, 120)),
        sampler(2, n, 64, DEMO_PROMPT, (400, 60)),
        verifier_loader(3, "VHSVerifierLoader", EMBEDDED_VHS, (0, 340)),
        verifier_loader(20, "MLLMVerifierLoaderVHS", EMBEDDED_CLIP, (0, 520)),
        verifier_loader(30, "MLLMVerifierLoaderVHS", EMBEDDED_AE, (0, 700)),
        vhs_verifier(4, (780, 40), "VHS (hidden states)"),
        mllm_verifier(21, "clip", (780, 360), "MLLM w/ CLIP (pixels)"),
        mllm_verifier(31, "latent", (780, 680), "MLLM w/ AE (latents)"),
    ]
    edges = [((1, 0), (2, "model")), ((3, 0), (2, "verifier")), ((3, 0), (4, "verifier")), ((2, 0), (4, "hidden")),
             ((1, 0), (21, "model")), ((20, 0), (21, "verifier")), ((2, 0), (21, "hidden")),
             ((1, 0), (31, "model")), ((30, 0), (31, "verifier")), ((2, 0), (31, "hidden"))]
    for scorer, row, label in ((4, 40, "VHS"), (21, 360, "CLIP"), (31, 680, "AE")):
        sel, dec, img, txt = scorer + 1, scorer + 2, scorer + 3, scorer + 4
        nodes += [select(sel, 1, (1120, row), f"{label}: best of {n}"), decode(dec, (1460, row)),
                  Node(img, "PreviewImage", [], inputs=[("images", "IMAGE")], pos=(1800, row), size=(260, 300),
                       title=f"{label}'s winner"),
                  preview_text(txt, (2100, row), f"{label} ranking")]
        edges += [((2, 0), (sel, "hidden")), ((scorer, 0), (sel, "scores")), ((1, 0), (dec, "model")),
                  ((sel, 0), (dec, "hidden")), ((dec, 0), (img, "images")), ((sel, 1), (txt, "source"))]
    nodes.append(note(9, text, "ShapeWorld demo: VHS vs. the baselines", (0, 900), (760, 200)))
    return assemble(nodes, edges, stem, f"comfyui-vhs/{stem[1]}")


def assemble(nodes: list[Node], edges: list, stem: tuple[str, str], uid: str) -> tuple[dict, dict, tuple[str, str]]:
    """Canvas workflow and API prompt from nodes and ((from node, slot), (to node, input name)) edges; `stem` is the
    (canvas file name, API file name) pair."""
    by_id = {n.id: n for n in nodes}
    links, node_links_in, node_links_out = [], {}, {}
    for link_id, ((src, slot), (dst, name)) in enumerate(edges, start=1):
        dst_slot = [i for i, (nm, _) in enumerate(by_id[dst].inputs) if nm == name][0]
        typ = by_id[src].outputs[slot][1]
        links.append([link_id, src, slot, dst, dst_slot, typ])
        node_links_in[(dst, name)] = link_id
        node_links_out.setdefault((src, slot), []).append(link_id)

    ui_nodes = []
    for order, node in enumerate(nodes):
        entry = {
            "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
            "order": order, "mode": 0,
            "inputs": [{"name": nm, "type": t, "link": node_links_in.get((node.id, nm))} for nm, t in node.inputs],
            "outputs": [{"name": nm, "type": t, "links": node_links_out.get((node.id, i), []), "slot_index": i}
                        for i, (nm, t) in enumerate(node.outputs)],
            "properties": {"Node name for S&R": node.type},
            "widgets_values": node.widgets,
        }
        if node.title:
            entry["title"] = node.title
        ui_nodes.append(entry)
    workflow = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, uid)), "revision": 0,
        "last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
        "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}}, "version": 0.4,
    }
    api = {}
    for node in nodes:
        if node.type == "Note":  # frontend-only node: never queued
            continue
        inputs = dict(node.api_inputs)
        for nm, _ in node.inputs:
            if (node.id, nm) in node_links_in:  # optional sockets may stay unconnected
                link = links[node_links_in[(node.id, nm)] - 1]
                inputs[nm] = [str(link[1]), link[2]]
        api[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title or node.type}}
    return workflow, api, stem


def all_workflows() -> list[tuple[dict, dict, str]]:
    builds = [build_paper(kind, budget, n, geneval) for kind, setups in (("vhs", VHS_SETUPS), ("mllm_clip", CLIP_SETUPS))
              for budget, n, geneval in setups]
    builds += [build_budget(budget, n, geneval) for budget, n, geneval in VHS_SETUPS]
    builds += [build_cascade(), build_demo_best_of(), build_demo_baselines(), build_budget(550, 4, 78.1, demo=True),
               build_cascade(demo=True)]
    return builds


def main() -> list[str]:
    written = []
    os.makedirs(os.path.join(HERE, "api"), exist_ok=True)
    builds = all_workflows()
    keep = {os.path.join(HERE, f"{title}.{ext}") for _, _, (title, _) in builds for ext in ("json", "jpg")}
    keep |= {os.path.join(HERE, "api", f"{slug}.json") for _, _, (_, slug) in builds}
    for folder in (HERE, os.path.join(HERE, "api")):  # renamed workflows: the old files (and card images) go
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name.endswith((".json", ".jpg")) and path not in keep:
                os.remove(path)
    for workflow, api, (title, slug) in builds:
        for path, data in ((os.path.join(HERE, f"{title}.json"), workflow),
                           (os.path.join(HERE, "api", f"{slug}.json"), api)):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for p in main():
        print(p)
