"""The TGS Salt winners' levers as changes to the medium-strong recipe, and the table that measures them.

Each row is medium-strong with one change, written as the trainer's own command-line options
(``python -m unet_helpers.train --recipe medium-strong <options>``), so that a row trained in notebook 08 and a
row of ``benchmarks/levers.py`` are the same training. A *record* (``unet_helpers/records/levers-*.json``, written
by ``benchmarks/levers.py``) holds, for every row and seed, the held-out tgs_score and the baseline's score of the
same seed; :func:`summarise` turns it into the table: mean, spread, difference to the baseline, and whether that
difference is larger than its own spread.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from .data import TGSArrays
from .postprocess import choose_postprocessing
from .pretrained import predict_tiles, score_tiles
from .recipes import RECIPES, Recipe, make_datasets, run_recipe
from .train import parse_args, recipe_from_args, split_three_ways

RECORDS_DIR = Path(__file__).parent / "records"

ROWS: dict[str, list[str]] = {
    "baseline": [],
    "+ residual blocks": ["--block", "residual"],
    "+ scSE": ["--attention", "scse"],
    "+ hypercolumn head": ["--hypercolumn"],
    "+ bilinear upsampling": ["--upsample", "bilinear"],
    "+ symmetric Lovasz": ["--finetune-loss", "lovasz_symmetric"],
    "+ empty/non-empty head, deep supervision": ["--salt-head"],
    # its cycle length follows the budget (cycle_epochs): whole cycles, up to five, 10 epochs each at 50
    "+ cosine restarts, snapshots averaged": ["--scheduler", "cosine_restarts", "--snapshot-average"],
    # batch norm is what lets medium-strong train at 3e-3 (notebook 04): without it both stages train at a thirtieth
    # of medium-strong's rates, the fine-tune at a tenth of the main rate as in medium-strong (it had kept 3e-4)
    "- batch norm (lr 1e-4)": ["--no-batch-norm", "--lr", "1e-4", "--finetune-lr", "1e-5"],
    "- flips": ["--no-augment"],
    "- BCE + Dice (BCE alone)": ["--loss", "bce"],
    "- AdamW + cosine (Adam + plateau)": ["--optimizer", "adam", "--scheduler", "plateau"],
    "- Lovasz stage": ["--finetune-epochs", "0"],
    "- fifth level": ["--features", "16,32,64,128"],
}


# The table's split of the 3,000 labelled tiles, dealt by the seed: 70% training (2,100 tiles), 20% validation (600)
# and 10% held out (300). The trainer's own default validation share with ``--test-fraction 0.1``; medium-strong
# itself was trained on 80/10/10, so the table's baseline is its recipe on 300 fewer training tiles.
VAL_FRACTION, TEST_FRACTION = 0.2, 0.1
SPLIT = dict(val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION)  # as a record holds it


def record_split(record: dict) -> dict:
    """A record's split as {"val_fraction", "test_fraction"} (a record without one was dealt the table's split:
    ``benchmarks/levers.py`` has always used it)."""
    return record.get("split", SPLIT)


CYCLES, MIN_CYCLE = 5, 4  # cosine restarts: up to five cycles per main stage, each of at least 4 epochs


def _whole_cycles(epochs: int) -> int | None:
    """The most cycles, up to five, of at least 4 epochs each, that divide ``epochs`` (None where none do)."""
    return next((c for c in range(CYCLES, 1, -1) if epochs % c == 0 and epochs // c >= MIN_CYCLE), None)


def cycle_epochs(epochs: int) -> int:
    """The cycle length of the cosine-restart row at ``epochs`` main epochs: the main stage in whole cycles, as many
    as fit up to five, each of at least 4 epochs (50 -> 10, 8 -> 4, 12 -> 4).

    A cycle longer than the run would never restart and no snapshot would be averaged; a cycle of one epoch would
    never anneal (the rate steps once an epoch); and a run that is not whole cycles would end part way up a cycle,
    at a high rate. So it takes 8 main epochs to average two snapshots, and a budget of 8 or more that no such cycle
    divides (13) is refused. Below 8 (a smoke test) the run is one cycle, with nothing to average."""
    if epochs < 2 * MIN_CYCLE:
        return epochs
    cycles = _whole_cycles(epochs)
    if cycles:
        return epochs // cycles
    fitting = [e for e in range(max(epochs - 4, 2 * MIN_CYCLE), epochs + 5) if _whole_cycles(e)]
    raise ValueError(
        f"{epochs} main epochs do not divide into 2 to {CYCLES} cosine cycles of at least {MIN_CYCLE} epochs; "
        f"give the cosine-restart row a budget that does, e.g. {', '.join(map(str, fitting))}"
    )


def row_options(name: str, epochs: int | None = None) -> list[str]:
    """The trainer's options for row ``name`` at ``epochs`` main epochs (None: medium-strong's 50).

    A row with cosine restarts gets ``--cycle-epochs`` from the budget (:func:`cycle_epochs`): a fixed cycle would
    not fit every run's length.
    """
    if name not in ROWS:
        raise ValueError(f"unknown row {name!r}; the rows are: {', '.join(ROWS)}")
    options = list(ROWS[name]) + ([] if epochs is None else ["--epochs", str(epochs)])
    if "cosine_restarts" in options:
        main = epochs if epochs is not None else RECIPES["medium-strong"].epochs
        options += ["--cycle-epochs", str(cycle_epochs(main))]
    return options


def row_recipe(name: str, epochs: int | None = None) -> Recipe:
    """medium-strong with row ``name``'s change; ``epochs`` scales the schedule as the trainer's --epochs does."""
    return recipe_from_args(parse_args(["--recipe", "medium-strong", *row_options(name, epochs)]))


# ---------------------------------------------------------------------------
# Records and the table
# ---------------------------------------------------------------------------


def recorded_options(name: str, epochs: int) -> list[str]:
    """Row ``name``'s trainer options at ``epochs`` main epochs as a record holds them: :func:`row_options` without
    ``--epochs`` (the record's budget), with what follows from it (the cosine-restart row's ``--cycle-epochs``)."""
    options = row_options(name, epochs)
    k = options.index("--epochs")
    return options[:k] + options[k + 2 :]


def changed_rows(record: dict) -> list[str]:
    """The rows of ``record`` whose runs were trained with other options than the row has today at the record's
    budget (:func:`recorded_options`; each row of a record written since 2026-11-27 holds its ``options``, and a
    row without them is taken as unchanged)."""
    return [
        name
        for name, row in record["rows"].items()
        if "options" in row
        and name in ROWS
        and row["options"] != recorded_options(name, record["epochs"])
        and any(score is not None for score in row["scores"].values())
    ]


def without_changed_rows(record: dict) -> dict:
    """``record`` with the runs of its :func:`changed_rows` taken out (and their notes, which were about those
    runs): ``benchmarks/levers.py --previous`` trains them again with the row's options of today."""
    changed = changed_rows(record)
    rows = {
        name: {
            **{key: value for key, value in row.items() if key != "note"},
            "scores": {seed: None for seed in row["scores"]},
            "options": recorded_options(name, record["epochs"]),
            **({"calls": {seed: None for seed in row["calls"]}} if "calls" in row else {}),
        }
        if name in changed
        else row
        for name, row in record["rows"].items()
    }
    reruns = dict(record.get("baseline_reruns", {}))
    if "baseline" in changed:
        reruns = {seed: [None for _ in runs] for seed, runs in reruns.items()}
    return {**record, "rows": rows, "baseline_reruns": reruns}


