"""The official `runpod` client, unchanged, against a real `splatforge serve` process; and a
server killed with SIGKILL mid-work that, restarted, completes every job exactly once."""

from __future__ import annotations

import httpx
import pytest
import runpod

from splatforge.serve.jobs import JobStore
from tests.serve.conftest import LocalServer, ServerProcess, b64, png_bytes, wait_for

GOOD = b64(png_bytes())


@pytest.fixture
def served(shared_server):
    server, images = shared_server
    saved = runpod.endpoint_url_base, runpod.api_key
    runpod.endpoint_url_base, runpod.api_key = server.base, server.api_key
    try:
        yield server, images
    finally:
        runpod.endpoint_url_base, runpod.api_key = saved


def test_run_sync(served):
    output = runpod.Endpoint("splat").run_sync({"image": GOOD}, timeout=60)
    assert output["status"] == "success" and output["image_size"] == {"width": 64, "height": 48}
    assert output["num_gaussians"] > 0 and output["ply"]


def test_run_status_output(served):
    job = runpod.Endpoint("splat").run({"input": {"image": GOOD, "focal_length_px": 70}})
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    output = job.output(timeout=60)
    assert output["status"] == "success" and output["focal_length_px"] == pytest.approx(70)
    assert job.status() == "COMPLETED"


def test_failed_job_through_the_client(served):
    endpoint = runpod.Endpoint("splat")
    assert endpoint.run_sync({"image": b64(png_bytes(256, 256)[:400])}, timeout=60) is None
    job = endpoint.run({"image": b64(png_bytes(256, 256)[:400])})
    assert wait_for(lambda: job.status() == "FAILED", timeout=60)


def test_cancel_health_purge(served):
    server, images = served
    endpoint = runpod.Endpoint("splat")
    idle = wait_for(lambda: (lambda h: h["jobs"]["inQueue"] == 0 and h["workers"]["running"] == 0)(endpoint.health()),
                    timeout=60)
    assert idle, "jobs from earlier tests are still queued or running"
    slow = endpoint.run({"image_url": images.url("/slow.png?s=5")})
    queued = endpoint.run({"image": GOOD})
    assert wait_for(lambda: slow.status() == "IN_PROGRESS", timeout=30)
    health = endpoint.health()
    assert health["workers"]["running"] == 1 and health["jobs"]["inQueue"] == 1
    assert endpoint.purge_queue() == {"removed": 1, "status": "completed"}
    assert queued.status() == "CANCELLED"
    assert slow.cancel() == {"id": slow.job_id, "status": "CANCELLED"}
    assert slow.status() == "CANCELLED"
    assert runpod.Endpoint("splat").run_sync({"image": GOOD}, timeout=60)["status"] == "success"


def test_wrong_api_key_is_refused(served):
    with pytest.raises(RuntimeError, match="401"):
        runpod.Endpoint("splat", api_key="wrong-key").health()


def test_sigkill_with_jobs_queued_and_running_then_restart_completes_each_once(tmp_path):
    images = LocalServer()
    data = tmp_path / "data"
    server = ServerProcess(data, extra=("--allow-url-host", f"127.0.0.1:{images.port}")).start()
    try:
        client = httpx.Client(base_url=f"{server.base}/e", headers=server.headers, timeout=10)
        ids = [client.post("/run", json={"input": {"image_url": images.url("/slow.png?s=2")}}).json()["id"]]
        ids += [client.post("/run", json={"input": {"image": b64(png_bytes(seed=i))}}).json()["id"] for i in range(5)]
        assert wait_for(lambda: client.get(f"/status/{ids[0]}").json()["status"] == "IN_PROGRESS", timeout=30)
        server.kill()
        server = ServerProcess(data, port=server.port, extra=server.extra).start()

        def all_done():
            statuses = [client.get(f"/status/{i}").json()["status"] for i in ids]
            return statuses if all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT") for s in statuses) else None

        assert wait_for(all_done, timeout=120, interval=0.2) == ["COMPLETED"] * len(ids)
        client.close()
    finally:
        server.stop()
        images.close()
    store = JobStore(data / "jobs.sqlite3")
    events = store.terminal_events()
    assert sorted(events) == sorted((i, "COMPLETED") for i in ids)
    assert store.get(ids[0]).attempts == 2
    store.close()
