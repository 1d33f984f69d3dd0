"""Host-to-device copies that do not make the host wait: from page-locked memory, queued on the current stream."""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` (on the host) on ``device``. To a GPU the copy goes through page-locked memory without blocking:
    a pageable copy would make the host wait for every kernel queued before it; the kernels that read the result
    queue behind the copy on the same stream."""
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