def available_records() -> list[str]:
    """The names of the lever records that ship with the package."""
    return sorted(p.stem for p in RECORDS_DIR.glob("levers-*.json"))


def load_record(name: str) -> dict:
    """A lever record by name (see :func:`available_records`)."""
    path = RECORDS_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no lever record {name!r}; the records are: {', '.join(available_records()) or 'none'}")
    return json.loads(path.read_text())


def load_flagship_candidates() -> dict:
    """The flagship candidates (medium-strong with the winners' levers together) against the shipped medium-strong.

    ``held_out_ids`` are medium-strong's 300 held-out tiles, ``empty`` says which hold no salt, ``medium_strong`` is
    its tgs_score on each; every entry of ``candidates`` has its training (``label``, ``command``, ``device``,
    ``epochs_run``, ``val_history``), its validation scores (``val_tgs``) and its score on each of the same tiles
    (``per_tile``). Written by ``benchmarks/compare_held_out.py --record``. ``fold_averages`` (where there are any)
    are cross-validations, every fold's model averaged (:func:`add_fold_average`, written by
    ``benchmarks/ensemble_held_out.py --record``).
    """
    return json.loads((RECORDS_DIR / "flagship-candidates.json").read_text())


def load_split_gap(seed: int = 0) -> dict:
    """medium-strong's recipe scored after every epoch on its validation and held-out tiles, nothing chosen on either.

    ``seed`` is the training seed (initial weights, batches, flips); the split is medium-strong's for every seed.
    ``split_gap_seeds()`` lists the seeds measured.

    ``per_epoch`` holds each epoch's mean tgs_score on both sets (threshold 0.5, no minimum area, no TTA);
    ``validation_per_tile_last_epoch`` and ``held_out_per_tile_last_epoch`` every tile's score at the last epoch;
    ``validation_classes`` and ``held_out_classes`` every tile's salt-coverage class (``data.coverage_class``).
    Written by ``benchmarks/split_gap.py``.
    """
    path = RECORDS_DIR / f"split-gap-seed{seed}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no split-gap record for seed {seed}; the seeds measured are {split_gap_seeds()}")
    return json.loads(path.read_text())


