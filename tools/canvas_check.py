"""Open every workflow in ComfyUI's real frontend (headless Chromium) and fail on missing nodes or red errors.

    python tools/canvas_check.py --comfyui ~/.cache/comfyui-vhs/ComfyUI-0.3.75 --out docs/screenshots

Not part of CI. Needs `apt-get install chromium` and `pip install playwright` (no browser download: it
drives /usr/bin/chromium). Tiny models are installed under the real model names so the graphs validate.
For each workflow it: loads it with app.loadGraphData, checks every node type is registered in the page,
converts it with the frontend's own app.graphToPrompt, asks the server to validate it (POST /prompt; the
queued run is then cancelled), and saves a screenshot (docs/screenshots/) and a thumbnail (workflows/<name>.jpg,
the card image of ComfyUI's template browser).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from apps.fixtures import build_tiny_bundle  # noqa: E402
from tools.comfyui_server import ComfyServer, post_json  # noqa: E402

logger = logging.getLogger("vhs.canvas")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingModelsWarning": False}


def _dismiss_banners(page) -> None:
    """Close the frontend's announcement banner with its close (icon-only) button, as a user would."""
    page.evaluate("""() => {
        const text = [...document.querySelectorAll('body *')].find(e => e.children.length === 0 &&
            (e.textContent || '').includes('Introducing Nodes 2.0'));
        let box = text;
        while (box && box.querySelectorAll('button').length < 2) box = box.parentElement;
        if (!box) return;
        const close = [...box.querySelectorAll('button')].find(b => !(b.innerText || '').trim());
        if (close) close.click();
    }""")
    page.wait_for_timeout(300)


def _save_small(page, path: str, thumbnail: str | None = None) -> None:
    """A screenshot reduced to a small palette PNG for the README, and optionally a JPEG thumbnail of the graph
    alone (the template browser shows <workflow>.jpg next to <workflow>.json as its card image)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(page.screenshot())) as im:
        im = im.convert("RGB")
        if thumbnail:
            card = im.crop((60, 95, 1260, 770))  # the graph: no side bar, tab strip, run button or minimap
            card.thumbnail((512, 288))
            card.save(thumbnail, quality=82, optimize=True)
        im.thumbnail((1200, 700))
        im.quantize(colors=128).save(path, optimize=True)


def check(comfyui: str, out: str, workflows: list[str], width: int = 1600, height: int = 860,
          thumbnails: bool = True) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_tiny_bundle(os.path.join(tmp, "tiny"))
        models = {"sana": {"Sana_Sprint_1.6B_1024px_diffusers": bundle["sana"]},
                  "vhs": {"vhs-hidden-verifier": bundle["hidden"], "vhs-mllm-clip-verifier": bundle["clip"]}}
        with ComfyServer(comfyui, os.path.join(tmp, "base"), models, settings=SETTINGS) as server, \
                sync_playwright() as pw:
            if server.import_failures():
                return server.import_failures()
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(server.url)
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
            page.keyboard.press("Escape")
            _dismiss_banners(page)
            prompts = {}
            for path in workflows:  # first load and photograph every graph, then validate them all
                name = os.path.splitext(os.path.basename(path))[0]
                with open(path, encoding="utf-8") as f:
                    workflow = json.load(f)
                page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
                page.wait_for_timeout(800)
                page.keyboard.press("Escape")
                missing = page.evaluate(
                    "() => window.app.graph._nodes.filter(n => !(n.type in LiteGraph.registered_node_types) "
                    "|| n.has_errors).map(n => n.type)")
                if missing:
                    problems.append(f"{name}: missing or broken node types {missing}")
                prompts[name] = page.evaluate("async () => (await window.app.graphToPrompt()).output")
                page.evaluate("() => { const ds = window.app.canvas.ds; ds.scale = 0.6; ds.offset = [110, 150];"
                              " window.app.graph.setDirtyCanvas(true, true); }")
                page.wait_for_timeout(400)
                _save_small(page, os.path.join(out, f"{name}.png"),
                            os.path.splitext(path)[0] + ".jpg" if thumbnails else None)
            for name, prompt in prompts.items():
                status, body = server.queue(prompt)
                post_json(f"{server.url}/interrupt", {})
                post_json(f"{server.url}/queue", {"clear": True})
                if status != 200 or body.get("node_errors"):
                    problems.append(f"{name}: validation failed: {json.dumps(body)[:800]}")
                logger.info("%s: %s", name, "ok" if not any(p.startswith(name) for p in problems) else "FAILED")
            browser.close()
            problems += [f"page error: {e}" for e in page_errors if "VHS" in e or "vhs" in e]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", default=os.environ.get("VHS_COMFYUI"), required=not os.environ.get("VHS_COMFYUI"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "screenshots"))
    parser.add_argument("--no-thumbnails", action="store_true",
                        help="do not (re)write workflows/<name>.jpg, the template browser's card images")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wf_dir = os.path.join(ROOT, "workflows")
    workflows = sorted(os.path.join(wf_dir, f) for f in os.listdir(wf_dir) if f.endswith(".json"))
    problems = check(args.comfyui, args.out, workflows, thumbnails=not args.no_thumbnails)
    for p in problems:
        logger.error(p)
    logger.info("%d workflows, %d problems; screenshots in %s", len(workflows), len(problems), args.out)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
