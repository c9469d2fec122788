"""Write the paper's budget workflows in ComfyUI's canvas (UI) format and their API-format twins.

    python workflows/build_workflows.py        # rewrites workflows/*.json and workflows/api/*.json

The canvas files are what users drag onto ComfyUI (and what the template browser lists); the API files are
what scripts POST to /prompt. Both come from the specs below, so they cannot drift apart.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))

SANA_NAME = "Sana_Sprint_1.6B_1024px_diffusers"
SANA_LOADER = dict(model_name=SANA_NAME, dtype="auto", device="auto", weight_storage="default",
                   text_encoder="keep loaded")
VHS_NAME = "vhs-hidden-verifier"
CLIP_NAME = "vhs-mllm-clip-verifier"
PROMPT = "a photo of a red bench left of a blue umbrella"
SEED = 42
LAYER = 7
PAPER_BEST_OF_1 = 71.6

# (budget ms, N, expected GenEval overall from the paper's Table 1)
VHS_SETUPS = [(550, 4, 78.1), (1100, 9, 80.5), (1650, 15, 80.9)]
CLIP_SETUPS = [(550, 2, 75.4), (1100, 4, 78.8), (1650, 6, 80.4)]


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


def sana_loader() -> Node:
    return Node(1, "SanaSprintLoaderVHS", list(SANA_LOADER.values()), outputs=[("model", "SANA_SPRINT")],
                pos=(0, 120), size=(360, 180), api_inputs=dict(SANA_LOADER))


def verifier_loader_node(node_id: int, node_type: str, name: str, pos: tuple[int, int]) -> Node:
    output = ("verifier", "VHS_VERIFIER" if node_type == "VHSVerifierLoader" else "MLLM_VERIFIER")
    named = dict(verifier_name=name, dtype="auto", device="auto", weight_storage="default")
    return Node(node_id, node_type, list(named.values()), outputs=[output], pos=pos, size=(360, 150),
                api_inputs=named)


def decode_node(pos: tuple[int, int]) -> Node:
    return Node(6, "VHSDecodeWinner", [], inputs=[("model", "SANA_SPRINT"), ("hidden", "VHS_HIDDEN")],
                outputs=[("image", "IMAGE"), ("latent", "LATENT")], pos=pos)


def save_with_scores_node(prefix: str, pos: tuple[int, int]) -> Node:
    return Node(7, "VHSSaveImageWithScores", [prefix], inputs=[("images", "IMAGE"), ("winners", "VHS_HIDDEN")],
                pos=pos, size=(400, 440), api_inputs=dict(filename_prefix=prefix))


def sampler_widgets(n: int, layer: int) -> tuple[list, dict]:
    named = dict(prompt=PROMPT, seed=SEED, candidates=n, layer=layer, width=1024, height=1024, steps=1,
                 guidance=4.5, max_timestep=1.5708, intermediate_timestep=1.3)
    ui = [PROMPT, SEED, "fixed", n, layer, 1024, 1024, 1, 4.5, 1.5708, 1.3]  # "fixed": the seed's control widget
    return ui, named


def build(kind: str, budget: int, n: int, geneval: float) -> tuple[dict, dict, str]:
    """One budget setup as (canvas workflow, API prompt, file stem)."""
    vhs = kind == "vhs"
    layer = LAYER if vhs else 19  # baselines finish every candidate anyway: stop the prefix at the last block
    sw, sn = sampler_widgets(n, layer)
    if vhs:
        other = next(c for b, c, _ in CLIP_SETUPS if b == budget)
        note = (f"VHS Best-of-{n} at the {budget} ms budget (VHS paper, Table 1)\n\n"
                f"SANA-Sprint 1.6B, 1 step, 1024 px; candidates stop after DiT block l*={LAYER}; the Qwen2.5-0.5B "
                f"verifier scores the hidden states; only the winner is finished and decoded.\n\n"
                f"Expected GenEval overall: {geneval} (Best-of-1 without a verifier: {PAPER_BEST_OF_1}; "
                f"MLLM w/ CLIP Best-of-{other} at the same budget: "
                f"{next(g for b, _, g in CLIP_SETUPS if b == budget)}).\n\n"
                f"Models: models/sana/{SANA_NAME}, models/vhs/{VHS_NAME} (with block_7_mean_bf16.pt and "
                f"block_7_variance_bf16.pt). Without them the loaders use the embedded ShapeWorld demo models (64 px).")
        verifier_loader = verifier_loader_node(3, "VHSVerifierLoader", VHS_NAME, (0, 420))
        verifier = Node(4, "VHSVerifier", ["reference"], inputs=[("verifier", "VHS_VERIFIER"), ("hidden", "VHS_HIDDEN")],
                        outputs=[("scores", "VHS_SCORES"), ("report", "STRING")], pos=(780, 300),
                        api_inputs=dict(score_mode="reference"))
        links_in = {"verifier": [(3, 0)], "hidden": [(2, 0)]}
    else:
        note = (f"MLLM w/ CLIP Best-of-{n} at the {budget} ms budget (baseline of the VHS paper, Table 1)\n\n"
                f"Every candidate runs all 20 DiT blocks, is decoded to pixels, re-encoded by CLIP ViT-L/14@336 and "
                f"scored by the Qwen2.5-0.5B verifier.\n\nExpected GenEval overall: {geneval} (VHS Best-of-"
                f"{next(v for b, v, _ in VHS_SETUPS if b == budget)} at the same budget: "
                f"{next(g for b, _, g in VHS_SETUPS if b == budget)}).\n\n"
                f"Models: models/sana/{SANA_NAME}, models/vhs/{CLIP_NAME} (with its CLIP tower in vision_tower/). "
                f"Without them the loaders use the embedded ShapeWorld demo models (64 px).")
        verifier_loader = verifier_loader_node(3, "MLLMVerifierLoaderVHS", CLIP_NAME, (0, 420))
        verifier = Node(4, "MLLMVerifierCLIPVHS", ["reference"],
                        inputs=[("model", "SANA_SPRINT"), ("verifier", "MLLM_VERIFIER"), ("hidden", "VHS_HIDDEN")],
                        outputs=[("scores", "VHS_SCORES"), ("report", "STRING")], pos=(780, 300),
                        api_inputs=dict(score_mode="reference"))
        links_in = {"model": [(1, 0)], "verifier": [(3, 0)], "hidden": [(2, 0)]}

    nodes = [
        sana_loader(),
        Node(2, "SanaSprintHiddenSamplerVHS", sw, inputs=[("model", "SANA_SPRINT")], outputs=[("hidden", "VHS_HIDDEN")],
             pos=(400, 60), size=(340, 360), api_inputs=sn),
        verifier_loader,
        verifier,
        Node(5, "VHSBestOfNSelect", [1, -1], inputs=[("hidden", "VHS_HIDDEN"), ("scores", "VHS_SCORES"),
                                                     ("model", "SANA_SPRINT")],
             outputs=[("winners", "VHS_HIDDEN"), ("report", "STRING"), ("winner_index", "INT"), ("latent", "LATENT")],
             pos=(1120, 120), api_inputs=dict(k=1, override_index=-1)),
        decode_node((1460, 120)),
        Node(7, "SaveImage", [f"VHS/{kind}_{budget}ms_best_of_{n}"], inputs=[("images", "IMAGE")], pos=(1780, 120),
             size=(400, 440), api_inputs=dict(filename_prefix=f"VHS/{kind}_{budget}ms_best_of_{n}")),
        Node(8, "PreviewAny", [], inputs=[("source", "*")], pos=(1120, 360), size=(320, 200), title="Ranking"),
        Node(9, "Note", [note], pos=(0, 600), size=(740, 260), title=f"{budget} ms budget: Best-of-{n}"),
    ]
    # (from node, from slot) -> (to node, input name)
    edges = [((1, 0), (2, "model"))]
    edges += [(src, (4, name)) for name, srcs in links_in.items() for src in srcs]
    edges += [((2, 0), (5, "hidden")), ((4, 0), (5, "scores")), ((1, 0), (6, "model")), ((5, 0), (6, "hidden")),
              ((6, 0), (7, "images")), ((5, 1), (8, "source"))]
    return _assemble(nodes, edges, f"{kind}_{budget}ms_best_of_{n}", f"comfyui-vhs/{kind}/{budget}")


def _assemble(nodes: list[Node], edges: list, stem: str, uid: str) -> tuple[dict, dict, str]:
    """Canvas workflow and API prompt from nodes and ((from node, slot), (to node, input name)) edges."""
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
        "last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": [],
        "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}}, "version": 0.4,
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


def build_budget(budget: int, n_paper: int, geneval: float) -> tuple[dict, dict, str]:
    """The budget twin of a VHS setup: N is not fixed but measured to fit `budget` ms on the user's machine."""
    note = (f"VHS with a {budget} ms budget, measured on your machine\n\n"
            f"VHS Best-of-N (Time Budget) measures once what a candidate, its verification and the winner's finish "
            f"cost here, picks the largest N that fits {budget} ms, and reports N and the time spent. On the paper's "
            f"H100 this budget fits N={n_paper} (GenEval {geneval}). Threshold > 0 stops early once a candidate "
            f"scores that high. The saved PNG carries vhs_score, vhs_rank, vhs_n, vhs_seed, vhs_layer, vhs_verifier "
            f"and vhs_budget_ms text chunks next to ComfyUI's own.")
    widgets = [PROMPT, SEED, "fixed", budget, LAYER, 1024, 1024, 64, 0.0, "normalized", False]
    named = dict(prompt=PROMPT, seed=SEED, budget_ms=budget, layer=LAYER, width=1024, height=1024, max_candidates=64,
                 threshold=0.0, score_mode="normalized", remeasure=False)
    nodes = [
        sana_loader(),
        verifier_loader_node(3, "VHSVerifierLoader", VHS_NAME, (0, 300)),
        Node(2, "VHSBestOfNTimeBudget", widgets, inputs=[("model", "SANA_SPRINT"), ("verifier", "VHS_VERIFIER")],
             outputs=[("winner", "VHS_HIDDEN"), ("candidates", "VHS_HIDDEN"), ("scores", "VHS_SCORES"),
                      ("report", "STRING"), ("n", "INT")], pos=(400, 60), size=(360, 420), api_inputs=named),
        decode_node((800, 60)),
        save_with_scores_node(f"VHS/vhs_budget_{budget}ms", (1140, 60)),
        Node(8, "PreviewAny", [], inputs=[("source", "*")], pos=(800, 260), size=(320, 240), title="N chosen, time spent"),
        Node(9, "Note", [note], pos=(0, 540), size=(760, 220), title=f"{budget} ms budget, measured here"),
    ]
    edges = [((1, 0), (2, "model")), ((3, 0), (2, "verifier")), ((1, 0), (6, "model")), ((2, 0), (6, "hidden")),
             ((6, 0), (7, "images")), ((2, 0), (7, "winners")), ((2, 3), (8, "source"))]
    return _assemble(nodes, edges, f"vhs_budget_{budget}ms", f"comfyui-vhs/budget/{budget}")


