"""Check the pack in ComfyUI's real frontend (headless Chromium), next to other packs users have, and take the
README's screenshots.

    python tools/canvas_check.py --comfyui ~/.cache/comfyui-vhs/ComfyUI-0.3.75 \
        --with-pack /path/to/ComfyUI-VideoHelperSuite --out docs/screenshots

Not part of CI. Needs `apt-get install chromium` and `pip install playwright` (no browser download: it drives
/usr/bin/chromium). Tiny models are installed under the real model names so the paper's graphs validate. It:
- loads every shipped workflow and every workflow saved by the previous release (tests/data/v0.1.0) with
  app.loadGraphData, fails on a missing node type, converts each with the frontend's own app.graphToPrompt and asks
  the server to validate it (POST /prompt; the queued run is then cancelled); screenshots the shipped ones;
- types "verifier", "best-of", "sana" and "VHS verifier" into the node search and fails unless this pack's nodes
  come first (the first three for "VHS verifier"), whatever else is installed;
- opens the template browser on this pack and photographs it.
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
sys.path.insert(0, os.path.join(ROOT, "tools"))

from apps.fixtures import build_tiny_bundle  # noqa: E402
from build_workflows import TITLES  # noqa: E402
from tools.comfyui_server import PACK_DIR_NAME, ComfyServer, post_json  # noqa: E402

logger = logging.getLogger("vhs.canvas")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingModelsWarning": False}
SEARCHES = {"verifier": 1, "best-of": 1, "sana": 1, "VHS verifier": 3}  # query -> our node must be within the top k
PREVIOUS = os.path.join(ROOT, "tests", "data", "v0.1.0")


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


def _save_small(page, path: str) -> None:
    """A screenshot reduced to a small palette PNG for the README."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(page.screenshot())) as im:
        im = im.convert("RGB")
        im.thumbnail((1200, 700))
        im.quantize(colors=128).save(path, optimize=True)


def load_and_validate(page, server, path: str) -> tuple[list[str], dict]:
    """Load a canvas workflow in the page; returns (problems, the frontend's API prompt)."""
    with open(path, encoding="utf-8") as f:
        workflow = json.load(f)
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(800)
    page.keyboard.press("Escape")
    name = os.path.basename(path)
    missing = page.evaluate("() => window.app.graph._nodes.filter(n => !(n.type in LiteGraph.registered_node_types) "
                            "|| n.has_errors).map(n => n.type)")
    problems = [f"{name}: missing or broken node types {missing}"] if missing else []
    return problems, page.evaluate("async () => (await window.app.graphToPrompt()).output")


def run_in_page(page, server, path: str, screenshot: str, timeout_s: float = 180) -> list[str]:
    """Load a workflow, press Run (app.queuePrompt), wait for the queue to empty and photograph the result."""
    import time

    from tools.comfyui_server import get_json

    problems, _ = load_and_validate(page, server, path)
    page.evaluate("() => { const ds = window.app.canvas.ds; ds.scale = 0.6; ds.offset = [110, 150]; }")
    page.evaluate("async () => await window.app.queuePrompt(0, 1)")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        page.wait_for_timeout(1000)
        queue = get_json(f"{server.url}/queue")
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
    history = get_json(f"{server.url}/history?max_items=1")
    entry = next(iter(history.values()), {})
    if entry.get("status", {}).get("status_str") != "success":
        problems.append(f"{os.path.basename(path)}: the run did not succeed: {json.dumps(entry.get('status'))[:600]}")
    page.wait_for_timeout(1500)
    page.evaluate("() => window.app.graph.setDirtyCanvas(true, true)")
    _save_small(page, screenshot)
    return problems


def search(page, query: str, tries: int = 3) -> list[str]:
    """The node search box's results for `query`: '<display name> | <category> | <source badge>', best first."""
    for _ in range(tries):
        page.evaluate("() => window.app.graph.clear()")
        for _ in range(2):
            page.keyboard.press("Escape")
            page.wait_for_timeout(300)
        page.mouse.dblclick(800, 450)
        page.wait_for_timeout(800)
        page.keyboard.type(query)
        page.wait_for_timeout(1500)
        found = page.evaluate("""() => [...document.querySelectorAll('li[role=option]')]
            .map(li => li.innerText.replace(/\\u00a0/g, ' ').replace(/\\s*\\n+\\s*/g, ' | ').trim())
            .filter(t => t)""")
        if found:
            return found
    return []


