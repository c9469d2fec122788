"""Free memory on a device, and a clear error before a batch that cannot fit (never a raw allocator error).

The estimates come from the models themselves (SanaSprint.activation_bytes, VHSVerifier.activation_bytes); free
memory is measured as ComfyUI's model management measures it: on CUDA the driver's free memory plus what torch has
reserved but not allocated, on the CPU the memory the system still has available.
"""

from __future__ import annotations

import torch

from .errors import InputError

GB = 1024**3


def free_bytes(device: torch.device | str) -> int:
    """Bytes a new allocation on `device` can still get (None-safe: 0 for devices we cannot ask)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        stats = torch.cuda.memory_stats(device)
        return int(free + stats.get("reserved_bytes.all.current", 0) - stats.get("active_bytes.all.current", 0))
    if device.type == "mps":
        return int(getattr(torch.mps, "recommended_max_memory", lambda: 0)() - torch.mps.current_allocated_memory())
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(need: int, device: torch.device | str, what: str, per_item: int | None = None) -> None:
    """Raise a clear InputError when `need` bytes (an estimate) exceed the free memory of `device`.

    `per_item` (the estimate for one candidate) lets the message say how many would fit."""
    device = torch.device(device)
    if device.type == "meta":
        return
    free = free_bytes(device)
    if free <= 0 or need <= free:
        return
    fits = ""
    if per_item:
        fits = f"; at most about {free // per_item} fit" if free >= per_item else "; not even one fits"
    raise InputError(f"not enough memory on {device} for {what}: it needs about {need / GB:.1f} GB and "
                     f"{free / GB:.1f} GB are free{fits}. Lower the number of candidates or the image size")
