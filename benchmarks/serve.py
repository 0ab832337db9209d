"""serve benchmark: 8 concurrent clients x 50 jobs against a real `splatforge serve` process on
127.0.0.1 (small preset), then the same with the server killed by SIGKILL and restarted mid-run.

Reports throughput, p50/p99 latency (submit to terminal status seen by the client), and lost and
duplicated jobs: lost = accepted (the client got an id) but never seen terminal; duplicated =
more than one terminal transition recorded for a job. The reference is the same job run
in-process, one after another (`predict_scene_file`, no HTTP, no queue), in this run.

    .venv/bin/python benchmarks/serve.py [--clients 8] [--jobs 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
KEY = "bench-key"


def png_b64(seed: int, width: int = 64, height: int = 48) -> str:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Server:
    def __init__(self, data: Path, port: int, workers: int, max_queue: int):
        self.data, self.port, self.workers, self.max_queue = data, port, workers, max_queue
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> float:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "splatforge.serve_cli", "serve", "--preset", "small", "--seed", "0", "--port", str(self.port),
               "--data-dir", str(self.data), "--workers", str(self.workers), "--torch-threads", "1",
               "--max-queue", str(self.max_queue), "--log-level", "warning"]
        log = open(self.data.parent / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, env={**os.environ, "SPLATFORGE_API_KEY": KEY}, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited; see {self.data.parent / 'server.log'}")
            try:
                health = httpx.get(f"http://127.0.0.1:{self.port}/v2/b/health",
                                   headers={"Authorization": f"Bearer {KEY}"}, timeout=2).json()
                if health["workers"]["idle"] + health["workers"]["running"] >= self.workers:
                    return time.perf_counter() - t0
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise SystemExit("server did not become ready")

    def _reap(self, kids: list[int]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(k) for k in kids):
            time.sleep(0.1)
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)

    def kill(self) -> None:
        kids = children(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reap(kids)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reap(kids)


def client_loop(index: int, jobs: int, port: int, images: list[str], results: list, deadline: float) -> None:
    """Submit, then poll to a terminal status, `jobs` times; connection errors (a server being
    restarted) are retried until `deadline`."""
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}/v2/b", headers={"Authorization": f"Bearer {KEY}"},
                        timeout=10)
    for n in range(jobs):
        t0 = time.perf_counter()
        job_id = None
        while job_id is None and time.monotonic() < deadline:
            try:
                r = http.post("/run", json={"input": {"image": images[(index * jobs + n) % len(images)]}})
                if r.status_code == 200:
                    job_id = r.json()["id"]
                else:  # 429: queue full
                    time.sleep(0.2)
            except httpx.HTTPError:
                time.sleep(0.2)
        if job_id is None:
            results.append(("unsubmitted", None, None))
            continue
        status = None
        while time.monotonic() < deadline:
            try:
                r = http.get(f"/status/{job_id}")
                if r.status_code == 200 and r.json()["status"] in TERMINAL:
                    status = r.json()["status"]
                    break
                if r.status_code == 404:
                    status = "GONE"
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        results.append((job_id, status, time.perf_counter() - t0))
    http.close()


def run_phase(clients: int, jobs: int, workers: int, kill_after: float | None, images: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        data = Path(tmp) / "data"
        server = Server(data, free_port(), workers, max_queue=4 * clients)
        server.start()
        results: list = []
        deadline = time.monotonic() + 900
        threads = [threading.Thread(target=client_loop, args=(i, jobs, server.port, images, results, deadline))
                   for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        restart_s = None
        if kill_after is not None:
            total = clients * jobs
            while len(results) < total * kill_after and any(t.is_alive() for t in threads):
                time.sleep(0.05)
            server.kill()
            restart_s = server.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        server.stop()
        db = sqlite3.connect(str(data / "jobs.sqlite3"))
        events = Counter(job_id for (job_id,) in db.execute("SELECT job_id FROM events"))
        db.close()
    accepted = [r for r in results if r[0] != "unsubmitted"]
    done = [r for r in accepted if r[1] == "COMPLETED"]
    lat = np.array([r[2] for r in done]) if done else np.array([np.nan])
    return {"jobs": clients * jobs, "accepted": len(accepted), "completed": len(done),
            "failed": sum(1 for r in accepted if r[1] in ("FAILED", "TIMED_OUT", "CANCELLED")),
            "lost": sum(1 for r in accepted if r[1] in (None, "GONE")),
            "duplicated": sum(1 for r in accepted if events.get(r[0], 0) > 1),
            "unrecorded": sum(1 for r in accepted if events.get(r[0], 0) == 0),
            "wall_s": wall, "throughput": len(done) / wall, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "restart_s": restart_s}


def reference(images: list[str], count: int) -> float:
    """Jobs/s of the bare job in this process, one after another."""
    import torch

    from splatforge.predict import build_predictor
    from splatforge.serve import ImageLimits, UrlPolicy, predict_scene_file
    from splatforge.serve.schemas import parse_job_input

    torch.set_num_threads(1)
    predictor = build_predictor("small", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        job = parse_job_input({"image": images[0]})
        predict_scene_file(job, predictor, Path(tmp), limits=ImageLimits(), url_policy=UrlPolicy())  # warm-up
        t0 = time.perf_counter()
        for i in range(count):
            job = parse_job_input({"image": images[i % len(images)]})
            predict_scene_file(job, predictor, Path(tmp) / str(i), limits=ImageLimits(), url_policy=UrlPolicy())
        return count / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=50, help="jobs per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reference-jobs", type=int, default=40)
    args = parser.parse_args()
    images = [png_b64(seed) for seed in range(16)]
    ref = reference(images, args.reference_jobs)
    rows = [("steady", run_phase(args.clients, args.jobs, args.workers, None, images)),
            ("SIGKILL+restart at 50%", run_phase(args.clients, args.jobs, args.workers, 0.5, images))]
    print(f"\nserve benchmark: {args.clients} clients x {args.jobs} jobs, {args.workers} worker process(es), "
          f"small preset, 64x48 PNGs, 127.0.0.1")
    print(f"reference: the bare job in-process, sequential, 1 thread: {ref:.1f} jobs/s\n")
    header = (f"{'run':<24}{'accepted':>9}{'completed':>10}{'failed':>7}{'lost':>6}{'dup':>5}{'jobs/s':>8}"
              f"{'x ref':>7}{'p50 s':>8}{'p99 s':>8}{'restart s':>11}")
    print(header)
    print("-" * len(header))
    for name, r in rows:
        restart = f"{r['restart_s']:.1f}" if r["restart_s"] is not None else "-"
        print(f"{name:<24}{r['accepted']:>9}{r['completed']:>10}{r['failed']:>7}{r['lost']:>6}{r['duplicated']:>5}"
              f"{r['throughput']:>8.2f}{r['throughput'] / ref:>7.2f}{r['p50']:>8.2f}{r['p99']:>8.2f}{restart:>11}")
    for name, r in rows:
        if r["unrecorded"]:
            print(f"note ({name}): {r['unrecorded']} accepted jobs have no terminal event in the database")


if __name__ == "__main__":
    main()
