"""What each of the TGS Salt winners' levers is worth, one at a time, against one baseline, with seed-to-seed spread.

    python benchmarks/levers.py --data data/tgs-salt --out runs/levers                 # every row, 3 seeds each
    python benchmarks/levers.py --data data/tgs-salt --out runs/levers --parallel 4    # 4 runs side by side (a GPU)
    python benchmarks/levers.py ... --only baseline scse --seeds 0 1                  # some rows
    python benchmarks/levers.py ... -- --epochs 2 --limit-train 64                    # anything after -- goes to the trainer

Every row is the baseline recipe (medium-strong) with one change: a lever added (residual blocks, scSE, a
hypercolumn head, bilinear upsampling, the symmetric Lovasz loss, an empty/non-empty head trained beside the
mask, cosine restarts with snapshot averaging) or a
part of the recipe taken away (batch norm, flips, BCE + Dice, AdamW + cosine, the Lovasz stage, the fifth level).
Each row trains with every seed on the same split (``--test-fraction 0.1``: the seed changes the split too, so
each seed's baseline is its own reference), then ``pretrained export`` chooses the post-processing on the
validation tiles and scores the held-out ones once. The table gives, per row, the mean held-out tgs_score, its
spread over seeds (standard deviation) and the mean of the per-seed differences to the baseline. A difference is
called real only when it is larger than the spread of those differences. Runs resume (``--resume``), so an
interrupted table continues where it stopped. Writes ``table.md`` and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROWS: dict[str, list[str]] = {
    "baseline": [],
    "+ residual blocks": ["--block", "residual"],
    "+ scSE": ["--attention", "scse"],
    "+ hypercolumn head": ["--hypercolumn"],
    "+ bilinear upsampling": ["--upsample", "bilinear"],
    "+ symmetric Lovasz": ["--finetune-loss", "lovasz_symmetric"],
    "+ empty/non-empty head, deep supervision": ["--salt-head"],
    "+ cosine restarts, snapshots averaged": [
        "--scheduler",
        "cosine_restarts",
        "--cycle-epochs",
        "10",
        "--snapshot-average",
    ],
    "- batch norm (lr 1e-4)": ["--no-batch-norm", "--lr", "1e-4"],
    "- flips": ["--no-augment"],
    "- BCE + Dice (BCE alone)": ["--loss", "bce"],
    "- AdamW + cosine (Adam + plateau)": ["--optimizer", "adam", "--scheduler", "plateau"],
    "- Lovasz stage": ["--finetune-epochs", "0"],
    "- fifth level": ["--features", "16,32,64,128"],
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def run_one(name: str, seed: int, args: argparse.Namespace, extra: list[str]) -> subprocess.Popen:
    out = args.out / slug(name) / f"seed{seed}"
    command = [sys.executable, "-m", "unet_helpers.train", "--data", str(args.data), "--recipe", "medium-strong"]
    command += ROWS[name] + ["--test-fraction", "0.1", "--seed", str(seed), "--out", str(out), "--resume"]
    command += ["--no-progress", "--processes", "1"] + (["--device-batches"] if args.device_batches else []) + extra
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def held_out(name: str, seed: int, args: argparse.Namespace) -> float | None:
    """The run's held-out tgs_score, post-processing chosen on its validation tiles (a card written beside it)."""
    run = args.out / slug(name) / f"seed{seed}"
    card = run / "card" / "medium-strong.json"
    if not card.is_file():
        command = [
            sys.executable,
            "-m",
            "unet_helpers.pretrained",
            "export",
            "--run",
            str(run),
            "--data",
            str(args.data),
        ]
        command += ["--out-dir", str(run / "card"), "--name", "medium-strong", "--overwrite"]
        if subprocess.run(command, capture_output=True, text=True).returncode:
            return None
    return json.loads(card.read_text())["held_out"]["tgs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/tgs-salt"))
    parser.add_argument("--out", type=Path, default=Path("runs/levers"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(ROWS), default=None, metavar="ROW")
    parser.add_argument("--parallel", type=int, default=1, help="runs side by side (on one GPU several small ones)")
    parser.add_argument("--device-batches", action="store_true", help="pass --device-batches to the trainer")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    rows = args.only or list(ROWS)
    if "baseline" not in rows:
        rows = ["baseline", *rows]  # every difference needs its baseline
    jobs = [(name, seed) for name in rows for seed in args.seeds]
    started, running = time.perf_counter(), []
    while jobs or running:
        while jobs and len(running) < args.parallel:
            name, seed = jobs.pop(0)
            running.append((name, seed, run_one(name, seed, args, extra)))
        for job in list(running):
            if job[2].poll() is not None:
                running.remove(job)
                status = "done" if job[2].returncode == 0 else f"FAILED ({job[2].returncode}), see its train.log"
                print(f"{time.perf_counter() - started:7.0f} s  {job[0]}, seed {job[1]}: {status}", flush=True)
        time.sleep(1)
    scores = {name: {seed: held_out(name, seed, args) for seed in args.seeds} for name in rows}
    base = scores["baseline"]
    lines = [
        "| row | held-out tgs_score (mean +- sd) | difference to baseline (mean +- sd) | real? |",
        "|---|---|---|---|",
    ]
    results = {}
    for name in rows:
        got = [s for s in scores[name].values() if s is not None]
        diffs = [scores[name][k] - base[k] for k in args.seeds if scores[name][k] is not None and base[k] is not None]
        mean = statistics.mean(got) if got else float("nan")
        sd = statistics.stdev(got) if len(got) > 1 else float("nan")
        d_mean = statistics.mean(diffs) if diffs else float("nan")
        d_sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        real = "-" if name == "baseline" else ("yes" if abs(d_mean) > d_sd else "no")
        lines.append(f"| {name} | {mean:.3f} +- {sd:.3f} | {d_mean:+.3f} +- {d_sd:.3f} | {real} |")
        results[name] = dict(scores=scores[name], mean=mean, sd=sd, difference=d_mean, difference_sd=d_sd)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
