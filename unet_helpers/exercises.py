"""Exercises at the end of every notebook, and the checks that say whether an answer is right (and why not).

In a notebook::

    answer = ...                      # EXERCISE 01.1: your answer here
    check("01.1", answer)             # prints "right" with the reason, or what is wrong

``check`` never raises: an unanswered exercise (``...``) or an answer that crashes prints a hint,
so a notebook still runs top to bottom. Reference solutions are in ``unet_helpers.solutions``;
the tests run every one of them through these checks, and an empty answer through each as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


class NotYet(Exception):
    """Raised inside a check: the answer is not right; the message says what is wrong."""


@dataclass(frozen=True)
class Exercise:
    question: str
    verify: Callable[[Any], str]  # returns the explanation of a right answer, raises NotYet otherwise


def _as_number(answer):
    """A one-number tensor or array as a Python number (a learner may compute the answer with torch)."""
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        return answer.detach().item()
    if isinstance(answer, np.ndarray) and answer.size == 1:
        return answer.item()
    return answer


def _number(answer, expected: int, hint: str, why: str) -> str:
    answer = _as_number(answer)
    if isinstance(answer, (float, np.floating)) and float(answer).is_integer():
        answer = int(answer)  # 2193.0 from a division is the whole number 2193
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        raise NotYet(f"give a whole number (an int), not {type(answer).__name__}")
    if answer != expected:
        raise NotYet(f"{answer} is not it. {hint}")
    return why


def _function(answer) -> Callable:
    if not callable(answer):
        raise NotYet(f"give a function (def ...), not {type(answer).__name__}")
    return answer


# --- checks that need more than one line ---------------------------------------------------------------


def _rle(answer) -> str:
    from .data.rle import rle_decode

    if not isinstance(answer, str):
        raise NotYet(f"give the run-length string (a str like '1 2 5 1'), not {type(answer).__name__}")
    mask = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0]], dtype=np.uint8)
    answer = " ".join(answer.split())

    def decodes_to(rle: str, expected: np.ndarray) -> bool:
        try:
            return np.array_equal(rle_decode(rle, shape=(4, 4)), expected)
        except ValueError:  # not a valid run-length string
            return False

    if decodes_to(answer, mask):
        if answer != "2 2 7 3":
            raise NotYet(
                f"{answer!r} decodes to the right mask, but Kaggle's files write each run once: merge runs that "
                "continue from one column into the next (9 follows 8)"
            )
    elif decodes_to(answer, mask.T):
        raise NotYet(f"{answer!r} numbers the pixels along the rows; Kaggle numbers them down each column")
    elif decodes_to(_shift_runs(answer, 1), mask):
        raise NotYet(f"{answer!r} numbers the pixels from 0; Kaggle numbers them from 1")
    else:
        raise NotYet(
            f"{answer!r} is not it. Number the pixels from 1 down each column first (column-major), "
            "then write 'start length' for each run of 1s."
        )
    return (
        "pixels 2-3 (column 1, rows 2-3) and 7-9 (column 2, rows 3-4 and column 3, row 1) are salt: "
        "Kaggle numbers down the columns, so runs may wrap from one column to the next."
    )


def _shift_runs(rle: str, by: int) -> str:
    """The same runs with every start moved by ``by`` pixels (to recognise an answer numbered from 0)."""
    tokens = rle.split()
    return " ".join(str(int(t) + by) if i % 2 == 0 and t.isdigit() else t for i, t in enumerate(tokens))


def _dice_loss(answer) -> str:
    fn = _function(answer)
    from .losses import SoftDiceLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 9, 9, generator=g).requires_grad_(True)
    target = (torch.rand(4, 1, 9, 9, generator=g) > 0.6).float()
    target[0] = 0  # an empty mask too
    try:
        got = fn(logits, target)
    except NotImplementedError:
        raise NotYet("the function still raises NotImplementedError: write its body") from None
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise NotYet("return one number as a tensor (the mean loss over the batch), e.g. (1 - dice).mean()")
    expected = SoftDiceLoss(smooth=1.0)(logits, target)
    if not got.requires_grad:
        raise NotYet("the loss has no gradient: use probabilities, torch.sigmoid(logits), not thresholded masks")
    if not torch.allclose(got.float(), expected, atol=1e-5):
        raise NotYet(
            f"got {float(got.detach()):.4f}, expected {float(expected):.4f}: per image, "
            "1 - (2 * sum(p * t) + 1) / (sum(p) + sum(t) + 1) with p = sigmoid(logits), then the mean"
        )
    return "soft Dice: probabilities instead of 0/1 masks make the overlap differentiable; +1 keeps empty masks finite."


def _close(answer, expected: float, rel: float, hint: str, why: str, atol: float = 0.0) -> str:
    """Right when within ``rel`` of ``expected`` (relative), or within ``atol`` (absolute) where that is more."""
    answer = _as_number(answer)
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.integer, np.floating)):
        raise NotYet(f"give a number, not {type(answer).__name__}")
    if abs(float(answer) - expected) > max(rel * abs(expected), atol):
        raise NotYet(f"{answer} is not it. {hint}")
    return why


def _level_macs(answer) -> str:
    expected = 35_960_815_616
    if isinstance(answer, (int, float, np.integer, np.floating)) and not isinstance(answer, bool):
        if abs(float(answer) - (expected + 3 * 200 * 200 * 128 * 256)) < 0.005 * expected:
            raise NotYet(
                f"{answer} counts the up-convolution 4x, as torchinfo does: each of its output values receives one "
                "tap per input channel (output values x C_in), not all four"
            )
        if abs(float(answer) - (expected - 200 * 200 * 128 * 256)) < 0.005 * expected:
            raise NotYet(f"{answer} leaves out up2, the up-convolution into level 2 (256 -> 128 channels, 200x200 out)")
    return _close(  # an exact count: 1e-4 admits a rounded float, not one layer's side off by 2 pixels (0.2%)
        answer,
        expected,
        1e-4,
        "Add the five layers of level 2: enc2_conv1 (282x282 out, 64 -> 128), enc2_conv2 (280x280, 128 -> 128), up2 "
        "(200x200 out, 256 -> 128), dec2_conv1 (198x198, 256 -> 128), dec2_conv2 (196x196, 128 -> 128); a 3x3 "
        "convolution costs out_side^2 x C_out x C_in x 9, with each layer's OUTPUT side (enc2_conv1 reads the "
        "pooled 284x284 and writes 282x282)",
        "5.86 + 11.56 + 1.31 + 11.56 + 5.66 = 35.96 G: a quarter of the pixels of level 1 and twice the channels "
        "on both sides of each product, so about the same as every other level (check: unet_helpers.macs.count_macs).",
    )


def _receptive_field_3(answer) -> str:
    if answer == 40:
        raise NotYet(
            "40 is how much smaller a 3-level valid network's output is than its input (144 -> 104), what the "
            "valid convolutions trim; it is not the window one output pixel sees. Walk the layers"
        )
    return _number(
        answer,
        44,
        "Walk the layers from the input: a 3x3 conv adds 2 x jump, a 2x2 pool adds 1 x jump and doubles the jump, "
        "a 2x2 up-conv adds nothing and halves it.",
        "1 + 2 + 2 = 5, pool: 6 (jump 2), + 4 + 4 = 14, pool: 16 (jump 4), + 8 + 8 = 32 at the bottom, up: jump 2, "
        "+ 4 + 4 = 40, up: jump 1, + 2 + 2 = 44 (check: unet_helpers.anatomy.receptive_field).",
    )


def _level_forward(answer) -> str:
    fn = _function(answer)
    from .models import RecursiveUNet, UNetLevel

    torch.manual_seed(0)
    model = RecursiveUNet(1, 1, (4, 8, 16), padding="same").eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        expected = model(x)

    def not_the_module(self, *args, **kwargs):
        raise NotYet(
            "the answer calls the package's UNetLevel (level(x) or level.inner(x)); write the recursion yourself: "
            "level_forward(level.inner, ...)"
        )

    package_forward = UNetLevel.forward
    UNetLevel.forward = not_the_module  # while the answer runs, a call into the package's recursion is an error
    try:
        with torch.no_grad():
            got = model.head(fn(model.unet, x))
    except NotImplementedError:
        raise NotYet("the function still raises NotImplementedError: write its body") from None
    except NotYet:
        raise
    except Exception as err:
        raise NotYet(f"it failed inside the network: {type(err).__name__}: {err}") from None
    finally:
        UNetLevel.forward = package_forward
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        raise NotYet(f"return the level's output, shape {tuple(expected[:, :1].shape[:1]) + (4, 16, 16)} here")
    if not torch.allclose(got, expected, atol=1e-6):
        raise NotYet(
            "encode x (that is the skip), and at depth 0 return it; otherwise pool it, run the inner U-Net on it "
            "(level_forward(level.inner, ...)) and give both to level.decode(from_below, skip)"
        )
    return (
        "three lines: skip = level.encode(x); at depth 0 return skip; else return level.decode(level_forward("
        "level.inner, level.pool(skip)), skip). The recursion goes down to the bottleneck and back up."
    )


def _empty_tile_dice(answer) -> str:
    return _close(  # 2e-6 tells 101 x 101 pixels (0.999021) from 100 x 100 (0.999001) and from a bare 0.999
        answer,
        1 - 1 / (0.1 * 101 * 101 + 1),
        2e-6,
        "soft Dice loss = 1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1): here t = 0 everywhere and sum(p) = 0.1 x 10,201",
        "1 - 1 / 1,021.1 = 0.99902: a faint 10% everywhere costs almost the whole Dice loss an empty tile can have "
        "(BCE charges -ln 0.9 = 0.105 per pixel). Yet the Dice loss is nearly flat here: with S = sum(p) its slope "
        "is 1 / (S + 1)^2 = 1e-6 per unit of probability in a pixel, and its gradient per logit is about 110 times "
        "smaller than that of the mean BCE. BCE shrinks the faint prediction; Dice's pull grows as S falls (0.008 at "
        "S = 10, 0.25 at S = 1), so Dice is what drives the last few pixels to exactly empty, which the competition "
        "rewards.",
    )


def _tgs_one(answer) -> str:
    fn = _function(answer)
    from .metrics import tgs_score_per_image

    empty, square = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    square[2:6, 2:6] = 1  # 16 pixels

    half, three_quarters = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    half[2:4, 2:6] = 1  # 8 of the square's pixels, nothing else
    three_quarters[2:5, 2:6] = 1  # 12 of them

    def shifted(rows: int) -> np.ndarray:
        out = np.zeros((8, 8), np.uint8)
        out[2 + rows : 6 + rows, 2:6] = 1
        return out

    cases = [
        ("an empty truth predicted empty", empty, empty),
        ("an empty truth with salt predicted", square, empty),
        ("salt predicted as empty", empty, square),
        ("a perfect outline", square, square),
        ("an outline one row off (IoU 12/20 = 0.6)", shifted(1), square),
        ("an outline two rows off (IoU 8/24 = 0.33)", shifted(2), square),
        ("half of the salt found (IoU 8/16 = 0.5, on the first threshold)", half, square),
        ("three quarters of the salt found (IoU 12/16 = 0.75, on a threshold)", three_quarters, square),
    ]
    for what, pred, truth in cases:
        try:
            got = fn(pred.copy(), truth.copy())
        except NotImplementedError:
            raise NotYet("the function still raises NotImplementedError: write its body") from None
        expected = float(tgs_score_per_image(pred[None], truth[None])[0])
        if not isinstance(got, (int, float, np.floating, np.integer)) or abs(float(got) - expected) > 1e-9:
            raise NotYet(
                f"for {what} the score is {expected}, got {got!r}. With an empty truth the tile scores 1 if nothing "
                "is predicted and 0 otherwise; else IoU = |P and T| / |P or T| and the score is the share of the "
                "thresholds 0.5, 0.55, ..., 0.95 that the IoU is strictly above (an IoU of exactly 0.5 "
                "scores 0)"
            )
    return (
        "an empty truth is all or nothing (any predicted salt scores 0, which is why the minimum area of notebook 05 "
        "helps); otherwise the mean of [IoU > t] over the ten thresholds."
    )


def _hflip_tta(answer) -> str:
    fn = _function(answer)
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        try:
            got = fn(net, x)
        except NotImplementedError:
            raise NotYet("the function still raises NotImplementedError: write its body") from None
        expected = (torch.sigmoid(net(x)) + torch.sigmoid(net(x.flip(-1))).flip(-1)) / 2
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            raise NotYet("return probabilities of the same shape as the model's output")
        if torch.allclose(got, (torch.sigmoid(net(x)) + torch.sigmoid(net(x.flip(-1)))) / 2, atol=1e-6):
            raise NotYet("mirror the second prediction back (.flip(-1)) before averaging, or the two don't line up")
        if not torch.allclose(got, expected, atol=1e-6):
            raise NotYet("average sigmoid(model(x)) and sigmoid(model(x.flip(-1))).flip(-1)")
    return "each prediction is turned into probabilities, the mirrored one mirrored back, then both averaged."


def _zero_skip_hook(answer) -> str:
    fn = _function(answer)
    from .models import UNet

    torch.manual_seed(0)
    model = UNet(1, 1, (4, 8), padding="same").eval()
    x = torch.rand(1, 1, 16, 16)
    handle = model.decoders[0].register_forward_pre_hook(fn)
    try:
        with torch.no_grad():
            got = model(x)
    except NotImplementedError:
        raise NotYet("the hook still raises NotImplementedError: write its body") from None
    except Exception as err:
        raise NotYet(f"the hook failed inside the model: {type(err).__name__}: {err}") from None
    finally:
        handle.remove()
    with torch.no_grad():
        skip = model.encoders[0](x)
        below = model.bottleneck(model.pool(skip))
        expected = model.head(model.decoders[0](below, torch.zeros_like(skip)))
    if not torch.allclose(got, expected, atol=1e-6):
        raise NotYet("a forward pre-hook gets (module, args) with args = (x, skip); return (x, torch.zeros_like(skip))")
    return "a pre-hook may return new arguments: the decoder then sees zeros where the encoder's features were."


def _heun_step(answer) -> str:
    fn = _function(answer)
    calls = []

    def velocity_fn(x: torch.Tensor, t: float) -> torch.Tensor:  # a field that bends: it depends on x and on t
        calls.append(t)
        return x * (1 + t)

    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 4)
    try:
        got = fn(velocity_fn, x, 0.6, 0.5)
    except NotImplementedError:
        raise NotYet("the function still raises NotImplementedError: write its body") from None
    except Exception as err:
        raise NotYet(f"the function failed: {type(err).__name__}: {err}") from None
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        raise NotYet("return a tensor of x's shape: the pairs one step closer to the data")
    dt, v = -0.1, x * 1.6
    euler = x + dt * v
    heun = x + dt * (v + euler * 1.5) / 2
    if torch.allclose(got, euler, atol=1e-6):
        raise NotYet(
            "that is Euler's step; Heun's goes on: the velocity again where the Euler step lands (x_euler, t_next), "
            "and the step taken with the mean of the two velocities"
        )
    if torch.allclose(got, x + dt * (v + x * 1.5) / 2, atol=1e-6):
        raise NotYet("the second velocity is read where the Euler step lands, velocity_fn(x_euler, t_next), not at x")
    if torch.allclose(got, x - dt * (v + (x - dt * v) * 1.5) / 2, atol=1e-6):
        raise NotYet("that steps towards the noise: t falls from 1 to 0, so x moves by (t_next - t) times a velocity")
    if not torch.allclose(got, heun, atol=1e-6):
        raise NotYet(
            "Heun's step: v1 = velocity_fn(x, t); x_euler = x + (t_next - t) v1; v2 = velocity_fn(x_euler, t_next); "
            "return x + (t_next - t) (v1 + v2) / 2"
        )
    if len(calls) != 2:
        raise NotYet(f"the right numbers, with {len(calls)} calls of velocity_fn: one step needs exactly two")
    return (
        "Heun's step calls the network twice, and its error per step shrinks with the cube of the step where Euler's "
        "shrinks with the square: on a curved path it reaches the same tiles in fewer calls. The EDM sampler of "
        "Karras et al. (2022) is built on it; sample() keeps Euler's one call a step, the simplest to read."
    )


EXERCISES: dict[str, Exercise] = {
    "01.1": Exercise(
        "the multiply-accumulates of level 2 of the paper's network for a 572x572 input: enc2_conv1, enc2_conv2, up2, "
        "dec2_conv1 and dec2_conv2",
        _level_macs,
    ),
    "01.2": Exercise(
        "the receptive field (in input pixels) of one output pixel of a 3-level U-Net, UNet(1, 2, (64, 128, 256))",
        _receptive_field_3,
    ),
    "01.3": Exercise(
        "the output side of the paper's network for its smallest input, 188x188",
        lambda a: _number(
            a,
            4,
            "Follow 188 down (conv -2, conv -2, pool /2 at each level) and back up (up-conv x2, conv -2, conv -2).",
            "188 -> 184 -> 92 -> 88 -> 44 -> 40 -> 20 -> 16 -> 8 -> 4 at the bottom, "
            "then 8 -> 4, 8 -> 4, 8 -> 4, 8 -> 4: the output is 4x4.",
        ),
    ),
    "02.1": Exercise(
        "level_forward(level, x): the forward pass of one UNetLevel, written as the recursion", _level_forward
    ),
    "02.2": Exercise(
        "how many parameters the 1x1 output convolution of UNet(3, 1, (16, 32, 64)) has",
        lambda a: _number(
            a, 17, "It maps the 16 features of each pixel to 1 logit, with a bias.", "16 weights + 1 bias = 17."
        ),
    ),
    "03.1": Exercise("the Kaggle run-length string of the 4x4 mask [[0,0,1,0],[1,0,0,0],[1,1,0,0],[0,1,0,0]]", _rle),
    "03.2": Exercise(
        "the side to reflect-pad 101x101 tiles to for a same-padding U-Net with 4 poolings",
        lambda a: _number(
            a,
            112,
            "Each pooling halves: the side must be a multiple of 2 ** 4 = 16, and at least 101 (padding only adds "
            "pixels): the smallest such multiple.",
            "112 = 7 x 16 is the smallest multiple of 16 above 101.",
        ),
    ),
    "04.1": Exercise(
        "a soft Dice loss: dice_loss(logits, target) -> the mean over the batch of 1 - soft Dice", _dice_loss
    ),
    "04.2": Exercise(
        "the soft Dice loss (smooth 1) of an empty 101x101 tile when the network predicts probability 0.1 everywhere",
        _empty_tile_dice,
    ),
    "05.1": Exercise("the competition's score of one tile from its masks: tgs_one(pred, truth)", _tgs_one),
    "05.2": Exercise("horizontal-flip TTA: hflip_tta(model, x) -> the averaged probabilities", _hflip_tta),
    "06.1": Exercise(
        "the bytes of float32 gradients each process hands to DDP's all-reduce per optimizer step for "
        "medium-reflect, UNet(3, 1, (16, 32, 64, 128), padding='same', padding_mode='reflect')",
        lambda a: _number(
            a,
            482_033 * 4,
            "One gradient per parameter (count them with models.count_parameters, or by hand), 4 bytes per float32.",
            "482,033 parameters x 4 bytes = 1,928,132 bytes, about 1.9 MB per step: small next to the activations, "
            "which is why data parallelism suits these U-Nets. (A ring all-reduce over N processes sends and receives "
            "2 (N - 1) / N times that per process: the same 1.9 MB with 2 processes, close to 3.9 MB with many.)",
        ),
    ),
    "06.2": Exercise(
        "the optimizer steps in one epoch of 2,400 tiles with global batch 32 on 2 processes",
        lambda a: _number(
            a,
            75,
            "Both processes take the same steps: count the global batches.",
            "2,400 / 32 = 75: adding processes makes each step cheaper, not more numerous.",
        ),
    ),
    "07.1": Exercise(
        "the theoretical receptive field of UNet(1, 1, (8, 16), padding='same'), by hand",
        lambda a: _number(
            a,
            18,
            "Walk the layers: a 3x3 conv adds 2 x jump, a 2x2 pool adds 1 x jump and "
            "doubles the jump, a 2x2 up-conv adds nothing and halves it.",
            "5 after two convs, 6 after the pool (jump 2), 6 + 4 + 4 = 14 at the bottom, "
            "then jump 1 again: 14 + 2 + 2 = 18.",
        ),
    ),
    "07.2": Exercise("a forward pre-hook for an UpBlock that replaces its skip connection by zeros", _zero_skip_hook),
    "08.1": Exercise(
        "the parameters an scSE block adds after a block of 64 channels (reduction 4, as in models.SCSE)",
        lambda a: _number(
            a,
            2_193,
            "Count the three 1x1 convolutions of SCSE(64), each with its bias: the channel gate squeezes 64 channels "
            "to 64 // 4 and back, the pixel gate maps 64 channels to 1.",
            "(64 x 16 + 16) + (16 x 64 + 64) + (64 + 1) = 2,193: 6% of a single 3x3 convolution from 64 to 64 "
            "channels (36,928). scSE is cheap in weights; what it adds is a gate per channel and per pixel.",
        ),
    ),
    "08.2": Exercise(
        "the parameters a hypercolumn head adds to UNet(3, 1, (32, 64, 128, 256, 512), padding='same')",
        lambda a: _number(
            a,
            448,
            "The head is a 1x1 convolution to one logit, with a bias. Without the hypercolumn it sees the top decoder "
            "level's 32 channels; with it, the output of every decoder level side by side (the bottleneck, 512 "
            "channels, is not a decoder level: its map goes up through the decoders).",
            "(256 + 128 + 64 + 32 + 1) - (32 + 1) = 448 parameters: almost nothing. A hypercolumn costs memory and "
            "time (every decoder level upsampled to the full side), not weights.",
        ),
    ),
    "08.3": Exercise(
        "the plain Lovasz hinge loss of an empty 2x2 tile whose logits are [-3, -1, 0.5, 2]",
        lambda a: _close(
            a,
            3.0,
            1e-6,
            "The hinge errors are 1 - logit x sign, the sign -1 for sediment: 1 + logit here. Then ask which of them "
            "the Lovasz gradient weighs when there is no salt at all.",
            "With no salt, the salt's IoU loss is 1 as soon as one pixel is called salt, and stays 1: only the "
            "largest error moves it, so the loss is 1 + 2 = 3 and the pixel at 0.5, also a false alarm, gets no "
            "gradient. The symmetric loss adds the sediment's IoU, in which every false alarm counts.",
        ),
    ),
    "09.1": Exercise(
        "the share of x_t's variance that is noise at t = 0.3, for data and noise of unit variance",
        lambda a: _close(
            a,
            0.3**2 / (0.7**2 + 0.3**2),
            1e-3,
            "x_t = (1 - t) x0 + t noise with independent parts: the variances add, each scaled by its "
            "coefficient squared.",
            "Var x_t = 0.7^2 + 0.3^2 = 0.58, of which 0.09 is noise: 15.5%. At t = 0.3 the tile still dominates; the "
            "two parts weigh the same at t = 0.5.",
            atol=0.001,  # 0.155, to three decimals, is right
        ),
    ),
    "09.2": Exercise("one Heun step of the sampler: heun_step(velocity_fn, x, t, t_next)", _heun_step),
    "09.3": Exercise(
        "the target velocity of one pair: a tile x0 = 1 noised with noise = -x0, seen at t = 0.5 as x_t = 0",
        lambda a: _close(
            a,
            -2.0,
            1e-6,
            "x_t = (1 - t) x0 + t noise with noise = -x0 gives x_t = (1 - 2t) x0, which is 0 at t = 0.5; the target "
            "is noise - x0. Give it as a multiple of x0 (x0 = 1).",
            "v = noise - x0 = -2 x0 at t = 0.5. But the same tile also reaches x_t = 0 at other times, with other "
            "noise: noise = -(1 - t) / t x0, and the target is then -x0 / t (-4 at t = 0.25, -1.33 at t = 0.75). "
            "Without t the network sees one input, x_t = 0, with targets from -1 to minus infinity, and can only "
            "predict their average; with t it knows which one. (Different tiles that give the same x_t at the same "
            "t are still one input with several targets: there the network learns their average, the velocity field "
            "that sampling follows.) For one pixel this ambiguity is exact; from a whole tile's x_t the noise level "
            "can mostly be read off, which is why denoisers without a time input can still work (Sun et al., 2025, "
            "'Is Noise Conditioning Necessary for Denoising Generative Models?'): the time input makes it explicit.",
        ),
    ),
}


def check(exercise: str, answer) -> bool:
    """Print whether ``answer`` to ``exercise`` (e.g. "01.1") is right, and why; return True when it is."""
    ok, message = verify(exercise, answer)
    print(("Right: " if ok else "Not yet: ") + message)
    return ok


def verify(exercise: str, answer) -> tuple[bool, str]:
    """(right?, explanation) for an answer; never raises for a wrong or broken answer."""
    if exercise not in EXERCISES:
        raise KeyError(f"no exercise {exercise!r}; they are {', '.join(EXERCISES)}")
    if answer is ... or answer is None:
        return False, f"exercise {exercise} is not answered yet: {EXERCISES[exercise].question}."
    try:
        return True, EXERCISES[exercise].verify(answer)
    except NotYet as err:
        return False, str(err)
    except Exception as err:  # the learner's code crashed: say how, don't stop the notebook
        return False, f"your answer raised {type(err).__name__}: {err}"
