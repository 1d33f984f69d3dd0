"""Write docs/assets/highlight/: highlight.js and its GitHub styles for the manual, so the MkDocs site highlights
code without a network. The built-in theme would load them from a CDN (mkdocs.yml turns that off and lists these
files instead).

The version is the one the theme would fetch; the npm tarball is checked against the registry's sha512 integrity
pinned here before anything is written. Its BSD-3-Clause licence is copied beside the files.

    python scripts/vendor_highlight.py      # needs the npm registry (https://registry.npmjs.org), not npm itself
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "assets" / "highlight"
PACKAGE = "@highlightjs/cdn-assets"
VERSION = "11.8.0"  # mkdocs' built-in theme: hljs_version
INTEGRITY = "sha512-gkfCH4xGBGY9xPaW+t26WpgnfpDhNhB5RtVUDLx3MHkC7ZrmKeIxXsfjzOiuOnEgRk+vydlY6XeOeglh+eVhyg=="
FILES = {  # in the tarball → in OUT
    "package/highlight.min.js": "highlight.min.js",
    "package/styles/github.min.css": "github.min.css",
    "package/LICENSE": "LICENSE",
}


def main() -> None:
    url = f"https://registry.npmjs.org/{PACKAGE}/-/cdn-assets-{VERSION}.tgz"
    data = urllib.request.urlopen(url, timeout=120).read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        sys.exit(f"error: {url}: integrity {digest}, expected {INTEGRITY}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member, name in FILES.items():
            body = tar.extractfile(member).read()  # type: ignore[union-attr]
            tmp = OUT / f".{name}.tmp"
            tmp.write_bytes(body)
            tmp.replace(OUT / name)
    print(f"{OUT.relative_to(ROOT)}: {PACKAGE} {VERSION} ({', '.join(FILES.values())})")


if __name__ == "__main__":
    main()