CASCADE = (9, 3)  # VHS scores N=9 (its 1100 ms setup) and keeps 3; the CLIP verifier re-ranks only those 3


def build_cascade(n: int = CASCADE[0], k: int = CASCADE[1]) -> tuple[dict, dict, str]:
    """VHS prunes N candidates to k on hidden states; the pixel-space CLIP verifier re-ranks the k decoded survivors."""
    note = (f"Cascade: VHS Best-of-{n}, then a CLIP re-rank of its top {k} (beyond the paper)\n\n"
            f"All {n} candidates stop at DiT block l*={LAYER} and the VHS verifier scores their hidden states (the "
            f"paper's 1100 ms setup). Best-of-N Select keeps the {k} best; only those run the rest of the DiT and the "
            f"DC-AE decode, for the MLLM w/ CLIP verifier to re-rank in pixel space. A second Best-of-N Select keeps "
            f"the CLIP favourite; Decode Winner finishes it. The saved PNG names both verifiers and N={n}.\n\n"
            f"Cost: the 1100 ms VHS setup plus the CLIP path (finish, decode, CLIP, LLM) for {k} candidates; the "
            f"550 ms CLIP baseline runs that path for {CLIP_SETUPS[0][1]}. The paper has no GenEval figure for it.\n\n"
            f"Models: models/sana/{SANA_NAME}, models/vhs/{VHS_NAME}, models/vhs/{CLIP_NAME}. Without them the "
            f"loaders use the embedded ShapeWorld demo models (64 px).")
    sw, sn = sampler_widgets(n, LAYER)
    select = [("winners", "VHS_HIDDEN"), ("report", "STRING"), ("winner_index", "INT"), ("latent", "LATENT")]
    select_in = [("hidden", "VHS_HIDDEN"), ("scores", "VHS_SCORES"), ("model", "SANA_SPRINT")]
    scores_out = [("scores", "VHS_SCORES"), ("report", "STRING")]
    nodes = [
        sana_loader(),
        Node(2, "SanaSprintHiddenSamplerVHS", sw, inputs=[("model", "SANA_SPRINT")], outputs=[("hidden", "VHS_HIDDEN")],
             pos=(400, 60), size=(340, 360), api_inputs=sn),
        verifier_loader_node(3, "VHSVerifierLoader", VHS_NAME, (0, 340)),
        Node(4, "VHSVerifier", ["reference"], inputs=[("verifier", "VHS_VERIFIER"), ("hidden", "VHS_HIDDEN")],
             outputs=scores_out, pos=(780, 60), api_inputs=dict(score_mode="reference")),
        Node(5, "VHSBestOfNSelect", [k, -1], inputs=select_in, outputs=select, pos=(780, 220),
             title=f"VHS keeps the top {k}", api_inputs=dict(k=k, override_index=-1)),
        verifier_loader_node(10, "MLLMVerifierLoaderVHS", CLIP_NAME, (400, 480)),
        Node(11, "MLLMVerifierCLIPVHS", ["reference"],
             inputs=[("model", "SANA_SPRINT"), ("verifier", "MLLM_VERIFIER"), ("hidden", "VHS_HIDDEN")],
             outputs=scores_out, pos=(780, 480), title=f"CLIP re-ranks the {k}",
             api_inputs=dict(score_mode="reference")),
        Node(12, "VHSBestOfNSelect", [1, -1], inputs=select_in, outputs=select, pos=(1120, 60),
             title="CLIP's choice", api_inputs=dict(k=1, override_index=-1)),
        decode_node((1120, 480)),
        save_with_scores_node(f"VHS/vhs_cascade_best_of_{n}_clip_top_{k}", (1460, 60)),
        Node(8, "PreviewAny", [], inputs=[("source", "*")], pos=(1120, 240), size=(320, 200), title="Ranking"),
        Node(9, "Note", [note], pos=(0, 700), size=(760, 280), title=f"Cascade: VHS Best-of-{n}, CLIP re-rank of {k}"),
    ]
    edges = [((1, 0), (2, "model")), ((3, 0), (4, "verifier")), ((2, 0), (4, "hidden")),
             ((2, 0), (5, "hidden")), ((4, 0), (5, "scores")),
             ((1, 0), (11, "model")), ((10, 0), (11, "verifier")), ((5, 0), (11, "hidden")),
             ((5, 0), (12, "hidden")), ((11, 0), (12, "scores")),
             ((1, 0), (6, "model")), ((12, 0), (6, "hidden")), ((6, 0), (7, "images")), ((12, 0), (7, "winners")),
             ((12, 1), (8, "source"))]
    return _assemble(nodes, edges, f"vhs_cascade_best_of_{n}_clip_top_{k}", "comfyui-vhs/cascade")


def main() -> list[str]:
    written = []
    os.makedirs(os.path.join(HERE, "api"), exist_ok=True)
    builds = [build(kind, budget, n, geneval) for kind, setups in (("vhs", VHS_SETUPS), ("mllm_clip", CLIP_SETUPS))
              for budget, n, geneval in setups]
    builds += [build_budget(budget, n, geneval) for budget, n, geneval in VHS_SETUPS]
    builds.append(build_cascade())
    for workflow, api, stem in builds:
        for path, data in ((os.path.join(HERE, f"{stem}.json"), workflow),
                               (os.path.join(HERE, "api", f"{stem}.json"), api)):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for p in main():
        print(p)
