"""What the tests build, by subject: ``params`` (from the committed conf/), ``networks`` (small U-Nets, a sampling
setup), ``datasets`` (synthetic sources and shards), ``repos`` (git repositories holding this checkout, for pipeline
runs), ``released`` (checkpoints in the authors' layouts), ``sharding`` (evaluation split over processes),
``ranks`` (two CPU processes through `accelerate launch`). The exact model of Gaussian data is the library's
(``ddpm.core.gaussian``)."""

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
