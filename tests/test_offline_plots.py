"""`dvc plots show/diff` render without a network: the project's HTML template (conf/plots/offline.html, written by
scripts/vendor_vega.py) inlines the Vega libraries DVC would fetch from a CDN, at the versions DVC asks for."""

import re
from pathlib import Path

from dvc.config import Config
from dvc_render.html import render_html
from dvc_render.vega import VegaRenderer
from helpers import ROOT

TEMPLATE = ROOT / "conf" / "plots" / "offline.html"


def test_dvc_is_configured_with_the_offline_template():
    config = Config(dvc_dir=str(ROOT / ".dvc"), validate=False)
    assert (ROOT / ".dvc" / config["plots"]["html_template"]).resolve() == TEMPLATE


def test_the_template_inlines_the_versions_dvc_asks_the_cdn_for_with_their_licences():
    text = TEMPLATE.read_text(encoding="utf8")
    wanted = dict(re.findall(r"cdn\.jsdelivr\.net/npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS))
    assert set(wanted) == {"vega", "vega-lite", "vega-embed"}
    for name, version in wanted.items():
        assert f"<script>/* {name} {version} */" in text, (name, version)
        assert (ROOT / "conf" / "plots" / "licenses" / f"{name}-LICENSE").read_text().startswith("Copyright (c)")
    assert "{plot_divs}" in text and "{scripts}" not in text  # no placeholder for DVC's CDN tags


def test_a_rendered_page_loads_nothing_from_the_network(tmp_path):
    renderer = VegaRenderer([{"step": 1, "loss": 0.5, "rev": "a"}], "loss.csv", x="step", y="loss")
    out = Path(render_html([renderer], tmp_path / "index.html", html_template=str(TEMPLATE)))
    page = out.read_text(encoding="utf8")
    assert "vegaEmbed" in page and not re.search(r"<script[^>]+src=", page)


def test_the_fid_vs_nfe_plot_tells_experiments_apart_and_spans_only_the_data():
    """Two experiments' cells in one plot (`dvc plots diff a b`): colour per sampler, a point shape per experiment
    with its legend (and a dash per experiment), a log NFE axis that is not widened to powers of ten."""
    import json

    from dvc_render.vega_templates import get_template

    rows = [
        {"sampler": s, "nfe": n, "fid": 10.0 / n, "rev": rev}
        for rev in ("a", "b")
        for s in ("ddim", "unipc_3")
        for n in (10, 20)
    ]
    template = get_template(str(ROOT / "conf" / "plots" / "fid_vs_nfe.json"), ROOT / "conf" / "plots")
    renderer = VegaRenderer(rows, "plots/fid_vs_nfe.csv", template=template, x="nfe", y="fid")
    spec = renderer.get_filled_template()
    spec = json.loads(spec) if isinstance(spec, str) else spec
    enc = spec["encoding"]
    assert enc["color"]["field"] == "sampler" and enc["shape"]["field"] == enc["strokeDash"]["field"] == "rev"
    assert enc["shape"]["title"] == "experiment" and enc["strokeDash"]["legend"] is None  # one key, by shape
    assert enc["x"]["field"] == "nfe" and enc["x"]["scale"] == {"type": "log", "nice": False, "padding": 12}
    assert {r["rev"] for r in spec["data"]["values"]} == {"a", "b"}
