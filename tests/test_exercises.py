"""The notebooks' exercises: every reference solution passes its check, and no check passes an empty or a typical wrong answer."""

import json
from pathlib import Path

import pytest
import torch

from unet_helpers.exercises import EXERCISES, check, verify
from unet_helpers.solutions import SOLUTIONS

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("0*.ipynb"))


def test_every_exercise_has_a_reference_solution():
    assert set(SOLUTIONS) == set(EXERCISES)


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_the_reference_solution_is_right(exercise, capsys):
    assert check(exercise, SOLUTIONS[exercise])
    assert capsys.readouterr().out.startswith("Right: ")


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
@pytest.mark.parametrize("empty", [..., None, 0, "", lambda *args: None])
def test_no_check_passes_an_empty_answer(exercise, empty):
    ok, message = verify(exercise, empty)
    assert not ok and message


def _raises(*args):
    raise NotImplementedError


WRONG = {
    "01.1": (35_960_815_616 + 3 * 200 * 200 * 128 * 256, "counts the up-convolution 4x"),
    "01.2": (40, "what the valid convolutions trim"),
    "01.3": (388, "Follow 188"),
    "02.1": (lambda level, x: level.encode(x), "run the inner U-Net"),
    "02.2": (16, "with a bias"),
    "03.1": ("3 1 5 2 9 1", "column-major"),
    "03.2": (104, "2 ** 4 = 16"),
    "04.1": (
        lambda logits, target: (
            1 - (2 * ((logits > 0) * target).sum() + 1) / ((logits > 0).sum() + target.sum() + 1)
        ).mean(),
        "no gradient",
    ),
    "04.2": (0.105, "sum(p) = 0.1 x 10,201"),
    "05.1": (lambda pred, truth: 1.0, "an empty truth the tile scores 1 if nothing is predicted"),
    "05.2": (lambda model, x: (torch.sigmoid(model(x)) + torch.sigmoid(model(x.flip(-1)))) / 2, "mirror the second"),
    "06.1": (482_033, "4 bytes per float32"),
    "06.2": (50, "global batches"),
    "07.1": (14, "Walk the layers"),
    "07.2": (lambda module, args: (torch.zeros_like(args[0]), args[1]), "return (x, torch.zeros_like(skip))"),
    "08.1": (64 * 16 + 16 * 64 + 64, "each with its bias"),
    "08.2": (960, "the bottleneck, 512"),
    "08.3": (1.125, "which of them"),
    "09.1": (0.3, "the variances add"),
    "09.2": (lambda velocity_fn, x, t, t_next: x + (t_next - t) * velocity_fn(x, t), "that is Euler's step"),
    "09.3": (2.0, "the target is noise - x0"),
}


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_a_typical_mistake_is_explained(exercise):
    answer, hint = WRONG[exercise]
    ok, message = verify(exercise, answer)
    assert not ok and hint in message


@pytest.mark.parametrize("exercise", ["02.1", "04.1", "05.1", "05.2", "07.2", "09.2"])
def test_an_unwritten_function_gets_a_hint_not_a_crash(exercise):
    ok, message = verify(exercise, _raises)
    assert not ok and "NotImplementedError" in message


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_ends_with_checked_exercises(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    number = notebook.stem[:2]
    asked = {key for key in EXERCISES if key.startswith(number + ".")}
    assert 2 <= len(asked) <= 4
    for key in asked:
        assert any(f'check("{key}"' in source for source in code), f"{notebook.name} does not check exercise {key}"
    headings = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## Exercises")
    ]
    assert headings and all(
        c["cell_type"] == "code" or "Exercise" in "".join(c["source"]) or "exercise" in "".join(c["source"])
        for c in cells[headings[-1] :]
    )


def _tgs_one_with_at_least(accumulate: bool):
    """05.1 answered with IoU >= threshold instead of strictly above; the thresholds built by adding 0.05 in a loop
    (0.6000000000000001 is then the third: an IoU of 0.6 passes the wrong test right) or exactly."""

    def score(pred, truth) -> float:
        if truth.sum() == 0:
            return float(pred.sum() == 0)
        iou = (pred & truth).sum() / (pred | truth).sum()
        thresholds, t = [], 0.5
        for k in range(10):
            thresholds.append(t if accumulate else 0.5 + 0.05 * k)
            t += 0.05
        return float(sum(iou >= threshold for threshold in thresholds) / 10)

    return score


@pytest.mark.parametrize("accumulate", [True, False])
def test_a_score_that_counts_an_iou_on_its_threshold_is_not_passed(accumulate):
    ok, message = verify("05.1", _tgs_one_with_at_least(accumulate))
    assert not ok and "strictly above" in message