def split_gap_seeds() -> list[int]:
    """The training seeds ``benchmarks/split_gap.py`` has a record for, in order."""
    return sorted(int(path.stem.removeprefix("split-gap-seed")) for path in RECORDS_DIR.glob("split-gap-seed*.json"))


def resplit_gaps(
    first: np.ndarray,
    second: np.ndarray,
    first_classes: np.ndarray,
    second_classes: np.ndarray,
    draws: int = 10_000,
    seed: int = 0,
) -> np.ndarray:
    """Mean of ``first`` minus mean of ``second`` (per-tile scores) after ``draws`` random re-splits of their tiles.

    The tiles of both sets are pooled and dealt out again at random, each coverage class giving each side as many
    tiles as it gave before (the split being tested was stratified the same way). How often a re-split's gap is as
    large as the real one says how unusual the real split is, if the two sets were drawn alike. Returns (draws,).
    """
    scores = np.concatenate([first, second]).astype(float)
    classes = np.concatenate([first_classes, second_classes])
    on_first_side = np.concatenate([np.ones(len(first), bool), np.zeros(len(second), bool)])
    rng = np.random.default_rng(seed)
    gaps = np.empty(draws)
    for k in range(draws):
        side = on_first_side.copy()
        for c in np.unique(classes):  # deal each class's tiles out again, its count on each side kept
            members = np.flatnonzero(classes == c)
            side[members] = rng.permutation(on_first_side[members])
        gaps[k] = scores[side].mean() - scores[~side].mean()
    return gaps