def check(comfyui: str, out: str, other_packs: list[str], width: int = 1600, height: int = 860) -> list[str]:
    from playwright.sync_api import sync_playwright

    wf_dir = os.path.join(ROOT, "workflows")
    shipped = {slug: os.path.join(wf_dir, f"{title}.json") for title, slug in TITLES.values()}
    previous = sorted(os.path.join(PREVIOUS, f) for f in os.listdir(PREVIOUS) if f.endswith(".json"))
    problems: list[str] = []
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_tiny_bundle(os.path.join(tmp, "tiny"))
        models = {"sana": {"Sana_Sprint_1.6B_1024px_diffusers": bundle["sana"]},
                  "vhs": {"vhs-hidden-verifier": bundle["hidden"], "vhs-mllm-clip-verifier": bundle["clip"]}}
        with ComfyServer(comfyui, os.path.join(tmp, "base"), models, settings=SETTINGS,
                         other_packs=other_packs) as server, sync_playwright() as pw:
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
            for slug, path in [*shipped.items(), *((f"v0.1.0/{os.path.basename(p)}", p) for p in previous)]:
                found, prompts[slug] = load_and_validate(page, server, path)
                problems += found
                if not slug.startswith("v0.1.0/"):
                    page.evaluate("() => { const ds = window.app.canvas.ds; ds.scale = 0.6; ds.offset = [110, 150];"
                                  " window.app.graph.setDirtyCanvas(true, true); }")
                    page.wait_for_timeout(400)
                    _save_small(page, os.path.join(out, f"{slug}.png"))
            for slug, prompt in prompts.items():
                status, body = server.queue(prompt)
                post_json(f"{server.url}/interrupt", {})
                post_json(f"{server.url}/queue", {"clear": True})
                if status != 200 or body.get("node_errors"):
                    problems.append(f"{slug}: validation failed: {json.dumps(body)[:800]}")
                logger.info("%s: %s", slug, "ok" if not any(p.startswith(slug) for p in problems) else "FAILED")
            for query, within in SEARCHES.items():
                results = search(page, query)
                ours = [i for i, r in enumerate(results) if r.endswith(PACK_DIR_NAME)]
                logger.info("search %r: %s", query, results[:5])
                if not ours or ours[0] >= within:
                    problems.append(f"search {query!r}: this pack's first node is not in the top {within}: {results[:5]}")
                if query == "VHS verifier" and other_packs:
                    _save_small(page, os.path.join(out, "node_search_vhs_verifier.png"))
                page.keyboard.press("Escape")
            for slug in ("shapeworld_demo_vhs_best_of_8", "shapeworld_demo_vhs_vs_baselines"):  # run as a user would
                problems += run_in_page(page, server, shipped[slug], os.path.join(out, f"{slug}_after_run.png"))
            page.evaluate("async () => await window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
            page.wait_for_timeout(2500)
            page.get_by_text(PACK_DIR_NAME, exact=True).first.click()
            page.wait_for_timeout(2500)
            _save_small(page, os.path.join(out, "template_browser.png"))
            browser.close()
            problems += [f"page error: {e}" for e in page_errors if "sana" in e.lower() or "vhs" in e.lower()]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", default=os.environ.get("VHS_COMFYUI"), required=not os.environ.get("VHS_COMFYUI"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "screenshots"))
    parser.add_argument("--with-pack", action="append", default=[], metavar="FOLDER",
                        help="another custom-node pack to install beside this one (e.g. ComfyUI-VideoHelperSuite)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problems = check(args.comfyui, args.out, args.with_pack)
    for p in problems:
        logger.error(p)
    logger.info("%d problems; screenshots in %s", len(problems), args.out)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
