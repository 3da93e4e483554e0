"""The training engine on a tiny stand-in: learning, checkpoints, resume, clear errors."""

import platform

import pytest
import torch
from torch.utils.data import DataLoader

from unet_helpers import engine
from unet_helpers.data import TGSSaltDataset, make_synthetic_tgs
from unet_helpers.engine import (
    CheckpointError,
    amp_dtype_for,
    eval_step,
    keep_freed_memory,
    load_checkpoint,
    predict,
    train,
    train_step,
)
from unet_helpers.losses import BCEDiceLoss
from unet_helpers.models import UNet


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = make_synthetic_tgs(tmp_path_factory.mktemp("tgs"), n_train=48, n_test=4, seed=1)
    full = TGSSaltDataset(root, channels=1, size="pad", side=112)
    train_ds = TGSSaltDataset(full.arrays, ids=full.ids[:32], channels=1, size="pad", side=112, augment=True)
    val_ds = TGSSaltDataset(full.arrays, ids=full.ids[32:], channels=1, size="pad", side=112)
    return train_ds, val_ds


def make_run(seed=0):
    torch.manual_seed(seed)
    model = UNet(1, 1, (4, 8), padding="same", batch_norm=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    return model, optimizer, scheduler


def loaders(tiny_data):
    train_ds, val_ds = tiny_data
    return DataLoader(train_ds, batch_size=8, shuffle=True), DataLoader(val_ds, batch_size=8)


def without_timing(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def test_loss_falls(tiny_data):
    model, optimizer, _ = make_run()
    history = train(
        model, *loaders(tiny_data), BCEDiceLoss(), optimizer, epochs=8, device="cpu", progress=False, verbose=False
    )
    assert history["epoch"] == list(range(1, 9))
    losses = history["train_loss"]
    assert losses[-1] < 0.9 * losses[0]  # a clear drop (0.72 -> 0.58 here)...
    assert sum(losses[-3:]) < sum(losses[:3])  # ...and a falling trend, not one lucky epoch
    assert all(0.0 <= s <= 1.0 for s in history["val_tgs"])


def test_interrupted_and_resumed_history_equals_the_uninterrupted_one(tiny_data, tmp_path):
    config = {"recipe": "test", "epochs": 4}
    model, optimizer, scheduler = make_run()
    uninterrupted = train(
        model,
        *loaders(tiny_data),
        BCEDiceLoss(),
        optimizer,
        4,
        scheduler=scheduler,
        checkpoint_dir=tmp_path / "a",
        config=config,
        progress=False,
        verbose=False,
    )

    def disconnect(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt  # what a Colab disconnect looks like to the loop

    model, optimizer, scheduler = make_run()
    with pytest.raises(KeyboardInterrupt):
        train(
            model,
            *loaders(tiny_data),
            BCEDiceLoss(),
            optimizer,
            4,
            scheduler=scheduler,
            checkpoint_dir=tmp_path / "b",
            config=config,
            progress=False,
            verbose=False,
            on_epoch_end=disconnect,
        )

    model, optimizer, scheduler = make_run(seed=123)  # a fresh session: other initial weights
    resumed = train(
        model,
        *loaders(tiny_data),
        BCEDiceLoss(),
        optimizer,
        4,
        scheduler=scheduler,
        checkpoint_dir=tmp_path / "b",
        resume=True,
        config=config,
        progress=False,
        verbose=False,
    )
    assert without_timing(resumed) == without_timing(uninterrupted)
    final_a = torch.load(tmp_path / "a/last.pt", weights_only=True)["model"]
    for name, tensor in torch.load(tmp_path / "b/last.pt", weights_only=True)["model"].items():
        assert torch.equal(tensor, final_a[name]), name


def test_checkpoints_hold_everything_and_best_is_the_best(tiny_data, tmp_path):
    model, optimizer, scheduler = make_run()
    history = train(
        model,
        *loaders(tiny_data),
        BCEDiceLoss(),
        optimizer,
        3,
        scheduler=scheduler,
        checkpoint_dir=tmp_path,
        config={"x": 1},
        progress=False,
        verbose=False,
    )
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "history", "config", "model_config", "rng", "epoch"} <= set(
        last
    )
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["best_score"] == max(history["val_tgs"])
    assert history["val_tgs"][best["epoch"] - 1] == max(history["val_tgs"])


def test_an_existing_run_is_not_overwritten_by_accident(tiny_data, tmp_path):
    model, optimizer, _ = make_run()
    train(
        model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 1, checkpoint_dir=tmp_path, progress=False, verbose=False
    )
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run.*resume=True.*overwrite=True"):
        train(
            model,
            *loaders(tiny_data),
            BCEDiceLoss(),
            optimizer,
            1,
            checkpoint_dir=tmp_path,
            progress=False,
            verbose=False,
        )
    assert (tmp_path / "last.pt").read_bytes() == before


def test_resume_with_another_configuration_is_refused(tiny_data, tmp_path):
    model, optimizer, _ = make_run()
    train(
        model,
        *loaders(tiny_data),
        BCEDiceLoss(),
        optimizer,
        1,
        checkpoint_dir=tmp_path,
        config={"lr": 0.01},
        progress=False,
        verbose=False,
    )
    with pytest.raises(CheckpointError, match="another configuration.*lr"):
        train(
            model,
            *loaders(tiny_data),
            BCEDiceLoss(),
            optimizer,
            2,
            checkpoint_dir=tmp_path,
            resume=True,
            config={"lr": 0.1},
            progress=False,
            verbose=False,
        )


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tiny_data, tmp_path):
    model, optimizer, _ = make_run()
    train(
        model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 1, checkpoint_dir=tmp_path, progress=False, verbose=False
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "last.pt").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.pt cannot be read as a checkpoint"):
        load_checkpoint(truncated, model)
    with pytest.raises(
        CheckpointError, match=r"saved for UNet\(.*features=\[4, 8\].*but the model is UNet\(.*features=\[8, 16\]"
    ):
        load_checkpoint(tmp_path / "last.pt", UNet(1, 1, (8, 16), padding="same", batch_norm=True))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", model)


def test_valid_padding_network_is_trained_and_scored_on_the_whole_tile(tiny_data):
    train_ds, val_ds = tiny_data
    big_val = TGSSaltDataset(val_ds.arrays, channels=1, size="pad", side=144)
    model = UNet(1, 1, (4, 8, 16), padding="valid")  # 144 -> 104 covers the 101 tile
    probs = predict(model, DataLoader(big_val, batch_size=8), torch.device("cpu"))
    assert probs.shape == (len(big_val), 1, 101, 101)
    result = eval_step(model, DataLoader(big_val, batch_size=8), BCEDiceLoss(), torch.device("cpu"))
    assert set(result) == {"loss", "tgs", "iou", "dice"}
    with pytest.raises(ValueError, match="shuffle=False"):
        eval_step(model, DataLoader(big_val, batch_size=8, shuffle=True), BCEDiceLoss(), torch.device("cpu"))


def test_model_from_checkpoint_rebuilds_the_network(tiny_data, tmp_path):
    from unet_helpers.engine import model_from_checkpoint

    model, optimizer, _ = make_run()
    train(
        model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 1, checkpoint_dir=tmp_path, progress=False, verbose=False
    )
    rebuilt, checkpoint = model_from_checkpoint(tmp_path / "last.pt")
    assert rebuilt.config() == model.config() and checkpoint["epoch"] == 1
    x = torch.rand(2, 1, 112, 112)
    model.eval(), rebuilt.eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    # train() left the model in channels_last: other summation order, the same numbers up to rounding.
    assert torch.allclose(model.cpu()(x), rebuilt(x), atol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt cannot be read"):
        model_from_checkpoint(tmp_path / "junk.pt")


def test_precise_batch_norm_matches_the_data_statistics():
    from unet_helpers.engine import recalibrate_batch_norm

    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(3)
    norm.running_mean.fill_(5.0)  # stale statistics, as after a fast-moving epoch
    data = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 1.0
    loader = DataLoader(torch.utils.data.TensorDataset(data, data), batch_size=16)
    recalibrate_batch_norm(norm, loader, torch.device("cpu"), batches=4)
    torch.testing.assert_close(norm.running_mean, data.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    # the average of the 4 batches' unbiased variances, close to the data's variance
    torch.testing.assert_close(norm.running_var, data.var((0, 2, 3)), rtol=0.05, atol=0.0)
    assert norm.momentum == 0.1  # restored for the next epoch


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_the_gpu_mixed_precision_path_trains_like_float32(tiny_data, amp_dtype):
    """The steps train() takes on CUDA (autocast, a grad scaler for float16, channels_last), run with CPU autocast.

    No GPU is needed: the same code runs, only the kernels differ. 16-bit rounding moves the
    losses slightly, so they are compared to float32's with a 2% tolerance.
    """
    cpu = torch.device("cpu")
    train_ds, val_ds = tiny_data
    losses = {}
    for dtype in (None, amp_dtype):
        model, optimizer, _ = make_run()
        model = model.to(memory_format=torch.channels_last)
        scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
        loader = DataLoader(
            torch.utils.data.Subset(train_ds, range(16)),
            batch_size=4,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        losses[dtype] = [
            train_step(model, loader, BCEDiceLoss(), optimizer, cpu, scaler, dtype, channels_last=True)
            for _ in range(3)
        ]
    assert losses[amp_dtype][-1] < losses[amp_dtype][0]
    torch.testing.assert_close(torch.tensor(losses[amp_dtype]), torch.tensor(losses[None]), rtol=0.02, atol=0.0)
    probs = predict(model, DataLoader(val_ds, batch_size=8), cpu, amp_dtype, channels_last=True, hflip_tta=True)
    assert probs.dtype == torch.float32 and probs.shape == (len(val_ds), 1, 101, 101)  # float32, at 101x101
    assert 0.0 <= float(probs.min()) and float(probs.max()) <= 1.0


@pytest.mark.parametrize(
    "capability, expected",
    [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
    ids=["T4", "A100", "H100"],
)
def test_bfloat16_only_on_gpus_built_for_it(monkeypatch, capability, expected):
    # A T4 (Colab's free GPU) emulates bfloat16 slowly, so it gets float16 and a grad scaler.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert amp_dtype_for(torch.device("cuda")) == expected
    assert amp_dtype_for(torch.device("cuda"), amp=False) is None
    assert amp_dtype_for(torch.device("cpu")) is None


def test_freed_memory_is_kept_on_a_linux_cpu_unless_turned_off(tiny_data, monkeypatch):
    # glibc answers 1 to each mallopt() setting it accepts; elsewhere nothing is called and the answer is False.
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is on_glibc
    with monkeypatch.context() as m:
        m.setattr(platform, "system", lambda: "Darwin")
        assert keep_freed_memory() is False
    calls = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append("called") or True)
    for keep_memory in (False, True):
        model, optimizer, _ = make_run()
        train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, epochs=1, device="cpu", keep_memory=keep_memory,
              progress=False, verbose=False)  # fmt: skip
    assert calls == ["called"]  # once, for keep_memory=True


def test_a_main_stage_saved_with_fine_tune_settings_still_resumes(tiny_data, tmp_path):
    """Main-stage checkpoints used to carry the fine-tune settings; they never affected it, so they are ignored."""
    model, optimizer, _ = make_run()
    old = {"lr": 0.01, "finetune_epochs": 15}
    run = dict(checkpoint_dir=tmp_path, progress=False, verbose=False)
    train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 1, config=old, **run)
    history = train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 2, config={"lr": 0.01}, resume=True, **run)
    assert history["epoch"] == [1, 2]
    with pytest.raises(CheckpointError, match="differs in: lr"):
        train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 3, config={"lr": 0.02}, resume=True, **run)


