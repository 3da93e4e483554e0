"""The GPU work of notebook 08 (epoch benchmark, lever table, flagship candidates), unattended, in one short GPU loan.

    python benchmarks/gpu_session.py --data data/tgs-salt --work runs/gpu-session --budget 560

In order, each part with its own time limit so that a slow part cannot starve the rest:

1. the epoch benchmark, alone on the GPU (``bench_training.py --epoch --levers``): seconds per epoch of 2,400 tiles
   of medium-strong and of the flagship candidates' network, with each step launched kernel by kernel and replayed
   as one CUDA graph (``--bench-compile`` adds torch.compile; ``--skip bench --bench-record FILE`` reuses a record);
2. notebooks 04 (every recipe's full schedule) and 05, executed top to bottom with fast mode off, alone on
   the GPU, so that their wall times are what a learner on this card would see;
3. side by side until the budget's end: the flagship candidates (the winners' levers together, on one split)
   and the lever table (``levers.py``, every row with ``--lever-seeds``, two by default). Their epochs are sized
   from part 1's measurement: the GPU time one medium-strong epoch takes (its seconds times the share of them the GPU was
   busy) and the GPU time left;
4. each finished candidate exported (post-processing chosen on its validation tiles, its held-out tiles scored
   once), and everything small packed into ``--pack-dir`` every minute and at the end.

Every run resumes (``--resume``), so the same command continues an interrupted session.

What the first session with it saw (one H200, 2026-11-26; benchmarks/README.md): a medium-strong epoch alone took
1.16 s with the GPU busy 40% of it, and runs side by side take turns on the GPU rather than overlap (13 processes
gave about 1.5x one process's throughput). Part 3 is therefore better spent on few long runs than on many short ones.
The second (one H100, 2026-11-26): one CUDA graph per step made that epoch 0.46 s (GPU busy 100%) and the flagship
network's 0.98 s instead of 2.74 s (``benchmarks/results/bench-epoch-h100.json``). Its benchmark had failed to import
unet_helpers (this script now puts the checkout on PYTHONPATH), so its flagship trained without the graph, about 3 s an
epoch, and reached 124 of its 320 planned epochs: 0.781 on medium-strong's held-out tiles. The third (one H100,
2026-11-26) trained it with the graph for 256 + 64 epochs in two calls of one loan (1.35 s a main epoch, 2.0 s a Lovasz
epoch, validation included; the graph's GPU tests passed, 7 of 7): 0.780 held-out, validation 0.845. Each of its four
64-epoch cycles peaked at 0.828-0.833 on validation, so the candidate's length is not what holds it back. Its plan
for a loan was a wider network, which one call trains for 64 + 16 epochs (about 3.3 s an epoch, estimated from its
arithmetic, 2.4 times the candidate's; not measured):

    python benchmarks/gpu_session.py --data data/gpu-tgs-salt --pack-dir $OUT --skip bench notebooks \
        --bench-record benchmarks/results/bench-epoch-h100.json --candidates levers-wide --no-levers \
        --flagship-epochs 80 --budget 500

(a second call with the same command, on the same warm machine, resumes it), or to the lever table.

The fourth session had no GPU. It took the candidates' 0.065-0.066 gap between validation and held-out apart
(``benchmarks/split_gap.py``, notebook 08 section 6): about 0.038 is the tiles (a split that about one random split in
ten matches), 0.003-0.009 the post-processing and about 0.02 left, most likely the epoch chosen on validation (not
measured apart). (A second seed, in the sixth session, read the tiles' part as 0.056, and a third, in the seventh, as 0.038;
averaged over the three seeds it is 0.044, which about one random split in twenty matches, and 0.009-0.020 is left.) So their validation scores
(0.84-0.85) overstate them, and the held-out 0.78 is the number to beat.
What the winners did beyond one network was folds, so the next loan goes to them before the wider network: a 5-fold
cross-validation over medium-strong's 2,700 training and validation tiles (its held-out tiles stay out), each fold
one 40-epoch cosine cycle, then 10 epochs of the Lovasz fine-tune. Side by side the five take turns on the GPU (each
keeps it busy with the graph), about 6 minutes in all; a second call resumes what the first could not finish:

    python benchmarks/gpu_session.py --data data/gpu-tgs-salt --pack-dir $OUT --skip bench notebooks \
        --bench-record benchmarks/results/bench-epoch-h100.json --no-levers --flagship-epochs 50 --budget 500 \
        --candidates levers-fold0 levers-fold1 levers-fold2 levers-fold3 levers-fold4

then, on any machine, the five averaged (post-processing chosen on out-of-fold predictions, held-out tiles scored
once):
``python benchmarks/ensemble_held_out.py levers-fold0.json levers-fold0.pt ... --data data/tgs-salt``.

The fifth session (one H200, 2026-11-26) ran that command. Its log (``benchmarks/results/gpu-session-h200-folds.log``)
has the five folds done 330 s after its start, trained side by side, each with the graph (5.1 min of training each in
their cards; 5.3-5.7 s a main epoch after the first in fold 0's log, ``gpu-session-h200-fold0-train.log``), and their
exports done 170 s later, which is why exports now get their share of the cores. Alone, the five scored 0.757-0.777 on
the held-out tiles, and 0.742-0.800 on their own folds, 0.770 on average against 0.768 on the held-out tiles. Averaged
(``ensemble_held_out.py --record``, notebook 08 section 6): **0.779**, +0.011 over the five alone on average, and no
better than run 3's one network (0.780). With the rest of that loan, the first part of the lever table at its real
budget (below) trained 4 runs side by side until a deadline of 225 s (177-184 s of training each in their cards, not
committed); 3 were exported (``benchmarks/results/levers-h200-50+15-epochs-part1.json``), and the fourth was trained but
stopped at the deadline in its export (``levers.py`` now exports a trained run after its deadline).

The lever table at its real budget (50 + 15 epochs, 3 seeds, the baseline twice per seed: 45 runs, about 45 s of GPU
time each side by side, so about 34 minutes in all, 32 for the 42 still to run) is longer than one loan, so it is
measured in parts, each loan training the runs the earlier parts lack (``--lever-previous`` names every earlier part's
record):

    python benchmarks/gpu_session.py --data data/gpu-tgs-salt --pack-dir $OUT --skip bench notebooks --candidates \
        --lever-epochs 50 --lever-seeds 0 1 2 --lever-previous benchmarks/results/levers-h200-50+15-epochs-part1.json

The sixth session had no GPU. In part 1 each run's export had held its training slot: the residual-blocks run, trained
by 184 s, was still exporting at the deadline of 225 s, so the exports (tens of seconds each) left the GPU one run short
for part of every slot. ``levers.py`` now trains the next run while the last one is exported (``Runner.run``), so each
round keeps ``--lever-parallel`` runs training. Once a run has finished, it starts no run that would not finish by its
deadline (judged by 1.1 times the longest run the call has trained), and its deadline comes 30 s before the other
runs' end, so that the runs trained by then have 90 s to be exported before this script stops waiting (a few seconds
less: levers.py's clock starts once it has imported torch). At about 185 s a round of four, a call of
``--budget 550`` (the lever deadline at about 460 s) trains two rounds, 8 runs, and ends after their exports, about
420 s in: a third round would have been cut off at the deadline, lost with the machine after a loan's last call, and
the call now ends about 70 s sooner instead, time the loan keeps. The rest of a loan suits a second call of one round
(``--budget`` about 300). The runner's side of this is tested with stand-in processes (``tests/test_levers.py``); the
30 s and 60 s here are not.

The seventh session (one H200, 2026-11-27) ran the command above with ``--budget 550``: 8 runs, two rounds of four
(the first ended 201-206 s in, the second 302-369 s; 84-171 s of training each in their cards), the call 381 s long;
levers.py then listed the 34 runs it had not started. A second call of the same loan (``--budget 520``, part 2's record
added to ``--lever-previous``; copy ``levers/results.json`` out of the first call's ``results.tar.gz`` first) trained 8
more in 381 s (136-367 s in; 105-191 s of training each). The loan held the machine 820 s of its 900, so a loan trains
16 runs in two calls (the GPU 100% busy through both, ``smi.csv``). The records are
``benchmarks/results/levers-h200-50+15-epochs-part2.json`` and ``-part3.json``; part 3 holds all 19 runs measured
(notebook 08 reads it as ``unet_helpers/records/levers-h200-50+15-epochs.json``). The 26 left (seed 1 of nine rows,
seed 2 of all 14, and the baseline's second run of each seed) take two more loans of two such calls:

    python benchmarks/gpu_session.py --data data/gpu-tgs-salt --pack-dir $OUT --skip bench notebooks --candidates \
        --lever-epochs 50 --lever-seeds 0 1 2 --lever-previous benchmarks/results/levers-h200-50+15-epochs-part3.json \
        --budget 550

then the same with the first call's record (saved as ``-part4.json``) added to ``--lever-previous`` and ``--budget
520`` (a timeout of about 440 s fits what the loan has left).

The eighth session had no GPU. ``levers.py`` now trains a seed's baseline rerun right after that seed's rows
(``job_order``), where it had come after every seed's rows. And the row without batch norm now fine-tunes at 1e-5, a
tenth of its main rate as in medium-strong, where it had kept medium-strong's 3e-4 (three times its main rate; in
notebook 08's short demonstration its fine-tune collapses at either rate, and the main stage's weights are kept): every
record's row now holds the ``options`` it was trained with, and ``--previous`` trains again the runs of a row that has
changed since. So 27 runs are left, and with the part 3 record the next loan's 16 are seed 0's run without batch norm,
seed 0's rerun, the nine rows' seed 1, seed 1's rerun and the first four runs of seed 2 (its baseline first): after it
every row has two seeds and the rerun gap is measured on two seeds, the runs a verdict needs. The commands are the ones
above.

The ninth session had no GPU either. Nothing the loan runs changed (the predictor's flip TTA now mirrors the padded
tile, as training and the exports always did), so the commands above stand.

The tenth session (2026-11-27) changed the trainer first (refusing an --out that holds files it did not write,
removing an earlier run's stages on --overwrite, refusing a split without validation tiles), which does not touch the
loan's runs: each trains into a folder of its own. A loan then came (one H200): the command above with ``--budget 550``
trained 8 runs in a call of 361 s (seed 0's run without batch norm again, seed 0's baseline rerun, six rows' seed 1),
and a second call, with part 4's record added to ``--lever-previous`` and ``--budget 480``, 8 more in 384 s (three
rows' seed 1, seed 1's rerun, seed 2's baseline and three rows). The records are ``-part4.json`` and ``-part5.json``;
part 5 holds all 34 runs measured and ships as the notebook's record. The 11 left (seed 2 of ten rows and its rerun)
take one loan of two calls:

    python benchmarks/gpu_session.py --data data/gpu-tgs-salt --pack-dir $OUT --skip bench notebooks --candidates \
        --lever-epochs 50 --lever-seeds 0 1 2 --lever-previous benchmarks/results/levers-h200-50+15-epochs-part5.json \
        --budget 550

then the same with that call's record (saved as ``-part6.json``) added to ``--lever-previous`` and ``--budget 300``
(three runs, one round).

The eleventh session (one H200, 2026-11-27) ran those two commands at its start: 8 runs in a call of 417 s, then 3 in
155 s (the GPU at 90% or more in 74% and 72% of the samples); the loan held the machine 658 s and was given back with
239 s left. The records are ``-part6.json`` and ``-part7.json``; part 7 holds all 45 runs and ships as the notebook's
record. The table is whole, and what it points to (four rows that moved the same way on all three seeds by more than
the rerun gap: residual blocks and the empty/non-empty head gained, BCE alone beat BCE + Dice, no batch norm lost;
scSE lost on two seeds of three) is the candidate ``levers-lean``, and ``levers-lean-wide`` with the wider features.
The next loan trains them beside ``levers`` (the candidate of run 3, 0.780 held-out) at 80 epochs each, on the same
tiles of medium-strong's card, so that the three are compared on the same unseen tiles after the same training (the
three share the GPU, about 6 s of it for one epoch of each, so two calls; the second resumes the first and exports
all three; an estimate from the epochs measured alone, not measured side by side):

    python benchmarks/gpu_session.py --data data/gpu-tgs-salt --pack-dir $OUT --skip bench notebooks \
        --bench-record benchmarks/results/bench-epoch-h100.json --no-levers --flagship-epochs 80 --budget 560 \
        --candidates levers levers-lean levers-lean-wide

The twelfth session was lent no GPU. It measured where the held-out score is lost
(``benchmarks/held_out_breakdown.py``, in ``benchmarks/README.md``): the 81 masks under 30% of the tile lose 0.139 of
run 3's mean, and medium-strong finds no salt on 17 of the 33 smallest, so the next loan should compare the candidates
there too (the script reads the record that ``compare_held_out.py --record`` writes). The command above stands. A
candidate that asks the question the breakdown raises is ready beside it, ``levers-lean-208`` (the lean candidate on
the tiles resized to 208, masks aligned since this project's fix of the resize); at about 3.8 epochs of medium-strong
per epoch it does not fit beside the three at 80 epochs in one loan (an estimate, not measured), so it is for the loan
after, or in place of ``levers-lean-wide``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# The flagship candidates: medium-strong with the winners' levers (residual blocks, scSE, a hypercolumn head,
# the symmetric Lovasz fine-tune, cosine restarts with snapshot averaging), on the tiles of the shipped
# medium-strong's card (--split-like), so that both are scored on the same unseen tiles. Cost: the GPU time
# of one epoch against medium-strong's (from the networks' MACs: 0.59 and 1.32 GMAC per tile against 0.55).
LEVERS = ["--block", "residual", "--attention", "scse", "--hypercolumn", "--finetune-loss", "lovasz_symmetric"]
WIDE = ["--features", "24,48,96,192,240"]
LEAN = ["--block", "residual", "--hypercolumn", "--salt-head", "--loss", "bce"]
CANDIDATES: dict[str, tuple[list[str], float]] = {
    "levers": (LEVERS + ["--salt-head"], 1.1),
    "levers-wide": (LEVERS + WIDE + ["--salt-head"], 2.4),
    "levers-wide-nohead-seed1": (LEVERS + WIDE + ["--seed", "1"], 2.4),
    # what the whole lever table at 50 + 15 epochs points to (notebook 08, section 3): the rows that moved the same way
    # on all three seeds by more than the rerun gap (residual blocks, the empty/non-empty head, BCE alone instead of
    # BCE + Dice; batch norm kept), without the rows that lost or did nothing there (scSE, the symmetric Lovasz)
    "levers-lean": (LEAN, 1.1),
    "levers-lean-wide": (LEAN + WIDE, 2.4),
    # the same on the tiles resized to 208 (about 2x; the masks nearest-exact, so they stay on their images): small salt
    # bodies, where most of the held-out score is lost (benchmarks/held_out_breakdown.py), get 4x the pixels;
    # (208 / 112)^2 = 3.4 times the arithmetic of an epoch at 112
    "levers-lean-208": (LEAN + ["--size", "resize", "--side", "208"], 3.8),
    # a 5-fold cross-validation of the candidate over medium-strong's 2,700 training and validation tiles (its 300
    # held-out tiles stay out), each fold one cosine cycle; benchmarks/ensemble_held_out.py averages the five
    **{f"levers-fold{k}": (LEVERS + ["--salt-head", "--folds", "5", "--fold", str(k)], 1.1) for k in range(5)},
}
LEVER_ROWS = 14
EPOCH_OVERHEAD_S = 0.45  # a trainer's epoch beyond its training steps on a GPU: validation, batch-norm statistics


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.started = args, time.perf_counter()
        self.work = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = open(self.work / "session.log", "a")
        self.packing = threading.Lock()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def say(self, text: str) -> None:
        line = f"[{self.elapsed():6.0f} s] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def call(self, command: list[str], log: Path, timeout: float, env: dict | None = None) -> int | None:
        """Run ``command`` with its output in ``log``; None when it ran out of time (and was stopped)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            try:
                return process.wait(timeout=max(timeout, 1))
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                return None

    def pack(self) -> None:
        """Everything small (logs, histories, cards, notebooks) into ``--pack-dir``/results.tar.gz, and beside it
        the float16 weights each flagship candidate exported (one file each)."""
        with self.packing:  # the minute-by-minute thread and the final pack never write at once
            self._pack()

    def _pack(self) -> None:
        folder = self.args.pack_dir
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "results.partial"
        with tarfile.open(partial, "w:gz") as tar:
            for path in sorted(self.work.rglob("*")):
                small = path.suffix in (".json", ".log", ".md", ".txt", ".ipynb", ".csv")
                if path.is_file() and small and path.stat().st_size < 8_000_000:
                    tar.add(path, arcname=str(path.relative_to(self.work)))
        partial.replace(folder / "results.tar.gz")
        for name in CANDIDATES:
            weights = self.work / "flagship" / name / "card" / f"{name}.pt"
            if weights.is_file():
                shutil.copyfile(weights, folder / f"{name}.pt")


