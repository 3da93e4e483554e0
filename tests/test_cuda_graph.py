"""A training step replayed as one CUDA graph (engine.CudaGraphStep) trains the network a normal step trains.

The GPU tests run where a CUDA GPU is (``python -m pytest tests/test_cuda_graph.py`` on a lent GPU); CI has none,
and there the CPU tests check that asking for a graph changes nothing and says why.
"""

import pytest
import torch

from unet_helpers.engine import CudaGraphStep, load_checkpoint, one_step, train
from unet_helpers.losses import BCEDiceLoss, SaltHeadLoss, SymmetricLovaszLoss
from unet_helpers.models import UNet

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def small_unet(**levers) -> UNet:
    torch.manual_seed(0)
    return UNet(in_channels=3, out_channels=1, features=(8, 16, 32), padding="same", batch_norm=True, **levers)


def batches(device, sizes=(8,) * 8 + (5,), side=32, seed=1):
    """Batches of random images whose masks are their bright pixels; the last one is smaller (an epoch's last)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        images = torch.rand(n, 3, side, side, generator=generator)
        masks = (images[:, :1] > 0.6).float()
        out.append((images.to(device).contiguous(memory_format=torch.channels_last), masks.to(device)))
    return out


def run(model, optimizer, loss_fn, data, graph: bool, amp_dtype=None, rates=None):
    """Step through ``data``; before step k the learning rate is ``rates[k]`` (as a scheduler would set it)."""
    model.train()
    step = CudaGraphStep(model, loss_fn, optimizer, amp_dtype) if graph else None
    losses = []
    for k, (images, masks) in enumerate(data):
        if rates is not None:
            for group in optimizer.param_groups:
                group["lr"] = rates[k]
        if step is not None:
            loss = step(images, masks)
        else:
            loss = one_step(model, images, masks, loss_fn, optimizer, None, amp_dtype)
        losses.append(float(loss))
    return losses, step


@gpu
def test_a_replayed_step_trains_the_weights_a_normal_step_trains_learning_rate_changes_included():
    device = torch.device("cuda")
    data = batches(device)
    rates = [1e-3, 1e-3, 2e-3, 2e-3, 5e-4, 5e-4, 1e-4, 3e-3, 1e-3]  # the replays must read each new rate
    results = []
    # float32 without TF32 and with cuDNN's deterministic kernels: the two runs differ only by the recording
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        for graph in (False, True):
            model = small_unet().to(device).to(memory_format=torch.channels_last)
            # capturable in both runs (CudaGraphStep sets it): the same update arithmetic on the GPU
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2, capturable=True)
            losses, step = run(model, optimizer, BCEDiceLoss(), data, graph, rates=rates)
            results.append((losses, model.state_dict()))
    (eager_losses, eager_state), (graph_losses, graph_state) = results
    assert step.graph is not None and not step.failed  # 3 warm-up steps, then recorded, then the last one as usual
    assert graph_losses == pytest.approx(eager_losses, rel=1e-3)
    # Adam moves a weight by about the learning rate whatever the gradient's size, so a gradient that is a small
    # difference of large terms (a convolution before batch norm) can end a step apart through rounding alone: with
    # TF32 on, 44% of the first convolution's weights differed by more than 1e-4 (at most 0.0018) after these 9 steps
    # on an H100, while the losses agreed to 1e-3. No weight or batch-norm statistic may be more than a step apart.
    for key, value in eager_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(graph_state[key], value, rtol=1e-3, atol=max(rates))


@gpu
def test_a_replay_at_learning_rate_zero_leaves_the_weights_alone():
    device = torch.device("cuda")
    model = small_unet().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    data = batches(device, sizes=(8,) * 6)
    _, step = run(model, optimizer, BCEDiceLoss(), data[:5], graph=True)
    assert step.graph is not None
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.param_groups[0]["lr"] = 0.0
    step(*data[5])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    optimizer.param_groups[0]["lr"] = 1e-3
    step(*data[5])
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@gpu
def test_the_levers_network_and_the_symmetric_lovasz_loss_record_in_bfloat16():
    device = torch.device("cuda")
    data = batches(device)
    losses = []
    for graph in (False, True):
        model = small_unet(block="residual", attention="scse", hypercolumn=True, salt_head=True).to(device)
        model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
        loss_fn = SaltHeadLoss(SymmetricLovaszLoss(), model)
        result, step = run(model, optimizer, loss_fn, data, graph, amp_dtype=torch.bfloat16)
        losses.append(result)
    assert step.graph is not None and not step.failed
    assert losses[1] == pytest.approx(losses[0], rel=5e-2, abs=5e-3)  # bfloat16: close, not equal


@gpu
def test_a_run_trained_with_graphs_resumes_on_a_cpu(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    device = torch.device("cuda")
    images = torch.rand(48, 3, 32, 32)
    dataset = TensorDataset(images, (images[:, :1] > 0.6).float())
    loader = DataLoader(dataset, batch_size=8)
    model = small_unet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train(model.to(device), loader, loader, BCEDiceLoss(), optimizer, 2, device=device, checkpoint_dir=tmp_path,
          progress=False, verbose=False, cuda_graph=True, precise_bn_batches=0)  # fmt: skip
    assert all(group["capturable"] for group in optimizer.param_groups)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]
    assert not any(group["capturable"] for group in saved["param_groups"])
    assert all(state["step"].device.type == "cpu" for state in saved["state"].values())  # as a normal run saves them
    assert all(state["step"].device.type == "cuda" for state in optimizer.state.values())  # the run's own: untouched
    cpu_model = small_unet()
    cpu_optimizer = torch.optim.AdamW(cpu_model.parameters(), lr=1e-3)
    load_checkpoint(tmp_path / "last.pt", cpu_model, cpu_optimizer, map_location="cpu")
    assert not any(group["capturable"] for group in cpu_optimizer.param_groups)
    one_step(cpu_model, images[:8], dataset.tensors[1][:8], BCEDiceLoss(), cpu_optimizer)  # steps on the CPU


def test_asking_for_a_graph_where_none_can_be_recorded_says_why_and_trains_the_same(capsys):
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.rand(24, 3, 32, 32)
    loader = DataLoader(TensorDataset(images, (images[:, :1] > 0.6).float()), batch_size=8)
    histories = []
    for cuda_graph in (False, True):
        model = small_unet()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        history = train(model, loader, loader, BCEDiceLoss(), optimizer, 2, device="cpu", progress=False,
                        cuda_graph=cuda_graph, seed=0)  # fmt: skip
        histories.append(history["train_loss"] + history["val_tgs"])
    assert "no CUDA graph: CUDA graphs need a CUDA device; training as usual" in capsys.readouterr().out
    assert histories[0] == histories[1]


def test_what_cannot_be_recorded_is_named():
    model = small_unet()
    assert "SGD" in CudaGraphStep.unsupported(torch.optim.SGD(model.parameters(), lr=0.1), None)
    adam = torch.optim.Adam(model.parameters())
    assert "GradScaler" in CudaGraphStep.unsupported(adam, torch.float16)
    assert CudaGraphStep.unsupported(adam, torch.bfloat16) == "CUDA graphs need a CUDA device"
    with pytest.raises(ValueError, match="not possible here: CUDA graphs need a CUDA device"):
        CudaGraphStep(model, BCEDiceLoss(), adam)


def test_the_trainer_uses_graphs_by_default_only_on_a_bfloat16_gpu_and_says_why_not_when_asked(tmp_path, capsys):
    from argparse import Namespace

    from unet_helpers import train as train_cli
    from unet_helpers.data import make_synthetic_tgs

    cpu = torch.device("cpu")
    assert train_cli.wants_cuda_graph(Namespace(cuda_graph=None, no_amp=False), cpu, 1) is False
    assert train_cli.wants_cuda_graph(Namespace(cuda_graph=False, no_amp=False), cpu, 1) is False
    root = make_synthetic_tgs(tmp_path / "tgs", n_train=24, n_test=2, seed=6)
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "medium-strong", "--features", "4,8"]
    argv += ["--epochs", "1", "--finetune-epochs", "0", "--batch-size", "8", "--limit-train", "16", "--limit-val", "8"]
    argv += ["--no-progress", "--device", "cpu", "--processes", "1", "--cuda-graph"]
    assert train_cli.main(argv) == 0
    assert "no CUDA graph: CUDA graphs need a CUDA device; training as usual" in capsys.readouterr().out
