"""The process count the check stage reads from the ``launcher`` param, and the refusals it makes with it."""

import pytest
from helpers import ROOT
from helpers.params import make_params

from ddpm.stage.launch import launched_processes


@pytest.mark.parametrize(
    "launcher,count",
    [
        ("python", 1),
        ("accelerate launch --config_file conf/accelerate/multi_gpu.yaml --num_processes 4", 4),
        ("ACCELERATE_USE_CPU=1 accelerate launch --config_file conf/accelerate/cpu_2proc.yaml", 2),
        ("accelerate launch --config_file conf/accelerate/single_gpu.yaml", 1),
        ("accelerate launch --num-processes=3 --mixed_precision bf16", 3),
        ("accelerate launch", None),  # accelerate's own default config decides
        ("bash scripts/slurm/launch-node.sh", None),  # the cluster's variables decide
    ],
)
def test_the_launchers_process_count_where_the_command_says(launcher, count):
    assert launched_processes(launcher, ROOT) == count


def test_a_batch_that_does_not_split_and_a_file_that_is_no_checkpoint_are_named(tmp_path):
    from ddpm.importers.released import check_importable

    params = make_params({"train": {"batch_size": 64, "grad_accumulation": 2}})
    with pytest.raises(ValueError, match=r"^train\.batch_size: 64 does not split over 3 process\(es\) × 2"):
        params.train.micro_batch(launched_processes("accelerate launch --num_processes 3"))
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"<html>not found</html>")
    params = make_params({"model": {"import_from": {"path": str(bad)}}})
    with pytest.raises(ValueError, match=rf"^model\.import_from\.path: {bad}: refused: not a file of plain tensors"):
        check_importable(params, tmp_path / "no-shards-yet")