def bench(s: Session, limit: float) -> dict:
    """Part 1; returns medium-strong's epoch with batches on the device (seconds, GPU busy share), and the seconds
    of an epoch of the flagship candidates' network, with a CUDA graph per step where that recorded (``graph``)."""
    record = s.work / "bench.json"
    command = [PY, "benchmarks/bench_training.py", "--epoch", "--levers", "--json", str(record)]
    command += ["--compile"] if s.args.bench_compile else []
    code = s.call(command, s.work / "bench.log", limit)
    s.say(f"benchmark: {'stopped at its limit' if code is None else f'exit {code}'}")
    return epoch_from_record(s, record)


def epoch_from_record(s: Session, record: Path) -> dict:
    """What part 3 needs from a benchmark record (``bench_training.py --epoch --levers --json``)."""
    rows = json.loads(record.read_text())["rows"] if record.is_file() else []

    def row(**options):
        keys = ("strong_augment", "compile_mode", "batch_size", "cuda_graph", "levers")
        found = [
            r for r in rows if r.get("device_batches") and all(bool(r.get(k)) == bool(options.get(k)) for k in keys)
        ]
        return found[0] if found else None

    plain, levers, graphed = row(), row(levers=True), row(levers=True, cuda_graph=True)
    epoch = dict(seconds=0.5, busy=0.6, levers_seconds=None, graph=False)
    if plain is None:
        s.say("no device-batch row measured: assuming 0.5 s per epoch with the GPU busy 60% of it")
    else:
        epoch.update(seconds=plain["seconds"], busy=(plain["gpu_utilisation"] or 60) / 100)
    # the graph only where it recorded and trained as the normal step does (its loss within 10% after 4 epochs)
    if graphed and graphed.get("graph_recorded") and levers and abs(graphed["loss"] / levers["loss"] - 1) < 0.1:
        epoch.update(levers_seconds=graphed["seconds"], graph=graphed["seconds"] < levers["seconds"])
    if not epoch["graph"] and levers:
        epoch.update(levers_seconds=levers["seconds"])
    s.say(f"epochs: {epoch}")
    return epoch