def add_flagship_candidate(
    record: dict | None,
    label: str,
    card: dict,
    ids: list[str],
    empty: np.ndarray,
    medium_strong: np.ndarray,
    scores: np.ndarray,
) -> dict:
    """The flagship record (see :func:`load_flagship_candidates`) with one candidate added, or replaced if ``label``
    is already there; a new record when ``record`` is None.

    ``card`` is the candidate's card (``pretrained.export``), ``ids`` medium-strong's held-out tiles, ``empty`` which
    of them hold no salt, ``medium_strong`` and ``scores`` both models' tgs_score on each of them.
    Raises ``ValueError`` when ``record`` was scored on other tiles (its candidates would not be comparable).
    """
    if record is None:
        record = dict(
            what="flagship candidates (medium-strong with the winners' levers) against the shipped medium-strong, "
            "tile by tile on medium-strong's 300 held-out tiles (benchmarks/compare_held_out.py --record)",
            held_out_ids=list(ids),
            empty=[bool(e) for e in empty],  # tiles without salt
            medium_strong=[round(float(s), 1) for s in medium_strong],  # one of 0, 0.1, ..., 1: ten IoU thresholds
            candidates=[],
        )
    elif record["held_out_ids"] != list(ids):
        raise ValueError("its candidates were scored on other held-out tiles; write this one to a new record")
    entry = dict(
        label=label,
        command=card["training"]["command"],
        device=card["training"]["device"],
        epochs_run=card["training"]["epochs_run"],
        main_epochs=card["recipe"]["epochs"],
        cycle_epochs=card["recipe"].get("cycle_epochs"),
        training_minutes=round(card["training"]["wall_time_s"] / 60, 1),
        chosen_checkpoint=card["training"]["chosen_checkpoint"],
        val_tgs=card["postprocessing"]["val_tgs"],
        held_out_tgs=round(float(np.mean(scores)), 4),
        # the held-out score at threshold 0.5 without TTA: how much the post-processing chosen on validation gave there
        held_out_plain=card.get("held_out", {}).get("plain_at_0_5_without_tta"),
        # validation in float32 and with the shipped float16 weights (and before a fix of the export, where there was one)
        weights={k: v for k, v in card.get("weights", {}).items() if k.startswith(("val_tgs", "kept", "before"))},
        val_history=[round(float(v), 4) for v in card["history"]["val_tgs"]],
        per_tile=[round(float(s), 1) for s in scores],
    )
    candidates = [c for c in record["candidates"] if c["label"] != label] + [entry]
    return {**record, "candidates": candidates}


def add_fold_average(
    record: dict,
    label: str,
    cards: list[dict],
    folds: list[dict],
    out_of_fold: dict,
    ids: list[str],
    scores: np.ndarray,
) -> dict:
    """The flagship record (see :func:`load_flagship_candidates`) with the average of a cross-validation's models
    added under ``fold_averages``, or replaced if ``label`` is already there.

    ``cards`` are the folds' cards (``pretrained.export``), in fold order; ``folds`` holds, per fold, its own fold's
    size and tgs_score (``val_tiles``, ``own_fold_tgs``), its held-out score alone (``held_out_tgs``), each with the
    post-processing chosen on its own fold, and its score on each held-out tile (``per_tile``); ``out_of_fold`` the
    post-processing chosen on every tile's out-of-fold prediction (``tiles``, ``tgs``, ``threshold``, ``min_area``);
    ``scores`` the average's tgs_score on each of the held-out tiles ``ids``. Raises ``ValueError`` when the record
    was scored on other tiles.
    """
    if record["held_out_ids"] != list(ids):
        raise ValueError("its candidates were scored on other held-out tiles; these folds hold out others")
    entry = dict(
        label=label,
        command=cards[0]["training"]["command"],  # fold 0's; fold K's differs only in its --fold
        device=f"{cards[0]['training']['device']} (torch {cards[0].get('torch', '?')})",
        folds=[
            dict(
                fold=k,
                **{key: fold[key] for key in ("val_tiles", "own_fold_tgs", "held_out_tgs", "per_tile")},
                epochs_run=card["training"]["epochs_run"],
                training_minutes=round(card["training"]["wall_time_s"] / 60, 1),
                chosen_checkpoint=card["training"]["chosen_checkpoint"],
                val_ids=card["data"]["val_ids"],  # its fold: the tiles it validated on and did not train on
            )
            for k, (card, fold) in enumerate(zip(cards, folds))
        ],
        out_of_fold=out_of_fold,
        held_out_tgs=round(float(np.mean(scores)), 4),
        per_tile=[round(float(s), 1) for s in scores],
    )
    averages = [a for a in record.get("fold_averages", []) if a["label"] != label] + [entry]
    return {**record, "fold_averages": averages}


