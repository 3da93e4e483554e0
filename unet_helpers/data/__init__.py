"""TGS Salt Identification Challenge data, one module per job:

- ``files``: Kaggle's folder layout and file formats, decoding a split into arrays;
- ``download``: Kaggle credentials and the download (the kaggle package);
- ``standin``: the offline stand-in, written in exactly Kaggle's files;
- ``rle``: Kaggle's run-length encoding and submission files;
- ``dataset``: the PyTorch ``TGSSaltDataset`` and a stratified split;
- ``source``: ``get_tgs_salt()``, which picks the real data, a download or the stand-in.

Everything is importable from ``unet_helpers.data`` directly.
"""

from .dataset import TGSSaltDataset, coverage_class, is_column_mask, stratified_folds, stratified_split
from .download import COMPETITION, RULES_URL, download_tgs_salt, kaggle_credentials_found
from .files import (
    N_TEST,
    N_TRAIN,
    PAD_SIDE,
    RESIZE_SIDE,
    SIDE,
    TGSArrays,
    TGSDataError,
    default_data_dir,
    layout_problems,
    load_tgs_split,
    read_csv,
    read_png,
)
from .rle import check_submission, rle_decode, rle_encode, write_submission
from .source import TGSSource, folder_problems, get_tgs_salt
from .standin import kaggle_mask_png, make_synthetic_tgs

__all__ = [
    "COMPETITION",
    "N_TEST",
    "N_TRAIN",
    "PAD_SIDE",
    "RESIZE_SIDE",
    "RULES_URL",
    "SIDE",
    "TGSArrays",
    "TGSDataError",
    "TGSSaltDataset",
    "TGSSource",
    "check_submission",
    "coverage_class",
    "default_data_dir",
    "download_tgs_salt",
    "folder_problems",
    "get_tgs_salt",
    "is_column_mask",
    "kaggle_credentials_found",
    "kaggle_mask_png",
    "layout_problems",
    "load_tgs_split",
    "make_synthetic_tgs",
    "read_csv",
    "read_png",
    "rle_decode",
    "rle_encode",
    "stratified_folds",
    "stratified_split",
    "write_submission",
]
