"""`ddpm upload-shards`: copy the shards prepare wrote to a folder URL (an S3 bucket, …) for data.shards_url;
every shard is checked against the manifest first and manifest.json is written last. The store's credentials
come from the environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL for a store
other than AWS).

    ddpm upload-shards data/shards/cifar10 s3://team-data/shards/cifar10
    dvc exp run -S data.shards_url=s3://team-data/shards/cifar10 train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import command_parser


def parser() -> argparse.ArgumentParser:
    """``ddpm upload-shards``' options (also the manual's reference page)."""
    parser = command_parser("ddpm upload-shards", __doc__)
    parser.add_argument("folder", type=Path, help="a prepared shard folder, data/shards/<dataset>")
    parser.add_argument("url", help="the folder URL to copy it to, e.g. s3://bucket/shards/<dataset>")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from ddpm.data.upload import upload_shards

    try:
        shards = upload_shards(args.folder, args.url)
    except (ValueError, OSError) as err:
        print(f"error: ddpm upload-shards: {err}", file=sys.stderr)
        return 1
    size = sum(shard.size for shard in shards)
    print(f"uploaded {len(shards)} shards ({size / 1e6:,.1f} MB) and manifest.json to {args.url}")
    print(f"train from them with: dvc exp run -S data.shards_url={args.url}")
    return 0
