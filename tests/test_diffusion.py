"""Notebook 09's denoiser: the time input, flow matching's formulas, the sampler, training that resumes, the shipped
weights, and the evaluation helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_helpers.data import TGSArrays
from unet_helpers.diffusion import (
    DENOISER,
    EMA,
    flow_matching_loss,
    nearest_neighbours,
    noisy,
    pairs_to_tiles,
    radial_power_spectrum,
    sample,
    tiles_to_pairs,
    train_denoiser,
)
from unet_helpers.models import RecursiveUNet, SinusoidalEmbedding, UNet, count_parameters, transfer_weights
from unet_helpers.pretrained import available_pretrained, load_card, load_pretrained

SMALL = dict(in_channels=2, out_channels=2, features=(8, 16), padding="same", time_dim=16, group_norm=True)


def test_time_embedding_shapes_and_values():
    embed = SinusoidalEmbedding(96)
    e = embed(torch.tensor([0.0, 0.5, 1.0]))
    assert e.shape == (3, 96)
    assert torch.allclose(e[0, :48], torch.zeros(48)) and torch.allclose(e[0, 48:], torch.ones(48))  # sin 0, cos 0
    assert e.abs().max() <= 1.0
    base = embed(torch.tensor([0.5]))
    similarity = [
        torch.nn.functional.cosine_similarity(base, embed(torch.tensor([0.5 + gap]))).item()
        for gap in (0.001, 0.01, 0.1, 0.2, 0.4)
    ]
    assert similarity[0] > 0.9 and similarity[0] > similarity[1] > similarity[2] > max(similarity[3:])
    assert max(similarity[3:]) < 0.5


def test_the_segmentation_network_is_unchanged_without_time():
    """No time_dim: the recursive U-Net has the layers it had, still matches UNet, and refuses a time."""
    torch.manual_seed(0)
    recursive = RecursiveUNet(1, 2, (8, 16, 32), padding="same")
    assert not any("time" in name for name in recursive.state_dict())
    loop = UNet(1, 2, (8, 16, 32), padding="same")
    transfer_weights(recursive, loop)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(recursive(x), loop(x))
    with pytest.raises(ValueError, match="no time input"):
        recursive(x, torch.rand(2))


def test_a_denoiser_needs_its_time_and_starts_as_the_time_free_network():
    torch.manual_seed(0)
    denoiser = RecursiveUNet(**SMALL)
    plain = RecursiveUNet(**{k: v for k, v in SMALL.items() if k != "time_dim"})
    plain.load_state_dict({k: v for k, v in denoiser.state_dict().items() if k in plain.state_dict()})
    x = torch.randn(3, 2, 16, 16)
    assert torch.equal(denoiser(x, torch.rand(3)), plain(x))  # the time layers start at zero
    with pytest.raises(ValueError, match="pass t"):
        denoiser(x)
    time_parameters = count_parameters(denoiser) - count_parameters(plain)
    # the MLP (16 -> 16 -> 16) and, per level, 2 x 8 (top: after encode and after decode) or 2 x 16 (bottom) outputs
    assert time_parameters == 2 * (16 * 16 + 16) + 2 * (16 * 16 + 16) + (16 * 32 + 32)


def test_noising_endpoints_and_the_straight_line():
    x0, noise = torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8)
    assert torch.equal(noisy(x0, noise, torch.zeros(4)), x0)
    assert torch.equal(noisy(x0, noise, torch.ones(4)), noise)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9])
    assert torch.allclose(noisy(x0, noise, t), x0 + t.view(-1, 1, 1, 1) * (noise - x0), atol=1e-6)


def test_the_loss_is_zero_for_a_network_that_knows_the_velocity():
    """The target is noise - x0: a 'network' that returns exactly that for every x_t scores 0."""
    x0 = torch.randn(5, 2, 8, 8)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))

    class Oracle(torch.nn.Module):
        def forward(self, xt, t):
            return noise - x0

    assert flow_matching_loss(Oracle(), x0, generator).item() == 0.0


def test_sampling_is_seeded_and_reaches_the_data_along_a_true_velocity():
    torch.manual_seed(0)
    model = RecursiveUNet(**SMALL)
    a, b = sample(model, 3, steps=4, seed=5, side=16), sample(model, 3, steps=4, seed=5, side=16)
    assert torch.equal(a, b) and not torch.equal(a, sample(model, 3, steps=4, seed=6, side=16))
    final, path = sample(model, 2, steps=4, seed=5, side=16, keep_every=2)
    assert len(path) == 3 and torch.equal(path[-1], final)

    target = torch.randn(1, 2, 16, 16)

    class Straight(torch.nn.Module):  # the true velocity towards one tile from the sampler's own starting noise
        in_channels = 2

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))
            self.start = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(9))

        def forward(self, x, t):
            return self.start - target

    assert torch.allclose(sample(Straight(), 1, steps=7, seed=9, side=16), target, atol=1e-5)


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    before = ema.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, 0.9 * before + 0.1 * model.weight)


def test_training_resumes_where_it_stopped(tmp_path):
    pairs = torch.rand(16, 2, 16, 16) * 2 - 1
    options = dict(batch_size=4, checkpoint_every=2, config=SMALL, progress=False, log_every=2)
    straight, _ = train_denoiser(pairs, tmp_path / "a", 4, **options)
    train_denoiser(pairs, tmp_path / "b", 2, **options)
    resumed, history = train_denoiser(pairs, tmp_path / "b", 4, resume=True, **options)
    assert history["step"] == [2, 4]
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6)
    with pytest.raises(FileExistsError, match="--resume"):
        train_denoiser(pairs, tmp_path / "b", 4, **options)


def test_the_command_line_keeps_a_runs_record_and_never_replaces_a_model_unasked(tmp_path, capsys, monkeypatch):
    """A refused command rewrote run.json (a resume with another --lr trained on at the new rate, and the card then
    reported it), export replaced the shipped denoiser without a word, and bad folders gave tracebacks."""
    import json

    from unet_helpers import diffusion
    from unet_helpers.data import make_synthetic_tgs

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # --threads would change it for every later test
    root = make_synthetic_tgs(tmp_path / "tgs", n_train=40, n_test=2)  # the stand-in's own ids (seed 0)
    out, weights = tmp_path / "run", tmp_path / "weights"
    train = ["train", "--data", str(root), "--out", str(out), "--batch-size", "4", "--threads", "1", "--no-progress"]
    assert diffusion.main([*train, "--steps", "1"]) == 0
    record = (out / "run.json").read_text()
    assert diffusion.main([*train, "--steps", "2"]) == 2  # no --resume
    assert "already holds a run" in capsys.readouterr().err and (out / "run.json").read_text() == record
    assert diffusion.main([*train, "--steps", "2", "--resume", "--lr", "0.5"]) == 2
    error = capsys.readouterr().err
    assert "other settings (--lr)" in error and "--lr 0.5" not in error and (out / "run.json").read_text() == record
    assert diffusion.main([*train, "--steps", "2", "--resume"]) == 0
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 2 and (out / "run.json").read_text() == record
    (out / "run.json").rename(tmp_path / "run.json")  # without its record a resume could not be checked: refused
    assert diffusion.main([*train, "--steps", "3", "--resume", "--lr", "0.5"]) == 2
    assert "no run.json beside it" in capsys.readouterr().err and not (out / "run.json").exists()
    (tmp_path / "run.json").rename(out / "run.json")

    export = ["export", "--run", str(out), "--out-dir", str(weights)]
    assert diffusion.main(export) == 0
    card = json.loads((weights / "denoiser.json").read_text())
    assert card["training"]["lr"] == 1e-3 and card["data"]["source"].startswith("the offline stand-in")
    before = (weights / "denoiser.pt").read_bytes()
    assert diffusion.main(export) == 2 and "--overwrite" in capsys.readouterr().err
    assert (weights / "denoiser.pt").read_bytes() == before
    assert diffusion.main([*export, "--overwrite"]) == 0
    assert diffusion.main(["export", "--run", str(tmp_path / "none"), "--out-dir", str(weights)]) == 2
    assert "not a denoiser run's folder (no last.pt, run.json)" in capsys.readouterr().err
    assert diffusion.main(["train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_pairs_from_tiles_and_back():
    rng = np.random.default_rng(0)
    tiny_arrays = TGSArrays(
        ids=[f"t{k}" for k in range(6)],
        images=rng.integers(0, 256, (6, 101, 101), dtype=np.uint8),  # stored as bytes, like the PNGs
        masks=(rng.random((6, 101, 101)) < 0.5).astype(np.uint8),
        depths=np.zeros(6),
    )
    pairs = tiles_to_pairs(tiny_arrays, side=32)
    assert pairs.shape == (len(tiny_arrays), 2, 32, 32)
    assert pairs.min() >= -1 and pairs.max() <= 1
    assert set(pairs[:, 1].unique().tolist()) <= {-1.0, 1.0}
    images, masks = pairs_to_tiles(pairs)
    assert images.min() >= 0 and images.max() <= 1 and masks.dtype == bool
    expected = tiny_arrays.images.astype(np.float32).mean(axis=(1, 2)) / 255  # area averaging keeps the mean
    assert np.allclose(images.mean(axis=(1, 2)), expected, atol=0.02)


def test_radial_spectrum_peaks_at_the_frequency_of_a_stripe_pattern():
    x = np.arange(32)
    stripes = np.sin(2 * np.pi * 5 * x / 32)[None, None, :].repeat(32, axis=1)
    spectrum = radial_power_spectrum(stripes)
    assert spectrum.argmax() + 1 == 5 and spectrum.shape == (16,)


def test_nearest_neighbours_find_a_copy():
    rng = np.random.default_rng(0)
    training = rng.random((10, 8, 8))
    index, distance = nearest_neighbours(training[[3, 7]], training)
    assert index.tolist() == [3, 7] and np.allclose(distance, 0, atol=1e-6)


def test_the_shipped_denoiser_loads_by_name_and_samples():
    assert "denoiser" in available_pretrained(generators=True)
    assert "denoiser" not in available_pretrained()  # the list of segmenters stays as the notebooks read it
    model, card = load_pretrained("denoiser")
    assert isinstance(model, RecursiveUNet) and model.time_dim == DENOISER["time_dim"]
    assert card["kind"] == "denoiser" and card["weights"]["bytes"] <= 5_000_000
    for name in available_pretrained():  # what every shipped segmenter is scored or chosen on stays unseen
        unseen = load_card(name)["data"]["held_out_ids"] + load_card(name)["data"]["val_ids"]
        assert set(card["data"]["train_ids"]).isdisjoint(unseen)
    x = sample(model, 2, steps=3, seed=0)
    assert x.shape == (2, 2, 32, 32) and torch.isfinite(x).all()
