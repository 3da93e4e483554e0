"""TGS Salt data: Kaggle's RLE format, the offline stand-in, the dataset, the split, bad input."""

import csv
import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from unet_helpers import data
from unet_helpers.data import (
    TGSArrays,
    TGSDataError,
    TGSSaltDataset,
    coverage_class,
    is_column_mask,
    layout_problems,
    load_tgs_split,
    make_synthetic_tgs,
    rle_decode,
    rle_encode,
    stratified_folds,
    stratified_split,
)


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return make_synthetic_tgs(tmp_path_factory.mktemp("tgs"), n_train=120, n_test=20, seed=3)


def copy_of(standin: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(standin, target)
    return target


# --- run-length encoding --------------------------------------------------------------------


def test_rle_exact_strings_on_hand_made_masks():
    mask = np.zeros((3, 3), np.uint8)
    mask[0, 0] = mask[1, 0] = 1  # pixels 1 and 2, column-major, 1-indexed
    mask[2, 1] = mask[0, 2] = 1  # pixel 6 (col 1, row 2) and pixel 7 (col 2, row 0)
    assert rle_encode(mask) == "1 2 6 2"
    assert rle_encode(np.zeros((101, 101))) == ""
    assert rle_encode(np.ones((101, 101))) == "1 10201"
    column = np.zeros((101, 101), np.uint8)
    column[:, 1] = 1  # the second column: pixels 102..202
    assert rle_encode(column) == "102 101"


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random_masks(seed):
    mask = (np.random.default_rng(seed).random((101, 101)) < 0.3).astype(np.uint8)
    assert np.array_equal(rle_decode(rle_encode(mask)), mask)


def test_rle_decode_empty_and_transposition():
    assert rle_decode("").sum() == 0
    decoded = rle_decode("1 3", shape=(3, 4))
    assert decoded[:, 0].tolist() == [1, 1, 1] and decoded.sum() == 3


@pytest.mark.parametrize(
    "bad, message",
    [
        ("5", "pairs"),
        ("1 x", "whole numbers"),
        ("0 3", "count from 1"),
        ("10200 5", "past the 101x101"),
        ("5 3 1 2", "sorted by start"),  # Kaggle's runs are sorted ...
        ("1 5 3 2", "must not overlap"),  # ... and do not overlap
    ],
)
def test_rle_decode_bad_strings_name_the_id(bad, message):
    """A malformed string is refused with the id in the message; runs that touch ("1 2 3 1") are still valid."""
    assert rle_decode("1 2 3 1", shape=(2, 2)).sum() == 3
    with pytest.raises(TGSDataError, match=f"abc123.*{message}"):
        rle_decode(bad, name="abc123")


# --- the stand-in ---------------------------------------------------------------------------


def test_standin_is_in_kaggles_layout(standin):
    assert layout_problems(standin, 120, 20) == []
    train_ids = sorted(p.stem for p in (standin / "train/images").glob("*.png"))
    assert train_ids == sorted(p.stem for p in (standin / "train/masks").glob("*.png"))
    assert all(len(i) == 10 and int(i, 16) >= 0 for i in train_ids)
    with open(standin / "train.csv") as f:
        assert next(csv.reader(f)) == ["id", "rle_mask"]
    with open(standin / "depths.csv") as f:
        depth_ids = {row["id"] for row in csv.DictReader(f)}
    test_ids = {p.stem for p in (standin / "test/images").glob("*.png")}
    assert depth_ids == set(train_ids) | test_ids
    with open(standin / "sample_submission.csv") as f:
        assert {row["id"] for row in csv.DictReader(f)} == test_ids


def test_standin_csv_matches_its_pngs(standin):
    arrays = load_tgs_split(standin)
    with open(standin / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 120
    for row in rows:
        png = (np.asarray(Image.open(standin / "train/masks" / f"{row['id']}.png")) > 0).astype(np.uint8)
        assert np.array_equal(rle_decode(row["rle_mask"]), png)
        assert np.array_equal(arrays.masks[arrays.ids.index(row["id"])], png)


def test_standin_writes_kaggles_file_modes(standin):
    """Kaggle's own files: RGB images with equal channels; masks L (all 0) when empty, I;16 with 0/65535 with salt."""
    arrays = load_tgs_split(standin)
    modes = set()
    for id_, mask in zip(arrays.ids, arrays.masks):
        with Image.open(standin / "train/images" / f"{id_}.png") as img:
            assert img.mode == "RGB" and img.size == (101, 101)
            rgb = np.asarray(img)
            assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        with Image.open(standin / "train/masks" / f"{id_}.png") as img:
            values = set(np.unique(np.asarray(img)).tolist())
            if mask.any():
                assert img.mode == "I;16" and values <= {0, 65535} and 65535 in values
            else:
                assert img.mode == "L" and values == {0}
            modes.add(img.mode)
    assert modes == {"L", "I;16"}  # both kinds are read back by the same code


def test_standin_statistics_look_like_tgs(tmp_path):
    root = make_synthetic_tgs(tmp_path, n_train=600, n_test=0, seed=0)
    arrays = load_tgs_split(root)
    coverage = arrays.coverage
    assert 0.32 < (coverage == 0).mean() < 0.46  # TGS: about 39 % empty masks
    nonempty = coverage[coverage > 0]
    assert nonempty.min() < 0.02 and nonempty.max() == 1.0  # slivers to whole tiles
    deep = arrays.depths > np.median(arrays.depths)
    assert (coverage[deep] > 0).mean() > (coverage[~deep] > 0).mean()  # the weak depth link
    # Salt is textured differently: lower contrast between neighbouring pixels than the layers.
    image = arrays.images.astype(float)
    vertical_contrast = np.abs(np.diff(image, axis=1))  # between each pixel and the one below it
    salt = arrays.masks.astype(bool)
    both_salt = salt[:, 1:] & salt[:, :-1]
    both_sediment = ~(salt[:, 1:] | salt[:, :-1])
    assert vertical_contrast[both_salt].mean() < vertical_contrast[both_sediment].mean()


def test_standin_is_reproducible_and_never_overwrites(tmp_path):
    a = make_synthetic_tgs(tmp_path / "a", n_train=15, n_test=5, seed=7)
    b = make_synthetic_tgs(tmp_path / "b", n_train=15, n_test=5, seed=7)

    def digest(root):
        return {
            p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in root.rglob("*")
            if p.is_file()
        }

    assert digest(a) == digest(b)
    user_file = next((a / "train/images").glob("*.png"))
    user_file.write_bytes(b"my own edit")
    make_synthetic_tgs(a, n_train=15, n_test=5, seed=7)
    assert user_file.read_bytes() == b"my own edit"


# --- the dataset and the split --------------------------------------------------------------


@pytest.mark.parametrize("size, side", [("pad", 104), ("resize", 104), ("none", 101)])
def test_dataset_shapes_dtypes_and_values(standin, size, side):
    ds = TGSSaltDataset(standin, channels=3, size=size)
    image, mask = ds[0]
    assert image.shape == (3, side, side) and mask.shape == (1, side, side)
    assert image.dtype == mask.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert ds.restore(mask[None]).shape == (1, 1, 101, 101)


def test_padding_is_undone_exactly(standin):
    ds = TGSSaltDataset(standin, channels=1, size="pad")
    original = torch.from_numpy(ds.arrays.masks[:4]).float().unsqueeze(1)
    assert torch.equal(ds.restore(ds.masks[:4]), original)


def test_resizing_keeps_a_mask_on_its_image():
    """A tile whose image *is* its mask: resized as "resize" does it, the mask must still lie on the image (nearest-
    exact, like bilinear, samples pixel centres; the legacy "nearest" put it about half a pixel down and right)."""
    from unet_helpers.data.dataset import fit_to_network

    torch.manual_seed(0)
    blobs = (torch.nn.functional.avg_pool2d(torch.rand(8, 1, 101, 101), 15, 1, 7) > 0.5).float()

    def centre(m: torch.Tensor) -> torch.Tensor:  # (N, 1, S, S) -> (N, 2): each tile's centre of mass, row and column
        rows, columns = torch.meshgrid(torch.arange(m.shape[-2]), torch.arange(m.shape[-1]), indexing="ij")
        mass = m.sum((1, 2, 3))
        return torch.stack([(m * rows).sum((1, 2, 3)) / mass, (m * columns).sum((1, 2, 3)) / mass], 1)

    for side in (104, 144, 208):
        image = fit_to_network(blobs, "resize", side, "image")
        mask = fit_to_network(blobs, "resize", side, "mask")
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        shift = (centre(mask) - centre(image)).mean(0)  # legacy nearest: +0.40 to +0.64 pixels down and right
        assert shift.abs().max() < 0.2, (side, shift.tolist())


def test_the_zoom_crops_image_and_mask_alike():
    from unet_helpers.data.dataset import RandomZoomIn

    torch.manual_seed(0)
    zoom = RandomZoomIn(104)
    square = torch.zeros(1, 104, 104)
    square[:, 27:77, 27:77] = 1  # an image that is its mask
    disagree = []
    for _ in range(50):
        image, mask = zoom(tv_tensors.Image(square), tv_tensors.Mask(square))
        assert isinstance(mask, tv_tensors.Mask) and set(mask.unique().tolist()) <= {0.0, 1.0}
        disagree.append(int(((image > 0.5) != (mask > 0.5)).sum()))
    assert np.mean(disagree) <= 5  # torchvision's RandomResizedCrop, mask resized with legacy nearest: about 100


def test_depth_channel_with_strong_augmentation_keeps_the_depth(standin):
    """The jitter changes the seismic image only: the depth channel goes on after it, unchanged."""
    ds = TGSSaltDataset(standin, channels=1, depth_channel=True, augment=True, strong_augment=True)
    torch.manual_seed(0)
    for index in range(8):
        image, mask = ds[index]
        assert image.shape == (2, ds.side, ds.side) and mask.shape == (1, ds.side, ds.side)
        assert torch.all(image[1] == float(ds.arrays.depths[index]) / 1000)


def test_depth_channel_and_one_channel(standin):
    ds = TGSSaltDataset(standin, channels=1, depth_channel=True)
    image, _ = ds[2]
    assert image.shape[0] == ds.in_channels == 2
    assert torch.allclose(image[1], torch.full_like(image[1], float(ds.arrays.depths[2]) / 1000))


def test_flips_apply_identically_to_image_and_mask(standin):
    ds = TGSSaltDataset(standin, channels=1, size="none", augment=True)
    plain = TGSSaltDataset(ds.arrays, channels=1, size="none")
    index = int(np.argmax([0 < c < 1 for c in ds.arrays.coverage]))
    torch.manual_seed(0)
    seen_flip = seen_plain = False
    for _ in range(20):
        image, mask = ds[index]
        flipped = torch.equal(image, plain[index][0].flip(-1))
        assert torch.equal(mask, plain[index][1].flip(-1) if flipped else plain[index][1])
        seen_flip |= flipped
        seen_plain |= not flipped
    assert seen_flip and seen_plain


def test_strong_augmentation_zooms_and_jitters_with_the_mask_following_the_image(standin):
    """The zoom moves image and mask alike; the jitter changes the image only; masks stay 0/1."""
    arrays = load_tgs_split(standin, "train")
    partial = [i for i, c in zip(arrays.ids, arrays.coverage) if 0.2 < c < 0.8][:4]
    tiles = arrays.subset(partial)
    # An image that *is* its mask (salt white, the rest black), so alignment can be read off the pixels.
    tiles = TGSArrays(tiles.ids, tiles.masks.astype(np.uint8) * 255, tiles.masks, tiles.depths)
    ds = TGSSaltDataset(tiles, channels=1, size="pad", augment=True, strong_augment=True)
    plain = TGSSaltDataset(tiles, channels=1, size="pad")
    torch.manual_seed(0)
    beyond_flips, disagree = 0, []
    for _ in range(10):
        for index in range(len(ds)):
            image, mask = ds[index]
            assert image.shape == mask.shape == (1, ds.side, ds.side)
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            assert 0.0 <= image.min() and image.max() <= 1.0
            # the midpoint of the two levels the jitter left: bilinear and nearest-exact differ only at outlines' corners
            disagree.append(int(((image > (image.min() + image.max()) / 2) != (mask > 0.5)).sum()))
            original = plain[index][0]
            beyond_flips += not (torch.equal(image, original) or torch.equal(image, original.flip(-1)))
    assert beyond_flips > 20  # zoom or jitter, each half of the time: about 3 draws in 4
    # pixels where image and mask disagree, per draw: 13 on average; 59 with the mask half a pixel off (the legacy
    # "nearest" of torchvision's RandomResizedCrop)
    assert np.mean(disagree) < 20 and max(disagree) < 60


def test_stratified_folds_validate_every_tile_once_with_each_class_spread_evenly():
    ids = [f"t{k:03d}" for k in range(103)]
    classes = np.repeat([0, 1, 2, 3], [40, 31, 20, 12])
    folds = stratified_folds(ids, classes, folds=5, seed=0)
    assert sorted(i for fold in folds for i in fold) == ids  # every tile in exactly one fold
    assert {len(fold) for fold in folds} <= {20, 21}  # sizes differ by one tile at most
    for c in range(4):  # each class spread over the folds, at most one tile apart
        per_fold = [sum(classes[ids.index(i)] == c for i in fold) for fold in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert folds == stratified_folds(ids, classes, folds=5, seed=0)  # seeded
    assert folds != stratified_folds(ids, classes, folds=5, seed=1)
    assert all(fold == sorted(fold) for fold in folds)  # the ids keep their order
    with pytest.raises(ValueError, match="folds must be at least 2"):
        stratified_folds(ids, classes, folds=1)


def test_test_split_returns_images_and_indices(standin):
    ds = TGSSaltDataset(standin, split="test", size="none")
    image, index = ds[3]
    assert image.shape == (3, 101, 101) and index == 3 and len(ds) == 20


def test_stratified_split_is_seeded_80_20_and_balanced(standin):
    arrays = load_tgs_split(standin)
    classes = coverage_class(arrays.coverage)
    train, val = stratified_split(arrays.ids, classes, seed=1)
    assert len(val) == pytest.approx(0.2 * len(arrays), abs=len(np.unique(classes)))
    assert not set(train) & set(val) and len(train) + len(val) == len(arrays)
    assert (train, val) == stratified_split(arrays.ids, classes, seed=1)
    assert val != stratified_split(arrays.ids, classes, seed=2)[1]

    def empty_share(ids):
        return np.mean([classes[arrays.ids.index(i)] == 0 for i in ids])

    assert abs(empty_share(train) - empty_share(val)) < 0.05


def test_coverage_class():
    assert coverage_class([0, 0.001, 0.1, 0.55, 1.0]).tolist() == [0, 1, 1, 6, 10]


# --- bad input: a clear error naming the file or id, nothing changed ------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(TGSDataError, match="does not exist.*get_tgs_salt"):
        load_tgs_split(tmp_path / "nowhere")


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_image_without_mask(standin, tmp_path):
    root = copy_of(standin, tmp_path)
    victim = next((root / "train/masks").glob("*.png"))
    victim.unlink()
    before = snapshot(root)
    with pytest.raises(TGSDataError, match=f"{victim.stem}.png has no mask"):
        load_tgs_split(root)
    assert snapshot(root) == before


def test_corrupt_png(standin, tmp_path):
    root = copy_of(standin, tmp_path)
    victim = next((root / "train/images").glob("*.png"))
    victim.write_bytes(victim.read_bytes()[:60])  # a truncated file
    with pytest.raises(TGSDataError, match=f"{victim.stem}.png: cannot be read"):
        load_tgs_split(root)
    assert victim.stat().st_size == 60


def test_wrongly_sized_png(standin, tmp_path):
    root = copy_of(standin, tmp_path)
    victim = next((root / "train/images").glob("*.png"))
    Image.new("L", (128, 101)).save(victim)
    with pytest.raises(TGSDataError, match=f"{victim.stem}.png: is 128x101 pixels, expected 101x101"):
        load_tgs_split(root)


def test_mask_with_values_other_than_0_and_255(standin, tmp_path):
    root = copy_of(standin, tmp_path)
    victim = next((root / "train/masks").glob("*.png"))
    Image.fromarray(np.full((101, 101), 128, np.uint8)).save(victim)
    with pytest.raises(
        TGSDataError, match=f"{victim.stem}.png: a mask must hold only 0 and 255, found values \\[128\\]"
    ):
        load_tgs_split(root)


def test_both_kinds_of_kaggle_mask_are_read_as_0_and_1(tmp_path):
    salt, empty = tmp_path / "salt.png", tmp_path / "empty.png"
    Image.fromarray(np.where(np.eye(101, dtype=bool), 65535, 0).astype(np.uint16)).save(salt)
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(empty)
    assert Image.open(salt).mode == "I;16" and Image.open(empty).mode == "L"
    salt_mask, empty_mask = data.read_png(salt, "mask"), data.read_png(empty, "mask")
    assert salt_mask.dtype == np.uint8 and set(np.unique(salt_mask).tolist()) == {0, 1} and salt_mask.sum() == 101
    assert empty_mask.dtype == np.uint8 and empty_mask.sum() == 0


def test_sixteen_bit_mask_with_other_values_names_the_file(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.full((101, 101), 1000, np.uint16)).save(path)
    with pytest.raises(TGSDataError, match="m.png: a mask must hold only 0 and 65535, found values \\[1000\\]"):
        data.read_png(path, "mask")


# --- the Kaggle download, with a fake API (no network in tests) ------------------------------


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")


def test_download_without_credentials_says_where_they_go(no_credentials, tmp_path):
    with pytest.raises(TGSDataError) as err:
        data.download_tgs_salt(tmp_path / "tgs")
    message = str(err.value)
    for hint in ("~/.kaggle/kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY", "Colab", "secrets"):
        assert hint in message
    assert not (tmp_path / "tgs").exists()


class FakeApi:
    """Stands in for kaggle's KaggleApi: writes a competition archive or refuses like Kaggle does."""

    def __init__(self, standin: Path, status: int | None = None, truncate: bool = False):
        self.standin, self.status, self.truncate, self.calls = standin, status, truncate, []

    def competition_download_files(self, competition, path, force=False, quiet=True):
        self.calls.append((competition, force))
        if self.status:
            err = Exception(f"({self.status}) Reason: Forbidden")
            err.status = self.status
            raise err
        archive = Path(path) / f"{competition}.zip"
        with zipfile.ZipFile(archive, "w") as outer:
            for name in ("train.csv", "depths.csv", "sample_submission.csv"):
                outer.write(self.standin / name, name)
            for split in ("train", "test"):
                inner_path = Path(path) / f"_{split}.zip"
                with zipfile.ZipFile(inner_path, "w") as inner:
                    for png in (self.standin / split).rglob("*.png"):
                        inner.write(png, png.relative_to(self.standin / split).as_posix())
                outer.write(inner_path, f"{split}.zip")
                inner_path.unlink()
        if self.truncate:
            archive.write_bytes(archive.read_bytes()[:1000])
            self.truncate = False


def test_download_rules_not_accepted(standin, tmp_path, monkeypatch):
    monkeypatch.setattr(data.download, "_kaggle_api", lambda: FakeApi(standin, status=403))
    with pytest.raises(TGSDataError, match="accept the competition's rules at https://www.kaggle.com/c/tgs-salt"):
        data.download_tgs_salt(tmp_path / "tgs")


def test_download_unpacks_into_kaggles_layout_and_is_idempotent(standin, tmp_path, monkeypatch):
    monkeypatch.setattr(data.files, "N_TRAIN", 120)
    monkeypatch.setattr(data.files, "N_TEST", 20)
    api = FakeApi(standin, truncate=True)
    monkeypatch.setattr(data.download, "_kaggle_api", lambda: api)
    root = tmp_path / "tgs"
    root.mkdir()
    (root / "my_notes.txt").write_text("keep me")
    # First call: the archive arrives truncated, so the function reports it and fetches nothing more.
    with pytest.raises(TGSDataError, match="incomplete after the download"):
        data.download_tgs_salt(root)
    # Second call: the truncated archive is fetched again (force), then unpacked.
    data.download_tgs_salt(root)
    assert api.calls[-1] == (data.COMPETITION, True)
    assert layout_problems(root, 120, 20) == []
    assert (root / "my_notes.txt").read_text() == "keep me"
    assert np.array_equal(load_tgs_split(root).masks, load_tgs_split(standin).masks)
    # Third call: complete, nothing fetched.
    calls = len(api.calls)
    data.download_tgs_salt(root)
    assert len(api.calls) == calls


def test_get_tgs_salt_falls_back_to_the_standin_with_a_banner(no_credentials, tmp_path, monkeypatch, capsys):
    made = []
    monkeypatch.setattr(data.source, "make_synthetic_tgs", lambda root: made.append(root))
    source = data.get_tgs_salt(tmp_path / "real", standin_root=tmp_path / "standin")
    assert source.synthetic and made == [tmp_path / "standin"] and source.tag == "standin"  # its runs' own folders
    out = capsys.readouterr().out
    assert "OFFLINE STAND-IN" in out and "synthetic" in out and out.count("\n") == 1


def _digest(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_get_tgs_salt_takes_a_smaller_consistent_folder_as_real_data(no_credentials, standin, tmp_path, capsys):
    root = copy_of(standin, tmp_path)
    source = data.get_tgs_salt(root, standin_root=tmp_path / "standin")
    assert not source.synthetic and source.root == root and (source.n_train, source.n_test) == (120, 20)
    assert source.tag == "real"
    assert (
        "Kaggle TGS Salt" in capsys.readouterr().out
        and "120 of Kaggle's 4,000 training tiles, 20 of its" in source.banner
    )
    assert not (tmp_path / "standin").exists()
    shutil.rmtree(root / "test")  # the test set may be absent
    (root / "sample_submission.csv").unlink()
    source = data.get_tgs_salt(root, standin_root=tmp_path / "standin", verbose=False)
    assert not source.synthetic and source.n_test == 0


@pytest.mark.parametrize(
    "damage, named",
    [
        ("mask", "1 of the 120 ids in train.csv have no mask in train/masks (e.g. {id})"),
        ("image", "1 of the 120 ids in train.csv have no image in train/images (e.g. {id})"),
        ("depth", "1 id has no depth in depths.csv (e.g. {id})"),
        ("train.csv", "train.csv is missing"),
    ],
)
def test_an_inconsistent_folder_is_named_left_alone_and_not_used(
    no_credentials, standin, tmp_path, monkeypatch, capsys, damage, named
):
    root = copy_of(standin, tmp_path)
    id_ = sorted(p.stem for p in (root / "train/images").glob("*.png"))[5]
    if damage in ("mask", "image"):
        (root / "train" / f"{damage}s" / f"{id_}.png").unlink()
    elif damage == "depth":
        rows = (root / "depths.csv").read_text().splitlines()
        (root / "depths.csv").write_text("\n".join(r for r in rows if not r.startswith(id_)) + "\n")
    else:
        (root / "train.csv").unlink()
    before = _digest(root)
    monkeypatch.setattr(data.source, "make_synthetic_tgs", lambda r: make_synthetic_tgs(r, n_train=12, n_test=2))
    source = data.get_tgs_salt(root, standin_root=tmp_path / "standin")
    out = capsys.readouterr().out
    assert source.synthetic and source.root == tmp_path / "standin"
    assert named.format(id=id_) in out and f"{root} is not usable" in out and "using the offline stand-in" in out
    assert _digest(root) == before  # nothing in the user's folder changed


def test_importing_the_package_needs_no_credentials():
    import subprocess
    import sys

    code = "import unet_helpers.data, sys; assert 'kaggle' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"HOME": "/nonexistent", "PATH": ""})


# --- submissions ---------------------------------------------------------------------------


def test_submission_round_trip_and_checks(standin, tmp_path):
    test_ids = sorted(p.stem for p in (standin / "test/images").glob("*.png"))
    masks = np.zeros((len(test_ids), 101, 101), np.uint8)
    masks[0, :, :3] = 1
    path = data.write_submission(tmp_path / "submission.csv", test_ids, masks)
    assert data.check_submission(path, standin / "sample_submission.csv") == len(test_ids)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["rle_mask"] == "1 303" and rows[1]["rle_mask"] == ""
    data.write_submission(tmp_path / "short.csv", test_ids[1:], masks[1:])
    with pytest.raises(TGSDataError, match="1 missing"):
        data.check_submission(tmp_path / "short.csv", standin / "sample_submission.csv")
    (tmp_path / "bad.csv").write_text("id,rle_mask\n" + "\n".join(f"{i},1 99999" for i in test_ids))
    with pytest.raises(TGSDataError, match="past the 101x101"):
        data.check_submission(tmp_path / "bad.csv", standin / "sample_submission.csv")


def test_column_masks_are_full_height_bands_and_nothing_else():
    masks = np.zeros((5, 101, 101), dtype=np.uint8)
    masks[1, :, 30:60] = 1  # one band, top to bottom
    masks[2, :, :10] = masks[2, :, 90:] = 1  # two bands
    masks[3, :, 30:60] = 1
    masks[3, 0, 70] = 1  # one stray pixel: not a band
    masks[4, 50:, :] = 1  # salt below a horizontal line: the usual shape, not a band
    assert is_column_mask(masks).tolist() == [False, True, True, False, False]  # an empty mask is no band either