def test_random_state_restores_from_a_checkpoint_mapped_onto_a_gpu():
    """On a GPU, checkpoints load with map_location="cuda", which moves the saved random-number states there too.

    torch only takes CPU byte tensors back; a resume on a GPU once failed with "RNG state must be a
    torch.ByteTensor". Here the tensors stand in for GPU ones: usable only after ``.cpu()``.
    """

    class OnGpu:
        def __init__(self, tensor):
            self.tensor = tensor

        def cpu(self):
            return self.tensor

    torch.manual_seed(7)
    state = engine._rng_state()
    expected = torch.rand(3)
    mapped = dict(state, torch=OnGpu(state["torch"]), numpy=dict(state["numpy"], keys=OnGpu(state["numpy"]["keys"])))
    torch.manual_seed(0)
    engine._set_rng_state(mapped)
    assert torch.equal(torch.rand(3), expected)


def test_a_run_saved_before_an_option_existed_resumes_with_it_off(tiny_data, tmp_path):
    """Checkpoints written before strong_augment existed resume with it off, and are refused with it on."""
    model, optimizer, _ = make_run()
    run = dict(checkpoint_dir=tmp_path, progress=False, verbose=False)
    train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 1, config={"lr": 0.01}, **run)
    history = train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 2, resume=True,
                    config={"lr": 0.01, "strong_augment": False}, **run)  # fmt: skip
    assert history["epoch"] == [1, 2]
    with pytest.raises(CheckpointError, match="differs in: strong_augment"):
        train(model, *loaders(tiny_data), BCEDiceLoss(), optimizer, 3, resume=True,
              config={"lr": 0.01, "strong_augment": True}, **run)  # fmt: skip