def notebooks(s: Session, limit: float) -> None:
    """Part 2: execute ``--notebooks`` (04 and 05 unless told) with nbclient, fast mode off, timing each."""
    code = (
        "import json, sys, time, nbformat\n"
        "from nbclient import NotebookClient\n"
        "name, out = sys.argv[1], sys.argv[2]\n"
        "nb = nbformat.read(f'notebooks/{name}.ipynb', 4)\n"
        "started = time.perf_counter()\n"
        "NotebookClient(nb, timeout=-1, kernel_name='python3', resources={'metadata': {'path': 'notebooks'}}).execute()\n"
        "seconds = time.perf_counter() - started\n"
        "nbformat.write(nb, f'{out}/{name}.ipynb')\n"
        "print(json.dumps(dict(notebook=name, seconds=seconds)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "UNET_FAST" or s.args.smoke}
    out = s.work / "notebooks"
    out.mkdir(exist_ok=True)
    end = s.elapsed() + limit
    for name in s.args.notebooks:
        started = time.perf_counter()
        result = s.call([PY, "-c", code, name, str(out)], out / f"{name}.log", end - s.elapsed(), env)
        s.say(f"notebook {name}: {'stopped at its limit' if result is None else f'exit {result}'}, "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip


def train_command(name: str, options: list[str], epochs: int, s: Session, graph: bool = False) -> list[str]:
    main = max(int(epochs * 0.8) // 4 * 4, 4)  # four whole cosine cycles, their ends averaged
    finetune, cycle = max(epochs - main, 1), main // 4
    if "--folds" in options:  # a fold is one of five short runs: one cosine cycle, as restarts bought little
        cycle = main  # (run 3's later cycles peaked within 0.003 of its first)
    command = [PY, "-m", "unet_helpers.train", "--data", str(s.args.data), "--recipe", "medium-strong"]
    command += options + ["--epochs", str(main), "--finetune-epochs", str(finetune)]
    command += ["--scheduler", "cosine_restarts", "--cycle-epochs", str(cycle), "--snapshot-average"]
    # the very tiles of medium-strong's card (not a seed: the same seed splits otherwise if the tiles come in another
    # order), so that the flagship and medium-strong are scored on the same 300 unseen tiles
    command += ["--split-like", "medium-strong", "--out", str(s.work / "flagship" / name)]
    # one CUDA graph per step where the benchmark saw it pay
    command += ["--cuda-graph" if graph else "--no-cuda-graph"]
    return command + ["--resume", "--no-progress", "--processes", "1", "--threads", "1"] + smoke_options(s)


def smoke_options(s: Session) -> list[str]:
    """--smoke (a check of this script on a CPU): a few tiles per run."""
    return ["--limit-train", "64", "--limit-val", "32"] if s.args.smoke else []


def side_by_side(s: Session, epoch: dict, end: float) -> None:
    """Part 3: the flagship candidates and the lever table together, until ``end`` (seconds into the session)."""
    candidates = {name: CANDIDATES[name] for name in s.args.candidates}
    alone = len(candidates) == 1 and not s.args.levers
    # Side by side, runs share the GPU's busy time; a run alone is paced by the wall time of its epochs.
    gpu_per_epoch = epoch["seconds"] * (1.0 if alone else epoch["busy"]) * 1.25  # validation, batch-norm statistics
    capacity = 0.75 * (end - s.elapsed())  # GPU seconds, with a margin for the runs that end early
    share = (0.55 if s.args.levers else 1.0) if candidates else 0.0  # the flagship candidates' share of it
    cost = sum(cost for _, cost in candidates.values()) or 1.0
    flagship_epochs = int(share * capacity / (gpu_per_epoch * cost))
    if alone and epoch.get("levers_seconds"):  # measured on the candidates' own network: wall time, alone
        # + validation, batch-norm statistics and checkpoints; the Lovasz fine-tune (a fifth of the epochs) costs more
        per_epoch = epoch["levers_seconds"] * cost / CANDIDATES["levers"][1] + EPOCH_OVERHEAD_S
        flagship_epochs = int(0.85 * (end - s.elapsed()) / (per_epoch * (0.8 + 0.2 * (1.3 if epoch["graph"] else 2.5))))
    flagship_epochs = 5 if s.args.smoke else s.args.flagship_epochs or min(max(flagship_epochs, 20), 400)
    lever_epochs = int((1 - share) * capacity / (gpu_per_epoch * LEVER_ROWS * len(s.args.lever_seeds)))
    lever_epochs = 1 if s.args.smoke else s.args.lever_epochs or min(max(lever_epochs, 8), 50)
    while lever_epochs > 8 and not whole_cycles(lever_epochs):  # the cosine-restart row's cycles must fit its epochs
        lever_epochs -= 1
    plan = s.work / "plan.json"  # a resumed session keeps the first one's epochs (a run resumes only as planned)
    if plan.is_file():
        flagship_epochs, lever_epochs = json.loads(plan.read_text()).values()
    plan.write_text(json.dumps(dict(flagship_epochs=flagship_epochs, lever_epochs=lever_epochs)))
    s.say(
        f"side by side for {end - s.elapsed():.0f} s: GPU time per medium-strong epoch {gpu_per_epoch:.3f} s; "
        f"flagship candidates {flagship_epochs} epochs each, lever runs {lever_epochs} main epochs each"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # a log cut at the deadline keeps its last lines
    running = []

    def start(name: str, graph: bool) -> subprocess.Popen:
        log = s.work / "flagship" / name / "train.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = train_command(name, candidates[name][0], flagship_epochs, s, graph=graph)
        return subprocess.Popen(command, stdout=open(log, "a"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    for name in list(candidates)[: 1 if s.args.smoke else None]:
        running.append((name, start(name, epoch.get("graph", False))))
    lever_process = None
    if s.args.levers:
        levers = [PY, "benchmarks/levers.py", "--data", str(s.args.data), "--out", str(s.work / "levers")]
        levers += [
            "--seeds",
            *map(str, s.args.lever_seeds),
            "--parallel",
            "2" if s.args.smoke else str(s.args.lever_parallel),
        ]
        levers += ["--previous", *map(str, s.args.lever_previous)] if s.args.lever_previous else []
        # its trainings stop 30 s before the others, so that the runs trained by then have 90 s to be exported
        levers += ["--deadline", str(max(end - 30 - s.elapsed(), 1))] + (["--only", "+ scSE"] if s.args.smoke else [])
        levers += ["--", "--epochs", str(lever_epochs)] + smoke_options(s)
        lever_process = subprocess.Popen(levers, stdout=open(s.work / "levers.log", "a"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)  # fmt: skip
    processes = [p for _, p in running] + ([lever_process] if lever_process else [])
    retried = set()
    while s.elapsed() < end and any(p.poll() is None for p in processes):
        time.sleep(5)
        for k, (name, process) in enumerate(running):
            if process.poll() not in (None, 0) and epoch.get("graph") and name not in retried:
                # the graph path failed where the benchmark had not tried it: the same run goes on without it
                s.say(f"flagship {name}: exit {process.returncode} with the CUDA graph; resuming it without")
                retried.add(name)
                running[k] = (name, start(name, graph=False))
                processes = [p for _, p in running] + ([lever_process] if lever_process else [])
    for name, process in running:
        if process.poll() is None:
            process.terminate()
            s.say(f"flagship {name}: stopped at the deadline (it resumes with the same command)")
        else:
            s.say(f"flagship {name}: exit {process.returncode}")
    if lever_process is None:
        return
    try:
        lever_process.wait(timeout=60)  # it stopped training 30 s ago; it exports what was trained, writes the table
    except subprocess.TimeoutExpired:
        lever_process.terminate()
        lever_process.wait(timeout=10)
    s.say(f"levers: exit {lever_process.returncode}")


def export_flagship(s: Session, end: float) -> None:
    """Part 4: export every candidate that has a best.pt, side by side, on the GPU."""
    names = [name for name in s.args.candidates if (s.work / "flagship" / name / "best.pt").is_file()]
    # Each export its share of the cores, as the training runs have: with torch's default (every core in each of them)
    # their many small CPU-side operations wait on each other. The fifth session's five exports, started without it,
    # took 170 s, where each one's own work is a few passes over 840 tiles (a likely cause, not yet measured apart).
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // max(len(names), 1))))
    started, processes = time.perf_counter(), []
    for name in names:
        run = s.work / "flagship" / name
        command = [PY, "-m", "unet_helpers.pretrained", "export", "--run", str(run), "--data", str(s.args.data)]
        command += ["--out-dir", str(run / "card"), "--name", name, "--overwrite"]
        command += ["--device", "cpu" if s.args.smoke else "cuda"]
        processes.append((name, subprocess.Popen(command, stdout=open(run / "export.log", "a"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)))  # fmt: skip
    for name, process in processes:
        try:
            process.wait(timeout=max(end - s.elapsed(), 1))
        except subprocess.TimeoutExpired:
            process.terminate()
        card = s.work / "flagship" / name / "card" / f"{name}.json"
        held_out = json.loads(card.read_text())["held_out"]["tgs"] if card.is_file() else None
        done = time.perf_counter() - started  # all started together: this one had finished by then
        s.say(f"flagship {name}: exported within {done:.0f} s of the exports' start, held-out tgs_score {held_out}")


def whole_cycles(epochs: int) -> bool:
    """Whether the lever table's cosine-restart row can train ``epochs`` main epochs in whole cycles
    (``unet_helpers.levers.cycle_epochs``, imported here only: the rest of this script does not need torch)."""
    sys.path.insert(0, str(ROOT))
    from unet_helpers.levers import cycle_epochs

    try:
        return cycle_epochs(epochs) > 0
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("data/tgs-salt"), help="the TGS Salt folder (Kaggle's layout)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("runs/gpu-session"), help="where the runs, logs and weights are written"
    )
    parser.add_argument("--budget", type=float, default=560, help="seconds for the whole session")
    parser.add_argument("--pack-dir", type=Path, default=None, help="where to pack the results, every minute")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["bench", "notebooks", "train"],
        help="parts of the session to leave out",
    )
    parser.add_argument(
        "--notebooks",
        nargs="+",
        default=["04_training", "05_evaluation_submission"],
        help="part 2's notebooks, by file name without .ipynb (08_beyond_vanilla_unet reproduces a lever row there)",
    )
    parser.add_argument(
        "--candidates",
        nargs="*",
        choices=list(CANDIDATES),
        default=["levers", "levers-wide", "levers-wide-nohead-seed1"],
        help="none: the levers alone",
    )
    parser.add_argument(
        "--flagship-epochs",
        type=int,
        default=None,
        help="each candidate's epochs (default: sized by the time left); more than one call trains (--resume) finish it",
    )
    parser.add_argument("--levers", action=argparse.BooleanOptionalAction, default=True, help="the lever table too")
    parser.add_argument(
        "--lever-epochs", type=int, default=None, help="the table's main epochs (default: sized by the time left)"
    )
    parser.add_argument("--lever-seeds", type=int, nargs="+", default=[0, 1], help="the lever table's seeds")
    parser.add_argument(
        "--lever-parallel",
        type=int,
        default=4,
        help="the table's runs side by side: with the CUDA graph a few fill the GPU, and more only make each finish "
        "later (a run still training at the deadline is lost with the machine)",
    )
    parser.add_argument(
        "--lever-previous",
        type=Path,
        nargs="+",
        default=[],
        help="records of the table's earlier parts (levers.py --previous): this session trains the runs they lack",
    )
    parser.add_argument("--bench-compile", action="store_true", help="part 1 also times torch.compile (slow)")
    parser.add_argument(
        "--bench-record",
        type=Path,
        default=None,
        help="with --skip bench: size the training from this earlier record (benchmarks/results/bench-epoch-h100.json)",
    )
    parser.add_argument("--smoke", action="store_true", help="check this script on a CPU: fast mode, a few tiles")
    args = parser.parse_args()
    # the scripts it starts import unet_helpers from this checkout, installed or not (a lent GPU has it uninstalled)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    args.data, args.work = args.data.resolve(), args.work.resolve()
    args.lever_previous = [path.resolve() for path in args.lever_previous]
    s = Session(args)
    smi = None
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi"], stdout=s.log, stderr=subprocess.STDOUT)
        smi = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv", "-l", "5"],
            stdout=open(s.work / "smi.csv", "a"),
            stderr=subprocess.DEVNULL,
        )
    stop = threading.Event()

    def pack_every_minute() -> None:
        while not stop.wait(60):
            s.pack()

    threading.Thread(target=pack_every_minute, daemon=True).start()
    budget = args.budget
    if "bench" not in args.skip:
        epoch = bench(s, min(110, 0.25 * budget))
    elif args.bench_record:  # measured in an earlier loan, on the same kind of GPU
        epoch = epoch_from_record(s, args.bench_record)
    else:
        epoch = dict(seconds=0.5, busy=0.6)
    if "notebooks" not in args.skip:
        notebooks(s, min(220, 0.4 * budget))
    if "train" not in args.skip:
        side_by_side(s, epoch, budget - 60)
        export_flagship(s, budget - 12)
    if smi is not None:
        smi.terminate()
    stop.set()
    s.say("done")
    s.pack()


if __name__ == "__main__":
    main()
