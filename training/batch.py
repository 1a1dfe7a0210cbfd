"""``edge-train-batch``: train, export, calibrate and evaluate every category under a folder.

A plant trains one model per product or camera, many at once. Each (category, family) pair is a
job in its own folder under ``--out``; each step of a job (``edge-train``, ``edge-export``,
``edge-calibrate``, ``edge-eval``) runs as its own child process, so a crash, an out-of-memory
kill or a bad image in one category costs only that job, and the CPU seconds and peak RSS of
every step are the child's own (``os.wait4``). Going through the commands rather than importing
their packages also keeps ``training`` below ``export`` and ``calibration`` in the layering.

Each job records its finished steps in ``job.json``; running the same command again skips them
(an interrupted autoencoder continues from its checkpoint), so a batch is resumable after a
crash or a reboot. ``--jobs`` runs jobs in parallel, but a job starts only when the memory it is
expected to need (the peak RSS seen for its family so far in this batch, or a default) is
available, and the cores are divided between the running jobs. The summary table is written as
Markdown and JSON at the end.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from edge.extras import exit_if_missing
from edge.ops.atomicfile import write_atomic
from training.batch_report import summary_rows, write_summary
from training.presets import available_presets, load_preset

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
STEPS = ("train", "export", "calibrate", "eval")
DEFAULT_MEMORY_MB = 3000.0
MEMORY_RESERVE_MB = 1024.0


class BatchError(click.ClickException):
    """A mistake in the batch command line: one line, exit status 2."""

    exit_code = 2


@dataclass
class Job:
    """One (category, family) pair and where its steps stand."""

    category: str
    data: Path
    family: str
    folder: Path
    preset: str | None = None
    max_images: int | None = None
    calibrate_args: tuple[str, ...] = ()
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.category}/{self.family}"

    def save(self) -> None:
        record = {"category": self.category, "data": str(self.data), "family": self.family, "preset": self.preset,
                  "steps": self.steps, "error": self.error}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / JOB_FILE, json.dumps(record, indent=2).encode())

    def load(self) -> None:
        path = self.folder / JOB_FILE
        if path.is_file():
            try:
                self.steps = dict(json.loads(path.read_text()).get("steps") or {})
            except (OSError, ValueError):
                log.warning("%s: unreadable, the job starts over", path)
                self.steps = {}

    def done(self, step: str) -> bool:
        return bool(self.steps.get(step, {}).get("ok"))


def find_categories(root: Path, wanted: Sequence[str] | None) -> list[tuple[str, Path]]:
    """Folders under ``root`` in MVTec layout (``train/good`` and ``test``), by name; ``wanted`` filters."""
    if not root.is_dir():
        raise BatchError(f"{root}: not a directory")
    found = {p.name: p.resolve() for p in sorted(root.iterdir())
             if (p / "train" / "good").is_dir() and (p / "test").is_dir()}
    if wanted:
        missing = [name for name in wanted if name not in found]
        if missing:
            raise BatchError(f"--categories: {', '.join(missing)} not found in MVTec layout under {root} "
                             f"(found: {', '.join(found) or 'none'})")
        return [(name, found[name]) for name in wanted]
    if not found:
        raise BatchError(f"{root}: no dataset folders in MVTec layout (DIR/train/good and DIR/test)")
    return list(found.items())


def preset_for(category: str, family: str) -> str | None:
    """The shipped preset made for this category and family (its ``categories`` list names it)."""
    for name in available_presets():
        preset = load_preset(name)
        if preset.model == family and category in preset.categories:
            return str(preset.path)
    return None


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def step_command(job: Job, step: str) -> list[str]:
    """The command line of one step (the project's own commands, run by this interpreter)."""
    run, bundle = job.folder / "run", job.folder / "bundle"
    if step == "train":
        command = [sys.executable, "-m", "training.cli", "--model", job.family, "--data", str(job.data),
                   "--out", str(run), "--quiet"]
        if job.preset:
            command += ["--preset", job.preset]
        if job.max_images:
            command += ["--max-images", str(job.max_images)]
        if (run / "checkpoint.pt").is_file():
            command.append("--resume")
        return command
    if step == "export":
        return _python("from export.cli import main; main()") + [str(run), "--out", str(bundle), "--overwrite"]
    if step == "calibrate":
        return _python("from calibration.cli import calibrate_main; calibrate_main()") + [str(bundle),
                                                                                        *job.calibrate_args]
    return _python("from calibration.cli import eval_main; eval_main()") + [
        str(bundle), "--data", str(job.data), "--json", str(job.folder / "eval.json")]


def run_step(command: list[str], log_path: Path, threads: int) -> dict[str, Any]:
    """Run ``command`` to completion; its exit status, wall and CPU seconds and peak RSS (MB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    with open(log_path, "ab") as out:
        out.write(("$ " + " ".join(command) + "\n").encode())
        out.flush()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return {"ok": process.returncode == 0, "returncode": process.returncode,
            "wall_s": round(time.perf_counter() - started, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1)}


def last_error(log_path: Path) -> str:
    """The last non-empty line of a step's log: the one-line error of the project's commands."""
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "no output"


def step_error(result: dict[str, Any], log_path: Path) -> str:
    """Why a step failed: the signal that killed it (OOM killer, an operator), else its last log line."""
    code = int(result["returncode"])
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} after {result['wall_s']:.0f} s (see {log_path.name})"
    return last_error(log_path)


def run_job(job: Job, threads: int) -> Job:
    """Run the job's steps that are not done yet, in order; stop at the first failure."""
    job.folder.mkdir(parents=True, exist_ok=True)
    job.load()
    job.error = None
    for step in STEPS:
        if job.done(step):
            continue
        for later in STEPS[STEPS.index(step) + 1:]:
            job.steps.pop(later, None)  # a redone step invalidates what was built on it
        log_path = job.folder / f"{step}.log"
        result = run_step(step_command(job, step), log_path, threads)
        job.steps[step] = result
        if not result["ok"]:
            job.error = f"{step}: {step_error(result, log_path)}"
        job.save()
        if job.error:
            log.warning("%s failed at %s", job.name, job.error)
            break
    return job


def available_memory_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return float("inf")


class Scheduler:
    """Start jobs while ``jobs`` slots and the memory they are expected to need allow."""

    def __init__(self, jobs: int, cpus: int) -> None:
        self.slots = jobs
        self.cpus = cpus
        self.lock = threading.Condition()
        self.running: dict[str, float] = {}
        self.peak: dict[str, float] = {}

    def expected_mb(self, job: Job) -> float:
        return self.peak.get(job.family, DEFAULT_MEMORY_MB)

    def acquire(self, job: Job) -> int:
        """Wait for a slot and the memory; return the threads the job may use."""
        need = self.expected_mb(job)
        with self.lock:
            while True:
                reserved = sum(self.running.values())
                fits = available_memory_mb() - reserved >= need + MEMORY_RESERVE_MB
                if len(self.running) < self.slots and (fits or not self.running):
                    self.running[job.name] = need
                    return max(1, self.cpus // self.slots)
                self.lock.wait(timeout=5.0)

    def release(self, job: Job) -> None:
        with self.lock:
            self.running.pop(job.name, None)
            rss = max((s.get("peak_rss_mb", 0.0) for s in job.steps.values()), default=0.0)
            if rss:
                self.peak[job.family] = max(self.peak.get(job.family, 0.0), rss)
            self.lock.notify_all()


def run_batch(jobs: list[Job], parallel: int, progress: bool) -> float:
    """Run every job (at most ``parallel`` at once); return the wall seconds of the batch."""
    scheduler = Scheduler(parallel, os.cpu_count() or 1)
    started = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="batch", unit="job", disable=not progress)
    pending = list(jobs)
    pending_lock = threading.Lock()

    def worker() -> None:
        while True:
            with pending_lock:
                if not pending:
                    return
                job = pending.pop(0)
            threads = scheduler.acquire(job)
            try:
                run_job(job, threads)
            finally:
                scheduler.release(job)
                bar.set_postfix_str(f"{job.name}: {'failed' if job.error else 'ok'}")
                bar.update(1)

    workers = [threading.Thread(target=worker, name=f"batch-{i}") for i in range(max(1, parallel))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    bar.close()
    return time.perf_counter() - started


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder for the jobs (OUT/<category>/<model>/: run, bundle, eval.json, logs) and the summary.")
@click.option("--models", default="patchcore", show_default=True,
              help="Comma-separated model families to train per category (patchcore, padim, autoencoder).")
@click.option("--categories", default=None, help="Comma-separated dataset folder names (default: every one).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Jobs run in parallel where memory allows; the cores are shared between them.")
@click.option("--no-presets", is_flag=True, help="Do not apply the shipped presets made for a category.")
@click.option("--max-images", default=None, type=click.IntRange(min=2),
              help="Train on at most N images per category (quick trial runs).")
@click.option("--target-frr", default=None, type=float,
              help="edge-calibrate's false-reject target for every category (default: edge-calibrate's).")
@click.option("--allow-few", is_flag=True,
              help="Pass --allow-few to edge-calibrate: calibrate on fewer held-out good images than the target "
              "needs (recorded in each bundle.yaml).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def main(root: Path, out: Path, models: str, categories: str | None, jobs: int, no_presets: bool,
         max_images: int | None, target_frr: float | None, allow_few: bool, quiet: bool) -> None:
    """Train, export, calibrate and evaluate every MVTec-layout dataset folder under ROOT.

    Each (category, model) pair is a job in OUT/<category>/<model>/; each step runs as its own
    process, so one failing category never stops the others. Finished steps are recorded in
    job.json and skipped when the same command runs again (resumable after a crash). A summary
    table (category, family, image/pixel AUROC, F1, FRR, escape rate, training time, peak RSS,
    bundle size, p50 latency) is written to OUT/summary.md and OUT/summary.json. Example:

        edge-train-batch ../shared/datasets --out batch/ --models padim,autoencoder --jobs 2
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with exit_if_missing("edge-train-batch", "edge-train-batch"):  # the registry needs torch: one line without it
        from training.families.registry import FAMILIES

    families = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in families if m not in FAMILIES]
    if unknown or not families:
        raise BatchError(f"--models: unknown {', '.join(unknown) or '(none given)'}; supported: {', '.join(FAMILIES)}")
    wanted = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    found = find_categories(root, wanted)
    out = out.resolve()
    calibrate_args = (*(("--target-frr", str(target_frr)) if target_frr is not None else ()),
                      *(("--allow-few",) if allow_few else ()))
    batch = [Job(category=name, data=data, family=family, folder=out / name / family,
                 preset=None if no_presets else preset_for(name, family), max_images=max_images,
                 calibrate_args=calibrate_args)
             for name, data in found for family in families]
    wall = run_batch(batch, jobs, not quiet)
    rows = summary_rows(batch)
    paths = write_summary(out, rows, wall, {"root": str(root.resolve()), "models": families, "jobs": jobs})
    failed = [job for job in batch if job.error]
    click.echo(paths["markdown"].read_text())
    click.echo(f"batch: {len(batch) - len(failed)} of {len(batch)} jobs ok in {wall:.0f} s; summary in "
               f"{paths['markdown']} and {paths['json']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
