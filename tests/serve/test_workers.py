"""The service with two worker processes: a cancel that races a claim stops the job, a job
cancelled by another connection to the store is stopped by its worker, a worker killed mid-job
costs one attempt and no second terminal state, workers whose model stops loading show in /health
and fail the queue with the reason, and result links in webhook bodies lead to the file."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from splatforge.errors import SplatforgeError
from splatforge.serve import ModelSpec, SceneService, ServeConfig, create_app
from splatforge.serve.fetch import UrlPolicy
from splatforge.serve.jobs import JobStore
from splatforge.serve.workers import check_model
from tests.serve.conftest import (SMALL, LocalServer, SilentServer, b64, png_bytes, serve_client, small_config,
                                  wait_for, wait_terminal)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GOOD = b64(png_bytes())
KEY = {"Authorization": "Bearer test-key"}
PUBLIC = "http://splat.example.test:8443"  # not the test client's own base, so links show which one they use


def two_worker_config(data_dir, images: LocalServer, silent: SilentServer, **overrides) -> ServeConfig:
    # A read timeout far beyond any wait here: a job on the silent server runs until it is stopped.
    policy = UrlPolicy(allow=(f"127.0.0.1:{images.port}", f"127.0.0.1:{silent.port}"), connect_timeout=2.0,
                       read_timeout=600.0, total_timeout=600.0)
    return small_config(data_dir, workers=2, url_policy=policy, **overrides)


def wait_all_idle(client, headers=None):
    ok = wait_for(lambda: client.get("/v2/e/health", headers=headers or {}).json()["workers"]["idle"] == 2,
                  timeout=120, interval=0.2)
    assert ok, client.get("/v2/e/health", headers=headers or {}).json()


def runner_of(pool, job_id):
    return next((s for s in pool._slots if s.job_id == job_id and s.process is not None), None)


@pytest.fixture(scope="module")
def servers():
    images, silent = LocalServer(), SilentServer()
    yield images, silent
    images.close()
    silent.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory, servers):
    """Two workers, an API key, a public URL, and every result given as a link."""
    images, silent = servers
    config = two_worker_config(tmp_path_factory.mktemp("serve2"), images, silent, api_key="test-key",
                               public_url=PUBLIC + "/", inline_limit=1000)
    with serve_client(config) as client:
        wait_all_idle(client, KEY)
        yield client, images, silent


# ---------------------------------------------------------------------------- cancel


class GatedStore(JobStore):
    """Workers' claims wait at a gate that a cancel opens: the job is claimed after the cancel
    request arrived and before the store applies it, the window of the cancel race."""

    def __init__(self, path):
        super().__init__(path)
        self.gate, self.claimed = threading.Event(), threading.Event()

    def claim(self, worker_id):
        self.gate.wait()
        job = super().claim(worker_id)
        if job is not None:
            self.claimed.set()
        return job

    def cancel(self, job_id):
        self.gate.set()
        assert self.claimed.wait(60), "no worker claimed the job"
        return super().cancel(job_id)


def test_a_job_claimed_while_it_is_cancelled_is_stopped(tmp_path, servers):
    images, silent = servers
    config = two_worker_config(tmp_path, images, silent)
    store = GatedStore(tmp_path / "jobs.sqlite3")
    app = create_app(config, SceneService(config, store=store))
    from fastapi.testclient import TestClient

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_all_idle(client)
            job_id = client.post("/v2/e/run", json={"input": {"image_url": silent.url()}}).json()["id"]
            assert client.post(f"/v2/e/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
            pool = app.state.service.pool
            # The worker that claimed it stops it, rather than running it to its end.
            assert wait_for(lambda: all(s.job_id != job_id for s in pool._slots), timeout=30), \
                "the cancelled job is still running"
            assert store.get(job_id).status == "CANCELLED"
            assert [e for e in store.terminal_events() if e[0] == job_id] == [(job_id, "CANCELLED")]
            wait_all_idle(client)
            assert client.post("/v2/e/runsync", json={"input": {"image": GOOD}}).json()["status"] == "COMPLETED"
    finally:
        store.gate.set()


def test_a_job_cancelled_through_another_connection_is_stopped_by_its_worker(env):
    client, _, silent = env
    pool, path = client.app.state.service.pool, client.app.state.service.data_dir / "jobs.sqlite3"
    job_id = client.post("/v2/e/run", json={"input": {"image_url": silent.url()}}, headers=KEY).json()["id"]
    slot = wait_for(lambda: runner_of(pool, job_id), timeout=60)
    assert slot is not None
    pid = slot.process.pid
    other = JobStore(path)  # another server process or an admin script on the same store
    try:
        assert other.cancel(job_id) == ("CANCELLED", slot.id)
    finally:
        other.close()
    assert wait_for(lambda: slot.job_id != job_id, timeout=30), "the worker did not notice the cancel"
    assert wait_for(lambda: slot.process is not None and slot.process.pid != pid, timeout=60)  # replaced
    assert client.get(f"/v2/e/status/{job_id}", headers=KEY).json()["status"] == "CANCELLED"
    wait_all_idle(client, KEY)


# ---------------------------------------------------------------------------- a worker dies mid-job


def test_a_worker_killed_mid_job_costs_one_attempt_and_the_job_ends_once(env):
    client, images, _ = env
    service = client.app.state.service
    job_id = client.post("/v2/e/run", json={"input": {"image_url": images.url("/slow.png?s=2")},
                                            "webhook": images.url("/hook-killed")}, headers=KEY).json()["id"]
    slot = wait_for(lambda: runner_of(service.pool, job_id), timeout=60)
    assert slot is not None and service.store.get(job_id).attempts == 1
    os.kill(slot.process.pid, signal.SIGKILL)  # a worker process this app started
    body = wait_terminal(client, job_id, headers=KEY)
    assert body["status"] == "COMPLETED", body
    assert service.store.get(job_id).attempts == 2
    assert [e for e in service.store.terminal_events() if e[0] == job_id] == [(job_id, "COMPLETED")]
    hooks = wait_for(lambda: [json.loads(b) for p, b in images.received if p == "/hook-killed"], timeout=30)
    assert [h["status"] for h in hooks] == ["COMPLETED"]
    wait_all_idle(client, KEY)


# ---------------------------------------------------------------------------- result links


def test_webhook_links_lead_to_the_result_file(env, tmp_path):
    from splatforge.io.ply import read_splat_ply

    client, images, _ = env
    job_id = client.post("/v2/e/run", json={"input": {"image": GOOD}, "webhook": images.url("/hook-links")},
                         headers=KEY).json()["id"]
    wait_terminal(client, job_id, headers=KEY)
    bodies = wait_for(lambda: [json.loads(b) for p, b in images.received if p == "/hook-links"], timeout=30)
    assert bodies and bodies[0]["id"] == job_id and bodies[0]["status"] == "COMPLETED"
    output = bodies[0]["output"]
    assert "ply" not in output
    link = output["ply_url"]
    assert link == f"{PUBLIC}/v2/e/results/{job_id}/scene.ply"
    assert client.get(link).status_code == 401  # the result route keeps the API key rule
    raw = client.get(link, headers=KEY)
    assert raw.status_code == 200
    (tmp_path / "scene.ply").write_bytes(raw.content)
    assert read_splat_ply(tmp_path / "scene.ply")["means"].shape == (output["num_gaussians"], 3)
    # Polling gives the same link.
    assert client.get(f"/v2/e/status/{job_id}", headers=KEY).json()["output"]["ply_url"] == link


def test_without_a_public_url_links_use_the_base_of_the_request(env):
    client, images, _ = env
    service = client.app.state.service
    saved, service.public_url = service.public_url, None
    try:
        job_id = client.post("/v2/endpoint-7/run", json={"input": {"image": GOOD},
                                                         "webhook": images.url("/hook-base")},
                             headers=KEY).json()["id"]
        wait_terminal(client, job_id, headers=KEY)
    finally:
        service.public_url = saved
    bodies = wait_for(lambda: [json.loads(b) for p, b in images.received if p == "/hook-base"], timeout=30)
    link = bodies[0]["output"]["ply_url"]
    assert link == f"http://testserver/v2/endpoint-7/results/{job_id}/scene.ply"
    assert client.get(link, headers=KEY).content.startswith(b"ply\n")


def test_public_url_from_the_environment_and_bad_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLATFORGE_PUBLIC_URL", "https://splat.example.com/")
    assert ServeConfig().public_url == "https://splat.example.com/"
    assert SceneService(ServeConfig(data_dir=tmp_path / "ok")).public_url == "https://splat.example.com"
    for bad in ("splat.example.com", "ftp://splat.example.com", "https://", "https://x.example/?a=1"):
        with pytest.raises(SplatforgeError, match="SPLATFORGE_PUBLIC_URL"):
            SceneService(ServeConfig(data_dir=tmp_path / "bad", public_url=bad))
        assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------- model loading


def small_checkpoint(path):
    import torch

    from splatforge.predict import build_predictor

    torch.save(build_predictor("small", seed=0).state_dict(), path)
    return path


def test_check_model_reports_why_the_model_cannot_load(tmp_path):
    with pytest.raises(SplatforgeError, match="cannot load the model .*no released weights"):
        check_model(ModelSpec(preset="small", torch_threads=1))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SplatforgeError, match="not a readable PyTorch checkpoint"):
        check_model(ModelSpec(preset="small", checkpoint=str(tmp_path / "bad.pt"), torch_threads=1))
    check_model(SMALL)  # loads: no error


def test_serve_with_a_model_that_cannot_load_stops_before_it_binds(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.serve.conftest import free_port

    port = free_port()

    def answers() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    # --preset small with neither --seed nor --checkpoint: no weights to load.
    proc = subprocess.Popen([sys.executable, "-m", "splatforge.serve_cli", "serve", "--preset", "small", "--port",
                             str(port), "--data-dir", str(tmp_path / "data"), "--torch-threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: proc.poll() is not None or answers(), timeout=180, interval=0.1)
        assert not answers(), "serve bound its port although its model cannot load"
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()  # the server this test started
            proc.wait(10)
    assert proc.returncode == 2, out + err
    assert "cannot load the model" in err and "no released weights" in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()


def test_worker_with_a_model_that_cannot_load_exits_with_the_reason(capsys, monkeypatch):
    from splatforge.serve_cli import main

    monkeypatch.setattr("sys.argv", ["splatforge"])  # the worker command hands sys.argv to the runpod SDK
    assert main(["worker", "--preset", "small", "--torch-threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "no released weights" in err


def test_workers_whose_model_stops_loading_show_in_health_and_fail_the_queue(tmp_path, servers):
    images, silent = servers
    checkpoint = small_checkpoint(tmp_path / "small.pt")
    good = checkpoint.read_bytes()
    model = ModelSpec(preset="small", checkpoint=str(checkpoint), torch_threads=1)
    config = two_worker_config(tmp_path / "data", images, silent, model=model, worker_load_attempts=2,
                               worker_restart_backoff_s=0.2)
    with serve_client(config) as client:
        wait_all_idle(client)
        pool = client.app.state.service.pool
        running = client.post("/v2/e/run", json={"input": {"image_url": silent.url()}}).json()["id"]
        assert wait_for(lambda: runner_of(pool, running), timeout=60)
        checkpoint.write_bytes(b"not a checkpoint any more")
        for slot in pool._slots:
            os.kill(slot.process.pid, signal.SIGKILL)  # worker processes this app started

        body = wait_terminal(client, running, timeout=120)
        assert body["status"] == "FAILED", body
        assert "no worker can run jobs" in body["error"] and "not a readable PyTorch checkpoint" in body["error"]
        health = client.get("/v2/e/health")
        assert health.status_code == 503
        health = health.json()
        assert health["status"] == "unhealthy" and health["workers"]["unhealthy"] == 2
        for worker in health["workerStates"]:
            assert worker["state"] == "unhealthy" and worker["loadFailures"] >= 2
            assert "not a readable PyTorch checkpoint" in worker["error"]
        # Jobs queued now end FAILED with the reason too, instead of waiting.
        later = client.post("/v2/e/runsync", json={"input": {"image": GOOD}}).json()
        later = later if later["status"] == "FAILED" else wait_terminal(client, later["id"], timeout=120)
        assert later["status"] == "FAILED" and "not a readable PyTorch checkpoint" in later["error"]

        checkpoint.write_bytes(good)  # the cause fixed, the workers come back on their own
        assert wait_for(lambda: client.get("/v2/e/health").json()["status"] == "healthy", timeout=180,
                        interval=0.2), client.get("/v2/e/health").json()
        assert client.post("/v2/e/runsync", json={"input": {"image": GOOD}}).json()["status"] == "COMPLETED"
