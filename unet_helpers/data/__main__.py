"""The data from a terminal: download it, write the offline stand-in, or check a folder.

    python -m unet_helpers.data download --data data/tgs-salt    # Kaggle's files (credentials: data/README.md)
    python -m unet_helpers.data standin --data data/tgs-salt-standin
    python -m unet_helpers.data check --data data/tgs-salt       # every fault of a folder, in one report

Each prints one clear message and exits with status 2 when something is wrong; none of them
overwrites or deletes a file that is already in the folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .download import download_tgs_salt
from .errors import TGSDataError
from .files import load_tgs_split, read_csv
from .rle import rle_decode
from .source import folder_problems
from .standin import make_synthetic_tgs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_helpers.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, default in (
        ("download", "download and unpack Kaggle's TGS Salt files (needs Kaggle credentials)", "data/tgs-salt"),
        ("standin", "write the offline synthetic stand-in, in Kaggle's layout (about 30 s)", "data/tgs-salt-standin"),
        ("check", "read every file of a folder and report all that is wrong", "data/tgs-salt"),
    ):
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--data", type=Path, default=Path(default), help=f"the folder (default {default})")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"TGS Salt is in {download_tgs_salt(args.data)}")
        elif args.command == "standin":
            root = make_synthetic_tgs(args.data)
            problems = folder_problems(root)  # a folder that held part of one already, edited since, say
            if problems:
                raise TGSDataError(
                    f"the stand-in was written into {root}, but the folder is still not usable:\n  - "
                    + "\n  - ".join(problems)
                    + f"\n  remove {root} and run this command again"
                )
            print(f"the offline stand-in is in {root}")
        else:
            problems = folder_problems(args.data) if args.data.is_dir() else [f"{args.data} does not exist"]
            if problems:
                raise TGSDataError(f"{args.data} is not usable as it is:\n  - " + "\n  - ".join(problems))
            arrays = load_tgs_split(args.data)  # reads every image and mask
            disagree = csv_masks_that_disagree(args.data, arrays)
            if disagree:
                raise TGSDataError(
                    f"{args.data / 'train.csv'}: {len(disagree)} rle_mask(s) are not the mask PNG of their id:\n  - "
                    + "\n  - ".join(disagree[:5])
                    + ("\n  - ..." if len(disagree) > 5 else "")
                )
            print(
                f"{args.data}: {len(arrays):,} training tiles, every image and mask readable and in order, "
                "and train.csv's masks the same as the PNGs"
            )
    except TGSDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # --data names a file, a folder that cannot be written, a full disk
        print(f"error: {err.strerror or err} ({err.filename or args.data}); --data must name a folder", file=sys.stderr)
        return 2
    return 0


def csv_masks_that_disagree(root: Path, arrays) -> list[str]:
    """The ids whose ``train.csv`` run-length string is malformed or decodes to another mask than their PNG."""
    index = {id_: k for k, id_ in enumerate(arrays.ids)}
    found = []
    for row in read_csv(root / "train.csv"):
        try:
            mask = rle_decode(row.get("rle_mask") or "", name=row["id"])
        except TGSDataError as err:
            found.append(str(err))
            continue
        if not np.array_equal(mask, arrays.masks[index[row["id"]]]):
            found.append(f"{row['id']}: its run-length string decodes to {mask.sum()} salt pixels, its PNG has "
                         f"{int(arrays.masks[index[row['id']]].sum())}")  # fmt: skip
    return found


if __name__ == "__main__":
    sys.exit(main())
