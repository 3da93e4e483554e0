"""Which data the notebooks use: real TGS Salt files when a folder holds them, else a download, else the stand-in.

A folder in Kaggle's layout counts as real data when it is *consistent*, even if it is smaller
than Kaggle's 4,000 + 18,000 tiles: every id of ``train.csv`` has an image and a mask, and every
id has a depth. A folder that is there but inconsistent (half downloaded, a file missing) is never
silently replaced: the message says what is wrong and what to do, then what is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .download import download_tgs_salt, kaggle_credentials_found
from .files import N_TEST, N_TRAIN, TGSDataError, default_data_dir, layout_problems, read_csv, repeated_ids
from .standin import looks_like_standin, make_synthetic_tgs

N_STANDIN_TEST = 1000


def ids_of_pngs(folder: Path) -> set[str]:
    """The ids of the PNGs in ``folder`` (their names without .png), without reading them; empty if it is absent."""
    return {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()


def is_standin_folder(root: Path) -> bool:
    """Whether ``root``'s train.csv lists the offline stand-in's ids (the stand-in under another folder name)."""
    return (root / "train.csv").is_file() and looks_like_standin([row["id"] for row in read_csv(root / "train.csv")])


def _some(ids, n: int = 3) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def folder_problems(root: str | Path) -> list[str]:
    """What makes a Kaggle-layout folder inconsistent ([] when it can be used as it is).

    Checks that ``train.csv`` and ``depths.csv`` exist, that every ``train.csv`` id has an image
    and a mask, that every training or test image has a ``train.csv`` row or a depth as it should,
    and that ``sample_submission.csv`` (when present) names test images that exist. The folder
    may hold fewer tiles than Kaggle's, and no test images at all. Reads only; changes nothing.
    """
    root = Path(root)
    problems = []
    for name in ("train.csv", "depths.csv"):
        if not (root / name).is_file():
            problems.append(f"{root / name} is missing")
    if problems:
        return problems
    try:
        train_ids = [row["id"] for row in read_csv(root / "train.csv")]
        depth_ids = {row["id"] for row in read_csv(root / "depths.csv")}
    except (KeyError, TGSDataError, UnicodeDecodeError) as err:
        return [f"train.csv or depths.csv in {root} cannot be read as Kaggle's CSV files ({err})"]
    if not train_ids:
        return [f"{root / 'train.csv'} lists no tiles"]
    repeated = repeated_ids(train_ids)
    if repeated:
        problems.append(f"{root / 'train.csv'} lists {len(repeated)} id(s) more than once (e.g. {_some(repeated)})")
    images, masks = ids_of_pngs(root / "train/images"), ids_of_pngs(root / "train/masks")
    test_images = ids_of_pngs(root / "test/images")
    for what, have in (("image in train/images", images), ("mask in train/masks", masks)):
        missing = set(train_ids) - have
        if missing:
            problems.append(
                f"{len(missing)} of the {len(train_ids)} ids in train.csv have no {what} (e.g. {_some(missing)})"
            )
    unlisted = images - set(train_ids)
    if unlisted:
        problems.append(f"{len(unlisted)} images in train/images have no row in train.csv (e.g. {_some(unlisted)})")
    no_depth = (set(train_ids) | test_images) - depth_ids
    if no_depth:
        problems.append(
            f"{len(no_depth)} id{'s have' if len(no_depth) > 1 else ' has'} no depth in depths.csv (e.g. {_some(no_depth)})"
        )
    if (root / "sample_submission.csv").is_file():
        sample_ids = {row["id"] for row in read_csv(root / "sample_submission.csv")}
        if test_images and not test_images <= sample_ids:
            extra = test_images - sample_ids
            problems.append(
                f"{len(extra)} images in test/images are not in sample_submission.csv (e.g. {_some(extra)})"
            )
    return problems


@dataclass
class TGSSource:
    """Where the data came from: ``root`` in Kaggle's layout, whether it is the stand-in, and its size."""

    root: Path
    synthetic: bool
    n_train: int = 0
    n_test: int = 0

    @property
    def tag(self) -> str:
        """ "real" or "standin": for the names of run folders, so that a run on one is never resumed on the other."""
        return "standin" if self.synthetic else "real"

    @property
    def banner(self) -> str:
        if self.synthetic:
            return (
                f"Data: OFFLINE STAND-IN in {self.root} (synthetic seismic tiles in Kaggle's layout); results are on "
                "synthetic data. For the real TGS Salt data, add Kaggle credentials and accept the rules, see data/README.md."
            )
        return (
            f"Data: Kaggle TGS Salt Identification Challenge in {self.root}: {self.n_train:,} of Kaggle's "
            f"{N_TRAIN:,} training tiles, {self.n_test:,} of its {N_TEST:,} test tiles"
        )


def _real(root: Path) -> TGSSource:
    """A consistent folder: Kaggle's data, unless its ids are the stand-in's (the stand-in under another name)."""
    train_ids = [row["id"] for row in read_csv(root / "train.csv")]
    return TGSSource(
        root,
        synthetic=looks_like_standin(train_ids),
        n_train=len(train_ids),
        n_test=len(ids_of_pngs(root / "test/images")),
    )


def get_tgs_salt(
    root: str | Path | None = None, standin_root: str | Path | None = None, verbose: bool = True
) -> TGSSource:
    """The data for the notebooks, with a banner saying which (``verbose``):

    1. the real data in ``root`` (default ``data/tgs-salt``) when the folder is consistent, whatever its size;
    2. else, with Kaggle credentials, a download into ``root`` (which only adds missing files);
    3. else the offline stand-in in ``standin_root`` (written once), after saying what was wrong with ``root``.
    """
    data_dir = default_data_dir()
    root = Path(root) if root is not None else data_dir / "tgs-salt"
    standin_root = Path(standin_root) if standin_root is not None else data_dir / "tgs-salt-standin"
    present = root.exists() and any(root.iterdir())
    problems = folder_problems(root) if present else ["absent"]
    if not problems:
        source = _real(root)
    elif kaggle_credentials_found():
        source = _real(download_tgs_salt(root))
    else:
        if present:
            print(
                f"Warning: {root} is not usable as TGS Salt data, so it is left as it is and not used: "
                + "; ".join(problems)
                + ". Download it again (see data/README.md) or fix these files; "
                f"using the offline stand-in in {standin_root} instead."
            )
        if layout_problems(standin_root, N_TRAIN, N_STANDIN_TEST):
            make_synthetic_tgs(standin_root)
        source = TGSSource(standin_root, synthetic=True, n_train=N_TRAIN, n_test=N_STANDIN_TEST)
    if verbose:
        print(source.banner)
    return source
