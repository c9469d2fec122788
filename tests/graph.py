"""Helpers to check and run ComfyUI graphs against the pack's V3 node classes, as ComfyUI's executor does (validate
the literal inputs, then execute), without a server."""

from __future__ import annotations

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, "workflows")
# Core ComfyUI nodes our workflows use: inputs in order (name, type, is_widget), outputs.
CORE_NODES = {
    "SaveImage": {"inputs": [("images", "IMAGE", False), ("filename_prefix", "STRING", True)], "outputs": []},
    "PreviewAny": {"inputs": [("source", "*", False)], "outputs": []},
    "PreviewImage": {"inputs": [("images", "IMAGE", False)], "outputs": []},
    "Note": {"inputs": [("text", "STRING", True)], "outputs": []},
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def workflow_files() -> list[str]:
    return sorted(os.path.join(WORKFLOWS, f) for f in os.listdir(WORKFLOWS) if f.endswith(".json"))


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class ValidationFailed(ValueError):
    """A node's validate_inputs refused its inputs (ComfyUI answers such a prompt with a validation error)."""


def node_inputs(cls) -> list[tuple[str, object, dict]]:
    """(name, type - or the list of choices for a combo -, options) of a node as /object_info shows it, required then
    optional, in declaration order."""
    spec = cls.INPUT_TYPES(include_hidden=False)
    out = []
    for section in ("required", "optional"):
        for name, value in spec.get(section, {}).items():
            opts = value[1] if len(value) > 1 else {}
            kind = opts.get("options", []) if value[0] == "COMBO" else value[0]
            out.append((name, kind, opts))
    return out


def is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_names_with_controls(cls) -> list[tuple[str, object, dict]]:
    """Widget inputs as the frontend stores them: a seed with control_after_generate adds a control value."""
    out = []
    for name, kind, opts in node_inputs(cls):
        if is_widget(kind):
            out.append((name, kind, opts))
            if opts.get("control_after_generate"):
                out.append((f"{name}:control", ["fixed", "increment", "decrement", "randomize"], {}))
    return out


def check_value(name: str, kind, opts: dict, value, combo_ok=None) -> list[str]:
    """Why `value` does not fit the widget, or [] if it does."""
    if isinstance(kind, list):
        if value in kind or (combo_ok and combo_ok(name, value)):
            return []
        return [f"{name}: {value!r} is not one of the choices"]
    if kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{name}: {value!r} is not an INT"]
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return [f"{name}: {value!r} is not a FLOAT"]
    elif kind == "STRING":
        return [] if isinstance(value, str) else [f"{name}: {value!r} is not a STRING"]
    elif kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{name}: {value!r} is not a BOOLEAN"]
    errs = []
    if "min" in opts and value < opts["min"]:
        errs.append(f"{name}: {value} < min {opts['min']}")
    if "max" in opts and value > opts["max"]:
        errs.append(f"{name}: {value} > max {opts['max']}")
    return errs


def ui_to_api(workflow: dict, mappings: dict) -> dict:
    """Convert a canvas workflow to an API prompt with the node definitions (skips frontend-only Note nodes)."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] == "Note":
            continue
        cls = mappings.get(node["type"])
        inputs = {}
        if cls is not None:
            widgets = [w for w in widget_names_with_controls(cls)]
            for (name, _, _), value in zip(widgets, node.get("widgets_values", [])):
                if not name.endswith(":control"):
                    inputs[name] = value
        else:
            core = [i for i in CORE_NODES[node["type"]]["inputs"] if i[2]]
            for (name, _, _), value in zip(core, node.get("widgets_values", [])):
                inputs[name] = value
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                link = links[inp["link"]]
                inputs[inp["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def topological(prompt: dict) -> list[str]:
    order, seen = [], set()

    def visit(nid: str) -> None:
        if nid in seen:
            return
        seen.add(nid)
        for value in prompt[nid]["inputs"].values():
            if isinstance(value, list):
                visit(value[0])
        order.append(nid)

    for nid in sorted(prompt, key=int):
        visit(nid)
    return order


def run_node(cls, inputs: dict, linked: set[str] = frozenset(), hidden: dict | None = None):
    """ComfyUI's order for one node: validate_inputs gets the literal inputs it names (linked ones arrive as None),
    then execute runs on a class clone carrying the hidden inputs. Returns the NodeOutput."""
    import inspect

    from comfy_api.internal import first_real_override

    validate = first_real_override(cls, "validate_inputs")
    if validate is not None:
        names = inspect.signature(validate).parameters
        verdict = validate(**{k: (None if k in linked else v) for k, v in inputs.items() if k in names})
        if verdict is not True:
            raise ValidationFailed(f"{cls.GET_SCHEMA().node_id}: {verdict}")
    return cls.PREPARE_CLASS_CLONE(hidden or {}).execute(**inputs)


def execute(prompt: dict, mappings: dict, hidden: dict | None = None) -> dict[str, tuple]:
    """Run an API prompt through the node classes in topological order; core sink nodes are recorded, not run."""
    results: dict[str, tuple] = {}
    for nid in topological(prompt):
        node = prompt[nid]
        kwargs = {k: (results[v[0]][v[1]] if isinstance(v, list) else v) for k, v in node["inputs"].items()}
        cls = mappings.get(node["class_type"])
        if cls is None:  # a core sink (SaveImage, PreviewAny): keep what it received
            results[nid] = (kwargs,)
            continue
        linked = {k for k, v in node["inputs"].items() if isinstance(v, list)}
        out = run_node(cls, kwargs, linked, hidden)
        results[nid] = tuple(out.result or ())
    return results