def summarise(record: dict) -> list[dict]:
    """One dict per row of a record, in the record's order.

    ``scores`` are the row's held-out tgs_scores per seed; ``differences`` subtract, seed by seed, the baseline
    of the same seed (and the same run of the benchmark). A row's ``note`` (e.g. why it is not a test) is kept. ``real`` says whether the mean difference is larger than
    the spread (standard deviation) of the differences, the rule the lever table uses (None for the baseline and for
    a row measured on one seed so far); ``difference_seeds`` says which seed each difference is; ``p`` is the two-sided
    paired t-test of the same differences, which says how little two or three seeds can show.
    """
    table = []
    for name, row in record["rows"].items():
        seeds = [s for s in row["scores"] if row["scores"][s] is not None]
        scores = [row["scores"][s] for s in seeds]
        compared = [s for s in seeds if row["baselines"].get(s) is not None]
        differences = [row["scores"][s] - row["baselines"][s] for s in compared]
        entry = dict(name=name, seeds=len(scores), scores=scores, differences=differences, note=row.get("note"))
        entry["difference_seeds"] = [int(s) for s in compared]  # which seed each difference is
        entry["mean"] = statistics.mean(scores) if scores else math.nan
        entry["sd"] = statistics.stdev(scores) if len(scores) > 1 else math.nan
        entry["difference"] = statistics.mean(differences) if differences else math.nan
        entry["difference_sd"] = statistics.stdev(differences) if len(differences) > 1 else math.nan
        baseline = name == "baseline"
        # no verdict for the baseline, nor for a row with one seed so far: one difference has no spread
        entry["real"] = (
            None if baseline or len(differences) < 2 else bool(abs(entry["difference"]) > entry["difference_sd"])
        )
        spread = entry["difference_sd"]
        entry["p"] = (
            math.nan
            if baseline or len(differences) < 2 or not spread > 0
            else float(stats.ttest_1samp(differences, 0.0).pvalue)
        )
        table.append(entry)
    return table


def against_other_runs(record: dict) -> dict:
    """The same record with every row compared with the *other* run of its seed's baseline, where the baseline ran
    twice (``baseline_reruns``, {seed: [score, score]}): just as valid a reference, so a verdict that changes with
    it is a verdict about the noise."""
    reruns = record.get("baseline_reruns", {})

    def other(seed: str, value: float) -> float:
        runs = reruns.get(seed)
        if not runs or len(runs) < 2 or None in runs[:2]:
            return value
        return runs[1] if value == runs[0] else runs[0]

    rows = {
        name: {**row, "baselines": {seed: other(seed, value) for seed, value in row["baselines"].items()}}
        for name, row in record["rows"].items()
    }
    return {**record, "rows": rows}


def rerun_gaps(record: dict) -> dict[str, float]:
    """{seed: |first - second|} for every seed whose baseline ran twice: what the same command gave twice."""
    return {
        seed: abs(runs[0] - runs[1])
        for seed, runs in record.get("baseline_reruns", {}).items()
        if len(runs) > 1 and None not in runs[:2]
    }


def known_score(record: dict, name: str, seed: int | str, run: int = 0) -> float | None:
    """The held-out score a record already holds for row ``name``, ``seed`` and ``run`` (run 1, 2, ... are the
    baseline's reruns), or None: what :func:`merge_records` and ``benchmarks/levers.py --previous`` skip."""
    seed = str(seed)
    if run == 0:
        return record["rows"].get(name, {}).get("scores", {}).get(seed)
    runs = record.get("baseline_reruns", {}).get(seed, []) if name == "baseline" else []
    return runs[run] if run < len(runs) else None


