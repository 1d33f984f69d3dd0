"""A corrupt shard names itself in one line and never crashes the process: every reader, both checks, two ranks.

Three corruptions of a shard: one flipped bit in a PNG payload, one in a tar header, and a cut inside a member.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from accelerate import debug_launcher

from ddpm.config import ShardCheck
from ddpm.data.loader import first_batch, iter_batches, train_stream
from ddpm.data.shards import REPAIR, read_manifest

HOW = ["payload", "header", "truncated"]
SHA = r"sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}"


def corrupt(shard: Path, how: str) -> str:
    """Damage the PNG member in the middle of ``shard`` as ``how`` says; returns its key."""
    with tarfile.open(shard) as tar:
        pngs = [m for m in tar.getmembers() if m.name.endswith(".png")]
    member = pngs[len(pngs) // 2]
    data = bytearray(shard.read_bytes())
    if how == "payload":
        data[member.offset_data + 50] ^= 0x10  # inside IDAT: the PNG signature and IHDR take 33 bytes
    elif how == "header":
        data[member.offset + 3] ^= 0x01  # the member's name
    else:
        data = data[: member.offset_data + 50]
    shard.chmod(0o644)
    shard.write_bytes(bytes(data))
    return member.name.split(".")[0]


@pytest.fixture
def damaged(digit_shards, tmp_path):
    """A copy of the digits shards (train: 4 shards of ≤ 400, test: 1 of 300) and a way to damage one."""
    copy = tmp_path / "digits"
    shutil.copytree(digit_shards, copy)

    def damage(name: str, how: str) -> tuple[Path, str]:
        return copy, corrupt(copy / name, how)

    return damage


def agree_manifest(folder: Path) -> None:
    """Record the damaged files' sizes and hashes: as if the damage predated the manifest."""
    manifest = read_manifest(folder)
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            data = (folder / shard["name"]).read_bytes()
            shard["bytes"], shard["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def read(reader: str, folder: Path, check: ShardCheck, seed: int = 0):
    """Drive a reader until it has read the damaged shard (train-000001 for the stream, test-000000 otherwise)."""
    if reader == "train":
        stream = train_stream(folder, 16, seed=seed, shuffle_buffer=10, check=check)
        for _ in range(400):  # the stream draws shards at random: train-000001 comes up long before 6,400 images
            next(stream)
    elif reader == "ordered":
        list(iter_batches(folder, "test", 100, check=check))
    else:
        first_batch(folder, "test", 300, check=check)


def shard_of(reader: str) -> str:
    return "train-000001.tar" if reader == "train" else "test-000000.tar"


@pytest.mark.parametrize("check", list(ShardCheck))
@pytest.mark.parametrize("reader", ["train", "ordered", "first_batch"])
@pytest.mark.parametrize("how", HOW)
def test_a_corrupt_shard_is_named_in_one_line(damaged, how, reader, check):
    folder, key = damaged(shard_of(reader), how)
    with pytest.raises(ValueError) as caught:
        read(reader, folder, check)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(REPAIR)
    where = f"shard {folder / shard_of(reader)}"
    if how == "truncated":  # the size is checked before anything is read, in every mode
        assert message.startswith(f"{where} is corrupt: ") and "bytes, the manifest says" in message
    elif how == "header" and check is ShardCheck.STREAMING and reader == "train":  # parsed as the bytes go by
        assert message.startswith(f"{where} is corrupt: the tar header after member ") and "checksum" in message
    else:  # the ordered readers hash every shard first; the training stream reads a shard whole before decoding
        assert message.startswith(f"{where} is corrupt: sha256 ")
        actual = hashlib.sha256((folder / shard_of(reader)).read_bytes()).hexdigest()
        expected = next(
            s["sha256"]
            for s in read_manifest(folder)["splits"][shard_of(reader).split("-")[0]]["shards"]
            if s["name"] == shard_of(reader)
        )
        assert f"sha256 {actual}, the manifest says {expected}" in message


@pytest.mark.parametrize("check", list(ShardCheck))
@pytest.mark.parametrize("reader", ["train", "ordered"])
@pytest.mark.parametrize("how", HOW)
def test_damage_the_manifest_agrees_with_is_still_named_by_the_parser_or_decoder(damaged, how, reader, check):
    """The second line of defence (bounds, PNG CRCs, and the tar checksums where the bytes were not hashed first)
    on its own, as if the shard was damaged before its hash was recorded: a named one-line error, never a crash."""
    folder, key = damaged(shard_of(reader), how)
    agree_manifest(folder)
    where = f"shard {folder / shard_of(reader)}"
    expected = {
        "payload": rf"{where}, image '{key}': PNG chunk 'IDAT' fails its CRC \(changed bytes\); ",
        # hashed bytes skip the tar checksums: the renamed member leaves its sample without a png
        "header": rf"{where} is corrupt: the tar header after member '\d+\.\w+' fails its checksum; "
        if check is ShardCheck.STREAMING
        else rf"{where}, image '{key}': has members \['cls'\], not png and cls; "
        if reader == "ordered"
        else rf"{where} holds 401 images, the manifest says 400; ",  # the training stream counts a group first
        "truncated": rf"{where} is corrupt: member '{key}.png' is truncated; ",
    }[how]
    with pytest.raises(ValueError, match="^" + expected.replace(".tar", r"\.tar")):
        read(reader, folder, check)


def _rank_reads(folder):
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=True)
    if state.process_index == 1:
        read("train", Path(folder), ShardCheck.BEFORE, seed=1)
    dist.barrier()  # where the healthy rank waits for the failed one


