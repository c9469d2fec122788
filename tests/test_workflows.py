"""Every shipped workflow matches the node definitions and runs end to end: the ShapeWorld demos as shipped, the
paper's setups with their loaders switched to the embedded models here (where a reader sees it), budgets as shipped."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from build_workflows import TITLES
from graph import (CORE_NODES, WORKFLOWS, check_value, execute, is_widget, load, node_inputs, ui_to_api,
                   widget_names_with_controls, workflow_files)

FILES = workflow_files()
REAL_NAMES = {"Sana_Sprint_1.6B_1024px_diffusers", "vhs-hidden-verifier", "vhs-mllm-clip-verifier"}
EMBEDDED = {"Sana_Sprint_1.6B_1024px_diffusers": "embedded: ShapeWorld demo (64 px)",
            "vhs-hidden-verifier": "embedded: ShapeWorld demo (64 px)",
            "vhs-mllm-clip-verifier": "embedded: ShapeWorld CLIP verifier (64 px)"}


def is_demo(path: str) -> bool:
    return "ShapeWorld" in os.path.basename(path)


def test_the_paper_setups_and_the_demos_are_all_there_in_order():
    """The template browser titles a pack's workflows with their file names (and lists them by name when sorted
    alphabetically): readable names, the demos first, then the budgets ascending, every file with its card image."""
    stems = sorted(os.path.splitext(os.path.basename(f))[0] for f in FILES)
    assert stems == sorted(title for title, _ in TITLES.values()) and len(stems) == 14
    assert [s[:2] for s in stems] == [f"{i:02d}" for i in range(1, 15)]
    assert all(is_demo(s) for s in stems[:4]) and not any(is_demo(s) for s in stems[4:])
    budgets = [int(s.split(" ms")[0].split()[-1]) for s in stems[4:13]]
    assert budgets == sorted(budgets) == [550] * 3 + [1100] * 3 + [1650] * 3
    assert all(os.path.isfile(f[:-5] + ".jpg") for f in FILES)
    assert sorted(os.listdir(os.path.join(WORKFLOWS, "api"))) == sorted(f"{slug}.json" for _, slug in TITLES.values())
    assert {os.path.splitext(f)[1] for f in os.listdir(WORKFLOWS) if not os.path.isdir(
        os.path.join(WORKFLOWS, f))} == {".json", ".jpg"}, "nothing but workflows and their card images is served"


def test_paper_workflows_name_the_real_models_and_demos_the_embedded_ones():
    for path in FILES:
        names = {v for n in ui_to_api_names(load(path)) for v in n}
        if is_demo(path):
            assert names and all(v.startswith("embedded: ") for v in names), path
        else:
            assert names and names <= REAL_NAMES, path


def ui_to_api_names(workflow: dict) -> list[list[str]]:
    """The model names the loaders of a canvas workflow ask for."""
    return [[node["widgets_values"][0]] for node in workflow["nodes"] if "Loader" in node["type"]]


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_canvas_workflow_matches_node_definitions(pack, path):
    mappings = pack.nodes
    wf = load(path)
    assert {"nodes", "links", "last_node_id", "last_link_id", "version"} <= set(wf)
    nodes = {n["id"]: n for n in wf["nodes"]}
    errors = []
    for node in wf["nodes"]:
        t = node["type"]
        if t in mappings:
            widgets = widget_names_with_controls(mappings[t])
            linked = [(name, kind) for name, kind, _ in node_inputs(mappings[t]) if not is_widget(kind)]
            required = set(mappings[t].INPUT_TYPES()["required"])
            outputs = list(mappings[t].RETURN_TYPES)
        elif t in CORE_NODES:
            widgets = [(name, kind, {}) for name, kind, w in CORE_NODES[t]["inputs"] if w]
            linked = [(name, kind) for name, kind, w in CORE_NODES[t]["inputs"] if not w]
            required = {name for name, _ in linked}
            outputs = CORE_NODES[t]["outputs"]
        else:
            errors.append(f"node {node['id']}: unknown type {t}")
            continue
        values = node.get("widgets_values", [])
        if len(values) != len(widgets):
            errors.append(f"{t}: {len(values)} widget values for {len(widgets)} widgets")
        for (name, kind, opts), value in zip(widgets, values):
            errors += [f"{t}.{e}" for e in check_value(name, kind, opts, value, lambda n, v: v in REAL_NAMES)]
        assert [i["name"] for i in node.get("inputs", [])] == [n for n, _ in linked], t
        for inp, (name, kind) in zip(node.get("inputs", []), linked):
            assert inp["type"] == kind or kind == "*", f"{t}.{name}: {inp['type']} != {kind}"
            if name in required or name == "verifier":  # the sampler's verifier socket is always connected
                assert inp["link"] is not None, f"{t}.{name} is not connected"
        assert [o["type"] for o in node.get("outputs", [])] == outputs, t
    for link_id, src, src_slot, dst, dst_slot, typ in wf["links"]:  # every link joins matching types
        out_type = nodes[src]["outputs"][src_slot]["type"]
        inp = nodes[dst]["inputs"][dst_slot]
        assert inp["link"] == link_id and link_id in nodes[src]["outputs"][src_slot]["links"]
        if inp["type"] != "*" and out_type not in inp["type"].split(","):
            errors.append(f"link {link_id}: {out_type} -> {inp['type']}")
        assert typ == out_type
    assert not errors, errors
    note = [n for n in wf["nodes"] if n["type"] == "Note"]
    assert len(note) == 1
    if is_demo(path):
        assert "ShapeWorld demo" in note[0]["widgets_values"][0] and "no download" in note[0]["widgets_values"][0]
        return
    assert "GenEval" in note[0]["widgets_values"][0] and "README" in note[0]["widgets_values"][0]
    if "Cascade" in path:
        assert "Cascade" in note[0]["widgets_values"][0]
    else:
        assert "ms budget" in note[0]["widgets_values"][0]
    samplers = [n for n in wf["nodes"] if n["type"] == "SanaSprintHiddenSamplerVHS"]
    if samplers:
        assert f"Best-of-{samplers[0]['widgets_values'][3]}" in note[0]["widgets_values"][0]
    else:
        budget = [n for n in wf["nodes"] if n["type"] == "VHSBestOfNTimeBudget"][0]["widgets_values"][3]
        assert f"{budget} ms" in note[0]["widgets_values"][0]


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_api_twin_equals_the_canvas_workflow(pack, path):
    slug = dict(TITLES.values())[os.path.splitext(os.path.basename(path))[0]]
    api = load(os.path.join(WORKFLOWS, "api", f"{slug}.json"))
    converted = ui_to_api(load(path), pack.nodes)
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()} == converted


def with_embedded_models(prompt: dict) -> dict:
    """The same graph with every loader switched to the embedded ShapeWorld choice (no real weights in CI);
    sizes, N and budgets stay as shipped: the embedded model draws 64 px and its nodes say so."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        for key in ("model_name", "verifier_name"):
            if key in node["inputs"]:
                node["inputs"][key] = EMBEDDED.get(node["inputs"][key], node["inputs"][key])
    return prompt


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_workflow_runs_end_to_end(pack, path):
    prompt = with_embedded_models(ui_to_api(load(path), pack.nodes))
    results = execute(prompt, pack.nodes)
    decoded = [r[0] for nid, r in results.items() if prompt[nid]["class_type"] == "VHSDecodeWinner"]
    assert decoded
    for image in decoded:
        assert image.shape == (1, 64, 64, 3) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0
    reports = [r[0]["source"] for nid, r in results.items() if prompt[nid]["class_type"] == "PreviewAny"]
    sampler = [n for n in prompt.values() if n["class_type"] == "SanaSprintHiddenSamplerVHS"]
    if sampler:
        assert all(r.startswith(f"Best-of-{sampler[0]['inputs']['candidates']} ") for r in reports)
        assert all("at 64x64 px" in r for r in reports), "the report says the size that actually ran"
    else:
        budget = [n for n in prompt.values() if n["class_type"] == "VHSBestOfNTimeBudget"][0]["inputs"]["budget_ms"]
        assert reports[0].startswith(f"budget {budget} ms: ") and "at 64x64 px" in reports[0]


PREVIOUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v0.1.0")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(PREVIOUS) if f.endswith(".json")))
def test_workflows_saved_by_the_previous_version_still_load(pack, name):
    """Node ids, input names, widget order and types are unchanged: a canvas file saved by 0.1.0 converts, with
    today's node definitions, to exactly the API prompt 0.1.0 shipped beside it (new optional sockets unconnected),
    and every literal passes today's checks."""
    workflow = load(os.path.join(PREVIOUS, name))
    assert all(n["type"] in pack.nodes or n["type"] in CORE_NODES for n in workflow["nodes"])
    converted = ui_to_api(workflow, pack.nodes)
    shipped = load(os.path.join(PREVIOUS, "api", name))
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in shipped.items()} == converted
    for node in workflow["nodes"]:
        if node["type"] in pack.nodes:
            widgets = widget_names_with_controls(pack.nodes[node["type"]])
            assert len(widgets) == len(node["widgets_values"]), node["type"]
            for (wname, kind, opts), value in zip(widgets, node["widgets_values"]):
                assert not check_value(wname, kind, opts, value, lambda n, v: v in REAL_NAMES), (node["type"], wname)
