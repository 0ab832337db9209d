"""Inference worker processes: each loads the model once and runs one job at a time.

Processes, not threads, because a job past its execution timeout or cancelled while running has
to stop now, and only a process can be stopped mid-computation; and because inference then never
holds the server's GIL. Each worker slot has a supervising thread in the server that claims a job
from the store, hands it to its process over a pipe, and watches for the result, a cancellation,
the job's deadline, or the process dying (the job is then queued again, up to `max_attempts`).
A killed process is replaced by a new one, which loads the model again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from splatforge.errors import SplatforgeError
from splatforge.serve.fetch import UrlPolicy
from splatforge.serve.handler import SCENE_SUFFIX, ImageLimits, SceneFile, predict_scene_file
from splatforge.serve.jobs import Job, JobStore, result_dir
from splatforge.serve.schemas import parse_job_input

log = logging.getLogger("splatforge.serve")


@dataclass
class ModelSpec:
    """Which predictor each worker builds (see `splatforge.predict.build_predictor`)."""

    preset: str = "default"
    checkpoint: Optional[str] = None
    seed: Optional[int] = None  # random weights from this seed (no checkpoint): tests and benchmarks
    device: str = "cpu"
    torch_threads: int = 1  # intra-op threads per worker process


@dataclass
class WorkerSettings:
    model: ModelSpec = field(default_factory=ModelSpec)
    limits: ImageLimits = field(default_factory=ImageLimits)
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)
    default_execution_timeout_s: float = 600.0
    max_attempts: int = 3  # runs of one job that a worker crash or server restart may cost
    startup_timeout_s: float = 300.0


# ---------------------------------------------------------------------------- worker process


def _worker_main(conn, settings: WorkerSettings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    try:
        import torch

        torch.set_num_threads(max(1, settings.model.torch_threads))
        from splatforge.predict import build_predictor

        spec = settings.model
        predictor = build_predictor(spec.preset, checkpoint=spec.checkpoint, seed=spec.seed, device=spec.device)
    except Exception as err:  # noqa: BLE001 - reported to the server, which logs it
        conn.send(("fatal", f"cannot load the model: {type(err).__name__}: {err}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, job_id, job_input, out_dir = message
        try:
            job = parse_job_input(job_input)
            scene = predict_scene_file(job, predictor, Path(out_dir), limits=settings.limits,
                                       url_policy=settings.url_policy,
                                       progress=lambda stage: conn.send(("progress", stage)))
            reply = ("done", {**asdict(scene), "path": scene.path.name})
        except SplatforgeError as err:
            reply = ("error", str(err))
        except MemoryError:
            reply = ("error", "the worker ran out of memory on this image; send a smaller image")
        except Exception as err:  # noqa: BLE001 - a bug: full trace to the log, a short message to the user
            traceback.print_exc()
            reply = ("error", f"internal error while predicting ({type(err).__name__}); see the server log")
        try:
            conn.send(reply)
        except (OSError, ValueError):  # the server is gone
            return


# ---------------------------------------------------------------------------- server side


class _Slot:
    def __init__(self, index: int):
        self.id = f"worker-{index}"
        self.process = None
        self.conn = None
        self.state = "initializing"  # initializing | idle | running | unhealthy
        self.job_id: Optional[str] = None
        self.stage: Optional[str] = None
        self.abort_for: Optional[str] = None  # id of the job to stop: a job id, so a late abort cannot hit the next job


class WorkerPool:
    """N worker processes fed from `store`. `on_terminal(job_id)` runs after each terminal
    transition this pool makes (for webhooks and waiting /runsync requests)."""

    def __init__(self, store: JobStore, results_root: Path, settings: WorkerSettings, workers: int = 1,
                 on_terminal: Optional[Callable[[str], None]] = None):
        self.store = store
        self.results_root = Path(results_root)
        self.settings = settings
        self.on_terminal = on_terminal or (lambda job_id: None)
        self._slots = [_Slot(i) for i in range(max(1, workers))]
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._threads: list[threading.Thread] = []
        self._ctx = multiprocessing.get_context("spawn")

    # -- control

    def start(self) -> None:
        for slot in self._slots:
            thread = threading.Thread(target=self._run_slot, args=(slot,), name=slot.id, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming jobs, give running jobs `grace_s` to finish, then stop every process.
        A job still running then stays IN_PROGRESS in the store and runs again at the next start."""
        self._stop_deadline = time.monotonic() + grace_s
        self._stopping.set()
        self.notify()
        for thread in self._threads:
            thread.join(grace_s + 10)
        for slot in self._slots:
            self._stop_process(slot, graceful=True)

    def notify(self) -> None:
        """A job was queued: wake an idle slot."""
        with self._wake:
            self._wake.notify_all()

    def abort(self, job_id: str, reason: str) -> bool:
        """Stop the process running `job_id` (its status was already changed by the caller)."""
        for slot in self._slots:
            if slot.job_id == job_id:
                slot.abort_for = job_id
                log.info("stopping job %s on %s: %s", job_id, slot.id, reason)
                return True
        return False

    def counts(self) -> dict[str, int]:
        states = [s.state for s in self._slots]
        return {k: states.count(k) for k in ("idle", "initializing", "running", "unhealthy")}

    def stage_of(self, job_id: str) -> Optional[str]:
        for slot in self._slots:
            if slot.job_id == job_id:
                return slot.stage
        return None

    # -- slot loop

    def _run_slot(self, slot: _Slot) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            if slot.process is None:
                if not self._start_process(slot):
                    slot.state = "unhealthy"
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                backoff = 1.0
            slot.state = "idle"
            if self._stopping.is_set():
                break
            job = self.store.claim(slot.id)
            if job is None:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            slot.state = "running"
            try:
                self._run_job(slot, job)
            except Exception:  # noqa: BLE001 - keep the slot alive; the job is requeued or failed
                log.exception("worker slot %s failed on job %s", slot.id, job.id)
                self._stop_process(slot, graceful=False)
                self._after(job.id, self.store.requeue_or_fail(job.id, self.settings.max_attempts,
                                                               "the worker failed"))
            finally:
                slot.job_id, slot.stage, slot.abort_for = None, None, None

    def _start_process(self, slot: _Slot) -> bool:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, self.settings), name=slot.id, daemon=True)
        slot.state = "initializing"
        process.start()
        child.close()
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if parent.poll(0.2):
                try:
                    kind, detail = parent.recv()
                except (EOFError, OSError):
                    break
                if kind == "ready":
                    slot.process, slot.conn = process, parent
                    return True
                log.error("worker %s: %s", slot.id, detail)
                break
            if not process.is_alive():
                log.error("worker %s exited while loading the model (exit code %s)", slot.id, process.exitcode)
                break
        process.kill()
        process.join(5)
        parent.close()
        return False

    def _stop_process(self, slot: _Slot, graceful: bool) -> None:
        process, conn = slot.process, slot.conn
        slot.process, slot.conn = None, None
        if process is None:
            return
        if graceful:
            try:
                conn.send(("stop",))
                process.join(2)
            except (OSError, ValueError):
                pass
        if process.is_alive():
            process.kill()
        process.join(5)
        conn.close()

    def _deadline(self, job: Job) -> tuple[float, str]:
        timeout_s = (job.execution_timeout_ms / 1000 if job.execution_timeout_ms
                     else self.settings.default_execution_timeout_s)
        return time.time() + timeout_s, f"the job ran longer than its execution timeout of {timeout_s:g} s"

    def _run_job(self, slot: _Slot, job: Job) -> None:
        slot.job_id, slot.stage = job.id, "starting"
        out_dir = result_dir(self.results_root, job.id)
        shutil.rmtree(out_dir, ignore_errors=True)  # a previous, interrupted attempt
        deadline, timeout_message = self._deadline(job)
        try:
            slot.conn.send(("job", job.id, job.input, str(out_dir)))
        except (OSError, ValueError):
            self._process_died(slot, job)
            return
        while True:
            if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
                self._stop_process(slot, graceful=False)
                return  # left IN_PROGRESS on purpose: recovered and run again at the next start
            if slot.abort_for == job.id:
                self._stop_process(slot, graceful=False)
                current = self.store.get(job.id)  # the caller (cancel, ttl) set a terminal status first
                if current is not None and not current.terminal:
                    self._after(job.id, self.store.requeue_or_fail(job.id, self.settings.max_attempts,
                                                                   "the job's worker was stopped"))
                return
            if time.time() > deadline:
                self._stop_process(slot, graceful=False)
                self._after(job.id, "TIMED_OUT" if self.store.finish(job.id, "TIMED_OUT", error=timeout_message)
                            else None)
                return
            try:
                ready = slot.conn.poll(0.05)
                message = slot.conn.recv() if ready else None
            except (EOFError, OSError):
                self._process_died(slot, job)
                return
            if message is None:
                if not slot.process.is_alive():
                    self._process_died(slot, job)
                    return
                continue
            kind, detail = message
            if kind == "progress":
                slot.stage = detail
                continue
            if kind == "done":
                ok = self.store.finish(job.id, "COMPLETED", result=detail)
            else:
                ok = self.store.finish(job.id, "FAILED", error=detail)
            self._after(job.id, "done" if ok else None)
            return

    def _process_died(self, slot: _Slot, job: Job) -> None:
        code = slot.process.exitcode if slot.process is not None else None
        self._stop_process(slot, graceful=False)
        if slot.abort_for == job.id:
            return
        log.error("worker %s died running job %s (exit code %s)", slot.id, job.id, code)
        self._after(job.id, self.store.requeue_or_fail(job.id, self.settings.max_attempts,
                                                       f"the worker process died (exit code {code})"))

    def _after(self, job_id: str, outcome: Optional[str]) -> None:
        if outcome not in (None, "IN_QUEUE", "GONE"):
            self.on_terminal(job_id)
        elif outcome == "IN_QUEUE":
            self.notify()


def scene_file_of(results_root: Path, job: Job) -> Optional[SceneFile]:
    """The SceneFile a completed job wrote (None if its file is gone)."""
    if job.result is None:
        return None
    path = result_dir(results_root, job.id) / f"scene{SCENE_SUFFIX[job.result['format']]}"
    if not path.is_file():
        return None
    return SceneFile(**{**job.result, "path": path})