@pytest.mark.parametrize("how", HOW)
def test_two_ranks_the_failing_ranks_error_reaches_the_caller_and_the_other_stops(damaged, how):
    """Rank 1 reads the damaged shard; rank 0 waits at a barrier: the launcher must end both and raise rank 1's
    message, not hang."""
    folder, _ = damaged("train-000001.tar", how)
    with pytest.raises(Exception, match=rf"ValueError: shard {folder}/train-000001\.tar is corrupt: "):
        debug_launcher(_rank_reads, args=(str(folder),), num_processes=2)


FUZZ = """
import io, numpy as np
from PIL import Image
from ddpm.data.png import decode_png
rng = np.random.default_rng(0)
for shape in [(8, 8, 1), (16, 16, 3)]:
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if shape[2] == 1 else pixels).save(buf, format="PNG")
    good, refused = buf.getvalue(), 0
    assert np.array_equal(decode_png(good, shape).permute(1, 2, 0).numpy(), pixels)
    damaged = [good[:n] for n in range(len(good))]
    for bit in range(len(good) * 8):
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        damaged.append(bytes(flipped))
    for data in damaged:
        try:
            decode_png(data, shape)
        except ValueError:
            refused += 1
    print(len(damaged), refused)
"""


def test_no_flipped_bit_or_cut_of_a_png_crashes_the_decoder_or_passes_unnoticed():
    """Every single-bit flip and every truncation of two PNGs (grey and RGB) is refused with ValueError. In a
    child process, so that a crash shows as this test's failure."""
    res = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"the decoder died (exit {res.returncode}): {res.stderr[-2000:]}"
    for line in res.stdout.split("\n")[:2]:
        tried, refused = map(int, line.split())
        assert refused == tried > 1000


def test_a_missing_shard_or_a_damaged_manifest_is_named(damaged):
    folder, _ = damaged("test-000000.tar", "payload")
    (folder / "train-000002.tar").unlink()
    with pytest.raises(ValueError, match=rf"^shard {folder}/train-000002\.tar is missing; "):
        next(train_stream(folder, 16, seed=0))
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace('"bytes"', '"size_was_not_recorded"'))
    with pytest.raises(
        ValueError, match=rf"manifest.json records no size and sha256 for test-000000.tar .*; {re.escape(REPAIR)}$"
    ):
        iter_batches(folder, "test", 100)
    (folder / "manifest.json").write_text(manifest[: len(manifest) // 2])
    with pytest.raises(ValueError, match=rf"^shards: {folder}/manifest.json is not a readable manifest \(.*\); "):
        iter_batches(folder, "test", 100)


def _split_check(folder, out):
    from accelerate import PartialState

    from ddpm.parallel import WorkShare

    state = PartialState(cpu=True)
    try:
        iter_batches(Path(folder), "train", 64, share=WorkShare(state.process_index, state.num_processes))
    except ValueError as err:
        Path(f"{out}.{state.process_index}").write_text(str(err))


def test_two_ranks_each_verify_half_the_shards_and_both_name_the_damaged_one(damaged, tmp_path):
    """Shard 1 is hashed by rank 1 alone (shard i by the owner of chunk i); rank 0 stops with the same line."""
    folder, _ = damaged("train-000001.tar", "payload")
    out = tmp_path / "rank"
    debug_launcher(_split_check, args=(str(folder), str(out)), num_processes=2)
    lines = [Path(f"{out}.{rank}").read_text() for rank in (0, 1)]
    assert lines[0] == lines[1] and re.match(rf"shard {folder}/train-000001\.tar is corrupt: {SHA}", lines[0])