def merge_records(parts: list[dict]) -> dict:
    """One lever record from the parts of one table measured in several sessions (a GPU loan of 15 minutes holds
    a few of its runs at 50 + 15 epochs, not 45 of them).

    The parts must share the budget (main and fine-tune epochs). Each run's score comes from the first part
    that holds it. A row keeps the baseline of its own part where that part ran one for the seed (the same
    machine and call, the comparison the benchmark makes), else it takes the first baseline run of that seed.
    Where every part names its command, each row also gets ``calls``: {seed: the index, in the merged record's
    ``command`` (its commands joined by "; "), of the call that trained that run, or None where no part knows}, so
    that a reader can tell a difference measured within one call from one measured across calls (and loans).
    """
    if not parts:
        raise ValueError("no records to merge")
    splits = {tuple(record_split(part).values()) for part in parts}
    if len(splits) > 1:
        raise ValueError(
            f"the parts dealt different splits (validation, held-out shares) {sorted(splits)}: each seed's baseline "
            "is a reference only for runs on its own tiles; merge each split's parts on their own"
        )
    budgets = {(part["epochs"], part["finetune_epochs"]) for part in parts}
    if len(budgets) > 1:
        raise ValueError(
            f"the parts were trained for different budgets (main, fine-tune epochs) {sorted(budgets)}: only runs "
            "of one budget belong in one table; merge each budget's parts on their own"
        )

    def joined(key: str) -> str:  # a part that is itself a merge holds "a; b": each item once, in order
        return "; ".join(dict.fromkeys(item for part in parts if part.get(key) for item in str(part[key]).split("; ")))

    names = list(dict.fromkeys(name for part in parts for name in part["rows"]))
    seeds = sorted({int(seed) for part in parts for seed in part["seeds"]})
    rows: dict[str, dict] = {name: {"scores": {}, "baselines": {}} for name in names}
    commands = joined("command").split("; ") if all(part.get("command") for part in parts) else None
    calls: dict[str, dict] = {name: {} for name in names}
    options: dict[str, set] = {}  # the options each row's measured runs were trained with
    for part in parts:
        own_commands = str(part.get("command")).split("; ")
        for name, row in part["rows"].items():
            for seed, score in row["scores"].items():
                if score is not None and rows[name]["scores"].get(seed) is None:
                    rows[name]["scores"][seed] = score
                    rows[name]["baselines"][seed] = row["baselines"].get(seed)
                    if commands is not None and "calls" not in row:  # a part that does not say: its last call's
                        calls[name][seed] = commands.index(own_commands[-1])
                    elif commands is not None:  # an index into the part's own commands, or None: not known
                        own = row["calls"].get(seed)
                        calls[name][seed] = None if own is None else commands.index(own_commands[own])
            if row.get("note") and "note" not in rows[name]:
                rows[name]["note"] = row["note"]
            if "options" in row and any(score is not None for score in row["scores"].values()):
                options.setdefault(name, set()).add(tuple(row["options"]))
    mixed = {name: sorted(found) for name, found in options.items() if len(found) > 1}
    if mixed:
        raise ValueError(
            f"the parts trained rows with different options {mixed}: one row of a table is one training; take the "
            "runs of a changed row out of the older parts first (without_changed_rows)"
        )
    for name in names:  # a row no part has measured yet keeps the options the latest part names
        named = [part["rows"][name]["options"] for part in parts if "options" in part["rows"].get(name, {})]
        if name in options or named:
            rows[name]["options"] = list(next(iter(options[name]))) if name in options else named[-1]
    baseline_scores = rows.get("baseline", {"scores": {}})["scores"]
    for row in rows.values():
        row["scores"] = {str(s): row["scores"].get(str(s)) for s in seeds}
        row["baselines"] = {
            str(s): row["baselines"].get(str(s))
            if row["baselines"].get(str(s)) is not None
            else baseline_scores.get(str(s))
            for s in seeds
        }
    if commands is not None:
        for name, row in rows.items():
            row["calls"] = {str(s): calls[name].get(str(s)) for s in seeds}

    def first_known(seed: str, run: int) -> float | None:
        return next((score for p in parts if (score := known_score(p, "baseline", seed, run)) is not None), None)

    reruns: dict[str, list] = {}
    for seed in map(str, seeds):
        runs = max(len(part.get("baseline_reruns", {}).get(seed, [])) for part in parts)
        if runs > 1:  # None where a run is still to come
            reruns[seed] = [first_known(seed, run) for run in range(runs)]
    merged = {key: value for key, value in parts[0].items() if key not in ("rows", "baseline_reruns")}
    merged.update(
        split=record_split(parts[0]),
        device=joined("device"),
        date=joined("date"),
        command=joined("command"),
        seeds=seeds,
        # one command per part: a part that is a merge of the ones before it (levers.py --previous) is not counted twice
        parts=len(commands) if commands is not None else len(parts),
        rows=rows,
        baseline_reruns=reruns,
    )
    return merged


