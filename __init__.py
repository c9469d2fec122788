"""SANA-Sprint Best-of-N (ComfyUI-VHS): tiny inference-time scaling for SANA-Sprint with a verifier on DiT hidden states.

The nodes use ComfyUI's V3 node schema (comfy_api, ComfyUI 0.3.64 and newer).
"""

try:
    import comfy_api.latest  # noqa: F401
except ImportError as e:  # an older ComfyUI: one clear line instead of a traceback deep in the nodes
    raise ImportError("SANA-Sprint Best-of-N needs ComfyUI 0.3.64 or newer (its V3 node API, comfy_api); update ComfyUI") from e

from .nodes import comfy_entrypoint  # noqa: E402

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
