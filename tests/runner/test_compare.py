"""The narrowed `dvc exp show` view: headline metrics kept, details, deps and params equal across experiments
dropped, column names as DVC forms them."""

from ddpm.runner.compare import columns, show_arguments


def _rev(params: dict, summary: dict, evaluate: dict) -> dict:
    return {"data": {"params": {"params.yaml": {"data": params}},
                     "metrics": {"metrics/summary.json": {"data": summary},
                                 "metrics/evaluate.json": {"data": evaluate}},
                     "deps": {"src/ddpm/runner": {"hash": "x"}, "models/ema.safetensors": {"hash": "y"}}}}


SHOW = [{**_rev({"schedule": "linear", "profile": "cifar10_ddpm", "train": {"lr": 2e-4}}, {}, {}),
         "experiments": [
             {"revs": [_rev({"schedule": "linear", "profile": "tiny", "train": {"lr": 1e-3}},
                            {"fid_train": 55.0, "img_per_s": 700.0}, {"fid_train": 55.0, "kid_std": 0.1})]},
             {"revs": [_rev({"schedule": "cosine", "profile": "tiny", "train": {"lr": 1e-3}},
                            {"fid_train": 60.0, "img_per_s": 690.0}, {"fid_train": 60.0, "kid_std": 0.2})]}]}]


def test_headline_kept_details_deps_and_equal_params_dropped():
    keep, drop = columns(SHOW)
    # fid_train is in two files, so DVC names both columns by file; img_per_s and kid_std are unique names
    assert keep == ["metrics/summary.json:fid_train", "img_per_s"]
    assert {"metrics/evaluate.json:fid_train", "kid_std", "src/ddpm/runner", "models/ema.safetensors"} <= set(drop)
    # profile and train.lr differ only from the baseline commit's params: the experiments share them
    assert {"profile", "train.lr"} <= set(drop) and "schedule" not in drop
    assert {"State", "Executor", "Created"} <= set(drop)  # the queue's bookkeeping, the time


def test_show_arguments_are_anchored_regexes():
    args = show_arguments(SHOW)
    assert args[0] == "--keep" and args[1] == r"^(metrics/summary\.json:fid_train|img_per_s)$"
    assert args[2] == "--drop" and args[3].startswith("^(") and args[3].endswith(")$")