def markdown_table(table: list[dict]) -> str:
    """The table of :func:`summarise` in Markdown, one row a line (as ``benchmarks/levers.py`` writes it)."""
    lines = [
        "| row | held-out tgs_score (mean +- sd) | difference to baseline (mean +- sd) | beyond its spread? | paired t-test p |",
        "|---|---|---|---|---|",
    ]
    for row in table:
        real = "-" if row["real"] is None else ("yes" if row["real"] else "no")
        p = "-" if math.isnan(row["p"]) else f"{row['p']:.2f}"
        lines.append(
            f"| {row['name']} | {row['mean']:.3f} +- {row['sd']:.3f} | {row['difference']:+.3f} +- "
            f"{row['difference_sd']:.3f} | {real} | {p} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# One row, trained and scored as the benchmark does it
# ---------------------------------------------------------------------------


def train_row(
    name: str,
    arrays: TGSArrays,
    run_dir: str | Path,
    device: torch.device,
    seed: int = 0,
    epochs: int | None = None,
    limit_train: int | None = None,
    tta: bool | None = None,
    progress: bool = True,
) -> dict:
    """Train row ``name`` on ``arrays`` (the table's 70/20/10 split by ``seed``) and score it as the benchmark does.

    As ``pretrained export`` does for the benchmark, flip TTA (``tta=None``: with it or without, whichever scores
    better), the threshold and the minimum area are chosen on the validation tiles, then the held-out tiles are
    scored once. Two differences do not change what is chosen: the held-out tiles are scored with the float32
    weights (the export ships and scores them rounded to float16), and each step is launched kernel by kernel (the
    benchmark's trainer replays it as a CUDA graph on a GPU). ``limit_train`` keeps the first tiles of the training
    part only (a short demonstration). Returns dict(val_tgs, held_out_tgs, empty_baseline, threshold, min_area,
    tta, history, recipe). Runs resume from ``run_dir``.
    """
    recipe = row_recipe(name, epochs)
    train_ids, val_ids, test_ids = split_three_ways(arrays, VAL_FRACTION, TEST_FRACTION, seed)
    train_ds, val_ds = make_datasets(recipe, arrays, train_ids[:limit_train], val_ids)
    model, history = run_recipe(recipe, train_ds, val_ds, run_dir, device, seed=seed, progress=progress, verbose=False)
    val, test = arrays.subset(val_ids), arrays.subset(test_ids)
    choices = {
        flip: choose_postprocessing(predict_tiles(model, recipe.config(), val, device, tta=flip), val.masks)
        for flip in ((False, True) if tta is None else (tta,))
    }
    tta = choices[True]["score"] > choices[False]["score"] if tta is None else tta  # a tie: without, as export
    chosen = choices[tta]
    held_out = score_tiles(
        predict_tiles(model, recipe.config(), test, device, tta=tta),
        test.masks,
        chosen["threshold"],
        chosen["min_area"],
    )
    return dict(
        val_tgs=round(chosen["score"], 4),
        held_out_tgs=held_out["tgs"],
        empty_baseline=held_out["empty_baseline"],
        threshold=chosen["threshold"],
        min_area=chosen["min_area"],
        tta=tta,
        history=history,
        recipe=recipe,
    )


def per_tile_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Counts of tiles where score ``b`` beats, ties and loses to score ``a`` (per-tile tgs_scores, same tiles)."""
    d = np.asarray(b) - np.asarray(a)
    return dict(wins=int((d > 0).sum()), ties=int((d == 0).sum()), losses=int((d < 0).sum()), mean=float(d.mean()))


def bootstrap_interval(differences: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The paired bootstrap's 95% interval of a mean per-tile difference: draw the tiles again with replacement
    ``resamples`` times, take the mean difference of each draw, and keep the middle 95% of those means.

    It measures how much the mean moves with the choice of tiles alone (not with another seed of training).
    """
    d, rng = np.asarray(differences), np.random.default_rng(seed)
    means = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(resamples)]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
