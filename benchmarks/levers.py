"""What each of the TGS Salt winners' levers is worth, one at a time, against one baseline, with seed-to-seed spread.

    python benchmarks/levers.py --data data/tgs-salt --out runs/levers                 # every row, 3 seeds each
    python benchmarks/levers.py --data data/tgs-salt --out runs/levers --parallel 4    # 4 runs side by side (a GPU)
    python benchmarks/levers.py ... --only "+ scSE" --seeds 0 1                     # some rows
    python benchmarks/levers.py ... -- --epochs 2 --limit-train 64                    # anything after -- goes to the trainer
    python benchmarks/levers.py ... --previous part1.json part2.json                  # the table's next part

Every row is the baseline recipe (medium-strong) with one change: a lever added (residual blocks, scSE, a
hypercolumn head, bilinear upsampling, the symmetric Lovasz loss, an empty/non-empty head trained beside the
mask, cosine restarts with snapshot averaging) or a
part of the recipe taken away (batch norm, flips, BCE + Dice, AdamW + cosine, the Lovasz stage, the fifth level).
Every row of a seed trains on that seed's split (70% training, 20% validation, 10% held out:
``levers.VAL_FRACTION`` and ``TEST_FRACTION``; the seed deals the split, so each seed's baseline is its own
reference), then ``pretrained export`` chooses the post-processing on the
validation tiles and scores the held-out ones once. The baseline runs twice per seed (``--baseline-runs``), so the
record holds how far the same command lands from itself. The table gives, per row, the mean held-out tgs_score, its
spread over seeds (standard deviation) and the mean of the per-seed differences to the baseline. A difference is
called real only when it is larger than the spread of those differences. Runs resume (``--resume``), so an
interrupted table continues where it stopped. A table too long for one session (at 50 + 15 epochs, 45 runs
are more than a GPU loan of 15 minutes holds) is measured in parts: ``--previous`` names the records of the
parts before, their runs are not trained again, and this part's record holds them all
(``levers.merge_records``). Writes ``table.md`` and ``results.json`` (a record, the rows'
scores; notebook 08 reads the ones copied to ``unet_helpers/records/``) under ``--out``. The rows themselves are
``unet_helpers.levers.ROWS``, so the notebook trains a row exactly as this script does.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from unet_helpers.levers import (
    ROWS,
    SPLIT,
    TEST_FRACTION,
    VAL_FRACTION,
    changed_rows,
    known_score,
    markdown_table,
    merge_records,
    record_split,
    recorded_options,
    row_options,
    row_recipe,
    summarise,
    without_changed_rows,
)

ROOT = Path(__file__).resolve().parents[1]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def run_dir(name: str, seed: int, args: argparse.Namespace, repeat: int = 0) -> Path:
    return args.out / slug(name) / (f"seed{seed}" + (f"-run{repeat + 1}" if repeat else ""))


def train_command(name: str, seed: int, args: argparse.Namespace, extra: list[str], repeat: int = 0) -> list[str]:
    command = [sys.executable, "-m", "unet_helpers.train", "--data", str(args.data), "--recipe", "medium-strong"]
    # the trainer options after -- change the baseline, so they come first: the row's own change comes after them
    # and wins (the last of an option counts), or "- Lovasz stage" given --finetune-epochs 15 would be the baseline
    command += extra + (["--device-batches"] if args.device_batches else [])
    command += row_options(name, epochs_of(extra)) + ["--seed", str(seed)]
    command += ["--val-fraction", str(VAL_FRACTION), "--test-fraction", str(TEST_FRACTION)]  # as levers.train_row
    command += ["--out", str(run_dir(name, seed, args, repeat))]
    return command + ["--resume", "--no-progress", "--processes", "1"]


def epochs_of(extra: list[str], option: str = "--epochs") -> int | None:
    """The main (or with ``option="--finetune-epochs"`` fine-tune) epochs given to the trainer after ``--``
    (None: the recipe's own), written ``--epochs 8`` or ``--epochs=8``; the last one counts, as for the trainer."""
    value = None
    for k, item in enumerate(extra):
        if item == option and k + 1 < len(extra):
            value = int(extra[k + 1])
        elif item.startswith(option + "="):
            value = int(item.split("=", 1)[1])
    return value


def card_path(name: str, seed: int, args: argparse.Namespace, repeat: int = 0) -> Path:
    """Where ``pretrained export`` writes the run's card: once it exists, the run is trained and scored."""
    return run_dir(name, seed, args, repeat) / "card" / "medium-strong.json"


def export_command(name: str, seed: int, args: argparse.Namespace, repeat: int = 0) -> list[str]:
    """``pretrained export``: post-processing chosen on the run's validation tiles, its held-out tiles scored once."""
    run = run_dir(name, seed, args, repeat)
    command = [sys.executable, "-m", "unet_helpers.pretrained", "export", "--run", str(run), "--data", str(args.data)]
    command += ["--out-dir", str(run / "card"), "--name", "medium-strong", "--overwrite"]
    return command + ["--device", "cuda" if torch.cuda.is_available() else "cpu"]


MARGIN = 1.1  # a training is started near the deadline only if 1.1 times the longest one so far still fits


def label(name: str, seed: int, repeat: int = 0) -> str:
    return f"{name}, seed {seed}{f', run {repeat + 1}' if repeat else ''}"


class Runner:
    """Trains runs ``parallel`` at a time and exports each one as soon as it is trained, beside the trainings that
    follow: an export (tens of seconds, mostly the CPU's) never holds a training slot, so a GPU keeps ``parallel``
    runs training. Near the deadline it starts no training that would not finish by it (judged by the longest this
    call has trained, with a margin): on a lent GPU a run cut off at the deadline of a loan's last call is lost with
    the machine, and the call ends sooner instead. At the deadline it stops every training, but lets a run whose
    training has finished be exported: on a fresh machine next time, a trained run that was not exported would have
    to be trained again. A job that fails is reported and the others go on, so the part's table is still written."""

    def __init__(self, args: argparse.Namespace, extra: list[str], previous: dict | None = None) -> None:
        self.args, self.extra, self.previous, self.lock = args, extra, previous, threading.Lock()
        self.training: set[subprocess.Popen] = set()  # the processes stop() ends (exports run to their end)
        self.started, self.stopped = time.perf_counter(), False
        self.exports: ThreadPoolExecutor | None = None  # run() opens it; job() hands it each trained run
        self.durations: list[float] = []  # seconds each training of this call took, start to finish
        self.left: list[str] = []  # the runs not started, as they would not have finished by the deadline
        self.done_before: set[tuple[str, int, int]] = set()  # runs an earlier call trained in the same --out
        self.failures = 0  # runs that failed in training, in export or with an error
        self.deadline: float | None = getattr(args, "deadline", None)
        self.env = dict(os.environ)
        if args.parallel > 1:  # each process its share of the cores (up to `parallel` trainings and as many exports
            # at once), so that side-by-side processes do not slow each other down
            self.env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // (2 * args.parallel))))

    def _call(self, command: list[str], log: Path, training: bool = True) -> int | None:
        """The command's exit code; None for a training not started because the deadline has passed."""
        with self.lock:
            if self.stopped and training:
                return None
            with open(log, "a") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
            if training:
                self.training.add(process)
        code = process.wait()
        with self.lock:
            self.training.discard(process)
        return code

    def run(self, jobs: list[tuple[str, int, int]]) -> int:
        """Every (row, seed, repeat) job trained and exported; returns, once the last export has finished, how many
        runs failed (in training, in export or with an error; each is printed)."""
        try:
            with ThreadPoolExecutor(max_workers=self.args.parallel) as self.exports:
                with ThreadPoolExecutor(max_workers=self.args.parallel) as training:
                    list(training.map(lambda job: self.guarded(self.job, *job), jobs))
        finally:
            self.exports = None
        if self.left:
            self.say(
                f"{len(self.left)} runs not started, as they would not have finished by the deadline (a run took up "
                f"to {max(self.durations):.0f} s): {'; '.join(self.left)}. The next part trains them."
            )
        return self.failures

    def guarded(self, step, name: str, seed: int, repeat: int = 0) -> None:
        """``step`` (``job`` or ``export``), an error in it reported as that run's failure instead of ending the part."""
        try:
            step(name, seed, repeat)
        except Exception:
            self.fail(f"{label(name, seed, repeat)}: FAILED with an error\n{traceback.format_exc()}")

    def job(self, name: str, seed: int, repeat: int = 0) -> None:
        """Train one run and hand it to the export pool (or export it at once, outside ``run``)."""
        if self.previous is not None and known_score(self.previous, name, seed, repeat) is not None:
            return self.say(f"{label(name, seed, repeat)}: measured in an earlier part")
        run = run_dir(name, seed, self.args, repeat)
        run.mkdir(parents=True, exist_ok=True)
        if card_path(name, seed, self.args, repeat).is_file():
            with self.lock:
                self.done_before.add((name, seed, repeat))
            return self.say(f"{label(name, seed, repeat)}: done (trained and exported in an earlier call)")
        if not self.would_finish():
            with self.lock:
                self.left.append(label(name, seed, repeat))
            return
        began = time.perf_counter()
        code = self._call(train_command(name, seed, self.args, self.extra, repeat), run / "train.log")
        if code is None:
            return self.say(f"{label(name, seed, repeat)}: not started, the deadline had passed")
        if code == -signal.SIGTERM and self.stopped:
            return self.say(f"{label(name, seed, repeat)}: stopped at the deadline")
        if code != 0:
            return self.fail(f"{label(name, seed, repeat)}: FAILED in training ({code}), see train.log")
        with self.lock:
            self.durations.append(time.perf_counter() - began)
        if self.exports is None:
            self.export(name, seed, repeat)
        else:
            self.exports.submit(self.guarded, self.export, name, seed, repeat)

    def would_finish(self) -> bool:
        """Whether a training started now would end by the deadline, if it takes up to ``MARGIN`` times as long as
        the longest this call has trained (until one has finished, every training starts)."""
        with self.lock:
            if self.deadline is None or not self.durations:
                return True
            return time.perf_counter() - self.started + MARGIN * max(self.durations) <= self.deadline

    def export(self, name: str, seed: int, repeat: int = 0) -> None:
        run = run_dir(name, seed, self.args, repeat)
        code = self._call(export_command(name, seed, self.args, repeat), run / "export.log", training=False)
        if code != 0:
            return self.fail(f"{label(name, seed, repeat)}: FAILED in export ({code}), see export.log")
        self.say(f"{label(name, seed, repeat)}: done")

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures += 1
        self.say(message)

    def say(self, message: str) -> None:
        print(f"{time.perf_counter() - self.started:7.0f} s  {message}", flush=True)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for process in self.training:
                process.terminate()


def job_order(rows: list[str], seeds: list[int], baseline_runs: int = 2) -> list[tuple[str, int, int]]:
    """The (row, seed, repeat) runs in the order they are trained: seed by seed, every row once, then the baseline
    again (``repeat`` 1, 2, ...: the same command in another folder, how far the same run lands from itself, the
    noise every difference is read against), before any row's next seed.

    A table measured in parts (``--previous``) skips what earlier parts hold, so this order decides what a part
    adds: a seed's rerun comes before the next seed's rows, and the table gets a row's second seed and its rerun
    gap before any row's third seed, the runs that let a difference be read at all."""
    jobs = []
    for seed in seeds:
        jobs += [(name, seed, 0) for name in rows]
        jobs += [("baseline", seed, repeat) for repeat in range(1, baseline_runs)]
    return jobs


def held_out(name: str, seed: int, args: argparse.Namespace, repeat: int = 0) -> float | None:
    """The run's held-out tgs_score (post-processing chosen on its validation tiles), None if it did not finish."""
    card = card_path(name, seed, args, repeat)
    return json.loads(card.read_text())["held_out"]["tgs"] if card.is_file() else None


def read_record(path: Path, epochs: int, finetune_epochs: int) -> dict:
    """An earlier part's record, checked: it exists and was trained for this call's budget."""
    if not path.is_file():
        raise SystemExit(f"error: --previous {path}: no such file; name the results.json of an earlier part")
    record = json.loads(path.read_text())
    if (record.get("epochs"), record.get("finetune_epochs")) != (epochs, finetune_epochs):
        raise SystemExit(
            f"error: --previous {path} was trained for {record.get('epochs')} + {record.get('finetune_epochs')} "
            f"epochs, this call for {epochs} + {finetune_epochs}: give the trainer the same --epochs and "
            "--finetune-epochs after --"
        )
    if record_split(record) != SPLIT:
        raise SystemExit(
            f"error: --previous {path} dealt the split {record_split(record)}, this call deals {SPLIT}: the table's "
            "rows are compared seed by seed on the same tiles, so its parts must share the split"
        )
    return record


def split_text() -> str:
    """The table's split in words, e.g. "70/20/10 (2,100 training, 600 validation, 300 held-out tiles of 3,000)"."""
    val, test = round(VAL_FRACTION * 3000), round(TEST_FRACTION * 3000)
    shares = f"{1 - VAL_FRACTION - TEST_FRACTION:.0%}/{VAL_FRACTION:.0%}/{TEST_FRACTION:.0%}".replace("%", "")
    return f"{shares} ({3000 - val - test:,} training, {val:,} validation, {test:,} held-out tiles of 3,000)"


def recorded_command(argv: list[str]) -> str:
    """The command as a record keeps it: paths inside the checkout relative to it (no machine's folders in a
    record that ships), the deadline in whole seconds."""
    words = []
    for word in argv:
        path = Path(word)
        if path.is_absolute() and path.is_relative_to(ROOT):
            word = str(path.relative_to(ROOT))
        elif words and words[-1] == "--deadline":
            word = f"{float(word):.0f}"
        words.append(word)
    return shlex.join(["python", "benchmarks/levers.py", *words])  # quoted where a word needs it: --only "+ scSE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("data/tgs-salt"), help="the TGS Salt folder (Kaggle's layout)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/levers"), help="one folder per run, table.md, results.json"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="each seed deals its own split")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(ROWS), default=None, metavar="ROW", help="some rows: " + "; ".join(ROWS)
    )
    parser.add_argument(
        "--baseline-runs", type=int, default=2, help="runs of the baseline per seed (2: the rerun gap is measured)"
    )
    parser.add_argument("--parallel", type=int, default=1, help="runs side by side (on one GPU several small ones)")
    parser.add_argument("--device-batches", action="store_true", help="pass --device-batches to the trainer")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="stop training after this many seconds, and start none that would not finish by then (the next part "
        "trains them); runs already trained are still exported, tens of seconds each on a GPU, so leave a minute "
        "after it",
    )
    parser.add_argument(
        "--previous",
        type=Path,
        nargs="+",
        default=[],
        metavar="RECORD",
        help="results.json of the table's earlier parts (same budget): their runs are skipped and merged in",
    )
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    rows = args.only or list(ROWS)
    if "baseline" not in rows:
        rows = ["baseline", *rows]  # every difference needs its baseline
    jobs = job_order(rows, args.seeds, args.baseline_runs)
    epochs = epochs_of(extra) or row_recipe("baseline").epochs
    finetune_epochs = epochs_of(extra, "--finetune-epochs")
    finetune_epochs = row_recipe("baseline", epochs).finetune_epochs if finetune_epochs is None else finetune_epochs
    previous = [read_record(path, epochs, finetune_epochs) for path in args.previous]
    for path, part in zip(args.previous, previous):
        for name in changed_rows(part):
            print(
                f"--previous {path}: {name!r} was trained with {part['rows'][name]['options']}, the row is now "
                f"{recorded_options(name, epochs)}: its runs there are trained again"
            )
    previous = [without_changed_rows(part) for part in previous]
    runner = Runner(args, extra, merge_records(previous) if previous else None)
    if args.deadline is not None:
        timer = threading.Timer(args.deadline, runner.stop)
        timer.daemon = True
        timer.start()
    failures = runner.run(jobs)
    scores = {name: {str(seed): held_out(name, seed, args) for seed in args.seeds} for name in rows}
    record = dict(
        what=f"benchmarks/levers.py: every row is medium-strong with one change; held-out tgs_score per seed "
        f"(split {split_text()} by the seed, post-processing chosen on the validation tiles); trainer options {extra}",
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        date=time.strftime("%Y-%m-%d"),
        command=recorded_command(sys.argv[1:]),
        epochs=epochs,
        finetune_epochs=finetune_epochs,
        split=SPLIT,
        seeds=args.seeds,
        rows={
            name: dict(
                options=recorded_options(name, epochs),  # what the runs had: a later change of the row retrains them
                scores=scores[name],
                baselines=scores["baseline"],
                # 0: this call (the record's one command) trained the run; None: not measured, or an earlier call
                # in the same --out did, whose command this record does not hold
                calls={
                    str(seed): None if scores[name][str(seed)] is None or (name, seed, 0) in runner.done_before else 0
                    for seed in args.seeds
                },
            )
            for name in rows
        },
        baseline_reruns={  # None: a run still to come (the next part, or a resumed call, trains it)
            str(seed): [held_out("baseline", seed, args, k) for k in range(args.baseline_runs)] for seed in args.seeds
        }
        if args.baseline_runs > 1
        else {},
    )
    record = merge_records([*previous, record])
    table = markdown_table(summarise(record))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(record, indent=1))  # a record: copy it to unet_helpers/records
    print(table)
    if failures:
        raise SystemExit(f"{failures} runs failed (printed above); the table holds the others")


if __name__ == "__main__":
    main()
