"""Screenshots of the MLflow UI for the manual (docs/screenshots/, shown in docs/mlflow.md), taken in headless Chromium.

Needs Debian's chromium (`apt-get install chromium`) and Playwright in a separate environment (it is no project
dependency): `python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright`. Then, after `scripts/quickstart.sh`:

    .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db --port 5056 &
    /tmp/pw/bin/python scripts/mlflow_screenshots.py http://127.0.0.1:5056 /tmp/shots <DVC experiment> loss

It saves the runs page as it opens, the headline view (`ddpm mlflow`'s address), the runs page filtered to the
experiment's stage runs, the train run's charts (filtered by the last argument) and its sample grid's card (run
parameters hidden, at the last step), the registered model's versions
table, and the sample and figures runs' artifacts, 1700×900 each; the manual's
copies are downscaled to 1100 px and quantized to 96 colours.
"""

import json
import sys
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

base, out, experiment = sys.argv[1], sys.argv[2], sys.argv[3]


def api(path, body):
    req = urllib.request.Request(
        f"{base}/ajax-api/2.0/mlflow/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(req))


exp_id = json.load(
    urllib.request.urlopen(f"{base}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=ddpm-digits")
)["experiment"]["experiment_id"]
runs = api(
    "runs/search",
    {
        "experiment_ids": [exp_id],
        "max_results": 500,
        "filter": f"tags.dvc_stage = 'train' and tags.dvc_experiment = '{experiment}'",
    },
)["runs"]
train_id = runs[0]["info"]["run_id"]


def run_id(stage):
    found = api(
        "runs/search",
        {
            "experiment_ids": [exp_id],
            "max_results": 5,
            "filter": f"tags.dvc_stage = '{stage}' and tags.dvc_experiment = '{experiment}'",
        },
    )
    return found["runs"][0]["info"]["run_id"]


with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
    page = b.new_page(viewport={"width": 1700, "height": 900})
    page.goto(f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning")  # as MLflow opens it
    page.wait_for_timeout(5000)
    for label in ("Close", "Close assistant"):  # first-visit popups
        close = page.locator(f"button[aria-label='{label}']")
        if close.count():
            close.first.click()
    page.wait_for_timeout(500)
    page.screenshot(path=f"{out}/mlflow_runs_default.png")  # run names carry the setting and the FID
    page.goto(f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey=headline&workflowType=machine_learning")
    page.wait_for_timeout(5000)
    page.screenshot(path=f"{out}/mlflow_runs_headline.png")  # the page `ddpm mlflow` prints
    stages = urllib.parse.quote(f"tags.dvc_experiment = '{experiment}' and tags.`ddpm.role` = 'stage'")
    page.goto(f"{base}/#/experiments/{exp_id}/runs?searchFilter={stages}&workflowType=machine_learning")
    page.wait_for_timeout(5000)
    page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # expand the pipeline run
    page.wait_for_timeout(1500)
    page.screenshot(path=f"{out}/mlflow_runs.png")
    page.goto(f"{base}/#/experiments/{exp_id}/runs/{train_id}/model-metrics?workflowType=machine_learning")
    page.wait_for_timeout(6000)
    page.locator("input[placeholder='Search metric charts']").fill(sys.argv[4] if len(sys.argv) > 4 else "loss")
    page.mouse.move(5, 890)
    page.wait_for_timeout(3000)
    page.screenshot(path=f"{out}/mlflow_train_run.png")
    # the sample grid's card as a user sets it: ⋮ → Configure → "Show run parameters" off, slider at the last step
    page.locator("input[placeholder='Search metric charts']").fill("ema_samples")
    page.wait_for_timeout(2000)
    page.locator("button[data-testid='experiment-view-compare-runs-card-menu']").first.click()
    page.get_by_role("menuitem", name="Configure").click()
    page.wait_for_timeout(1500)
    page.locator("[data-component-id='mlflow.charts.image_grid_configure.show_run_params']").first.click()
    page.get_by_role("button", name="Save").click()
    page.wait_for_timeout(1500)
    thumb = page.locator("[role='slider']").last.bounding_box()
    page.mouse.move(thumb["x"] + thumb["width"] / 2, thumb["y"] + thumb["height"] / 2)
    page.mouse.down()
    page.mouse.move(thumb["x"] + 600, thumb["y"] + thumb["height"] / 2, steps=10)  # to the last step
    page.mouse.up()
    page.wait_for_timeout(2000)
    page.screenshot(path=f"{out}/mlflow_train_samples.png")
    page.goto(f"{base}/#/models/ddpm-digits?workflowType=machine_learning")  # the versions table, with scores
    page.wait_for_timeout(4000)
    page.screenshot(path=f"{out}/mlflow_versions.png")
    for stage, artifact in (("sample", "samples.png"), ("figures", "progressive.png")):
        page.goto(f"{base}/#/experiments/{exp_id}/runs/{run_id(stage)}/artifacts?workflowType=machine_learning")
        page.wait_for_timeout(4000)
        if stage == "figures":
            folder = page.get_by_text("figures", exact=True)
            if folder.count():
                folder.first.click()
                page.wait_for_timeout(1000)
        page.get_by_text(artifact, exact=True).first.click()
        page.wait_for_timeout(3000)
        page.screenshot(path=f"{out}/mlflow_{stage}_artifacts.png")
    b.close()
