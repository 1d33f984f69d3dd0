"""torch-fidelity's own Inception weights, which the Inception Score needs (the FID extractor has no classifier
head): found in the torch hub cache, or fetched once into it from torch-fidelity's release with its SHA-256
checked (torch-fidelity unpickles the file: a file with any other hash is refused, never loaded).

``evaluate.isc_weights``: ``auto`` (the cache, fetched when missing), a path (that file, never fetched) or null
(the cache only). Offline, IS is reported unavailable with the one command that fetches the file:
``ddpm isc-weights``.
"""

from __future__ import annotations

from pathlib import Path

from ddpm.data.download import fetch
from ddpm.processes import ddpm_command

FILE = "weights-inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FILE}"  # torch-fidelity's own
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"  # 95,628,359 bytes
AUTO = "auto"
UNAVAILABLE = (
    "unavailable: torch-fidelity's Inception weights are not here and were not fetched; fetch them "
    "with `ddpm isc-weights` (or set evaluate.isc_weights to a copy)"
)  # what the report says then


class Unavailable(Exception):
    """The weights are not here and could not be fetched; the message says why in one line."""


def cache_path() -> Path:
    """Where torch hub (and torch-fidelity) keep the file: ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / FILE


def isc_weights_path(setting: str | None, url: str = URL, sha256: str = SHA256) -> Path:
    """The weights file ``evaluate.isc_weights`` names, checked; ``Unavailable`` when it cannot be had. A file with
    another hash (a path given, or what a download brought) is a ValueError naming it."""
    if setting not in (None, AUTO):
        return _checked(Path(setting).expanduser(), sha256)
    path = cache_path()
    if path.is_file():
        return _checked(path, sha256)
    if setting is None:
        raise Unavailable(
            f"{path} is not here and evaluate.isc_weights is null (never fetched); fetch it with "
            f"`{ddpm_command('isc-weights')}`"
        )
    try:
        return fetch(
            url,
            path,
            sha256,
            algorithm="sha256",
            key="evaluate.isc_weights",
            hint=f"offline, fetch it elsewhere with `{ddpm_command('isc-weights')}` and copy it to {path}",
        )
    except FileNotFoundError as err:
        raise Unavailable(str(err).removeprefix("evaluate.isc_weights: ")) from None


def _checked(path: Path, sha256: str) -> Path:
    from ddpm.storage.files import file_digest

    if not path.is_file():
        raise ValueError(f"evaluate.isc_weights: {path} not found")
    digest = file_digest(path)
    if digest != sha256:
        raise ValueError(
            f"evaluate.isc_weights: {path} is not torch-fidelity's {FILE} (sha256 {digest[:16]}…, "
            f"expected {sha256[:16]}…); refusing to unpickle it"
        )
    return path