@pytest.mark.parametrize("answer", [0.155, 0.1552, 0.09 / 0.58])
def test_a_rounded_answer_is_right_where_the_question_asks_for_a_share(answer):
    assert verify("09.1", answer)[0]
    assert not verify("09.1", 0.16)[0] and not verify("09.1", 0.15)[0]


@pytest.mark.parametrize(
    "layer_side_off",
    [
        284**2 - 282**2,  # enc2_conv1 counted at its input side (the pooled 284) instead of its output side
        (282**2 - 280**2) * 2,  # enc2_conv2 likewise (128 -> 128: twice the channels of enc2_conv1)
        (198**2 - 196**2) * 2,  # dec2_conv2 likewise
    ],
)
def test_a_layer_counted_at_its_input_side_is_not_passed(layer_side_off):
    """01.1's count is exact: a side off by 2 pixels moves it by only 0.2-0.5%, inside the old 0.5% tolerance."""
    ok, message = verify("01.1", 35_960_815_616 + layer_side_off * 128 * 64 * 9)
    assert not ok and "OUTPUT side" in message


def test_the_level_macs_explanation_adds_up():
    ok, message = verify("01.1", 35.96e9)  # a rounded float is still right
    terms = [float(t) for t in message.split(" = ")[0].split(" + ")]
    assert ok and terms == [5.86, 11.56, 1.31, 11.56, 5.66] and abs(sum(terms) - 35.96) < 0.015


@pytest.mark.parametrize(
    "answer",
    [
        lambda level, x: level(x),  # the package's recursion, not the learner's
        lambda level, x: level.decode(level.inner(level.pool(level.encode(x))), level.encode(x)),  # one level by hand
    ],
)
def test_02_1_needs_the_recursion_written_out(answer):
    ok, message = verify("02.1", answer)
    assert not ok and "write the recursion yourself" in message


@pytest.mark.parametrize(
    "answer, hint",
    [
        ("2 2 7 2 9 1", "merge runs"),  # the right mask, the run split where it wraps into the next column
        ("3 1 5 1 9 2 14 1", "along the rows"),  # row-major
        ("1 2 6 3", "from 0"),  # 0-indexed
        ("5 3 1 2", "column-major"),  # not a valid string at all
    ],
)
def test_03_1_says_which_convention_an_answer_broke(answer, hint):
    ok, message = verify("03.1", answer)
    assert not ok and hint in message


def test_03_1_ignores_spacing():
    assert verify("03.1", " 2  2 7 3 ")[0]


def test_03_2_hint_covers_a_multiple_of_16_that_is_not_the_smallest():
    ok, message = verify("03.2", 128)
    assert not ok and "smallest such multiple" in message


@pytest.mark.parametrize(
    "answer, right", [(0.99902, True), (1 - 1 / 1021.1, True), (0.999, False), (1 - 1 / 1001, False)]
)
def test_04_2_tells_101_pixels_from_100(answer, right):
    """1 - 1/1021.1 for a 101x101 tile; 1 - 1/1001 is a 100x100 one and 0.999 a guess."""
    assert verify("04.2", answer)[0] is right


@pytest.mark.parametrize(
    "exercise, answer", [("08.1", 2193.0), ("08.1", torch.tensor(2193)), ("08.3", torch.tensor(3.0))]
)
def test_a_whole_number_computed_as_a_float_or_a_tensor_is_accepted(exercise, answer):
    assert verify(exercise, answer)[0]
    assert not verify("08.1", 2193.5)[0]


def test_heuns_step_of_exercise_09_2_beats_eulers_at_the_same_number_of_network_calls():
    """What the exercise's answer says: on a bending path (dx/dt = x (1 + t), from t = 1 to 0) Heun's error falls with
    the square of the step over the whole path (Euler's with the step), so 10 Heun steps (20 calls) land nearer than
    20 Euler steps (20 calls)."""
    import math

    from unet_helpers.solutions import heun_step

    def velocity_fn(x, t):
        return x * (1 + t)

    def walk(step, n: int) -> float:
        x, times = torch.ones(1), torch.linspace(1, 0, n + 1)
        for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
            x = step(x, t, t_next)
        return abs(float(x) - math.exp(-1.5))  # the exact path: x(0) = x(1) exp(-(1 + 1/2))

    def euler(x, t, t_next):
        return x + (t_next - t) * velocity_fn(x, t)

    def heun(x, t, t_next):
        return heun_step(velocity_fn, x, t, t_next)

    assert walk(heun, 10) < walk(euler, 20) / 10
    assert 3.5 < walk(heun, 10) / walk(heun, 20) < 4.5  # second order: half the step, a quarter of the error
    assert 1.8 < walk(euler, 10) / walk(euler, 20) < 2.2  # first order: half the error
