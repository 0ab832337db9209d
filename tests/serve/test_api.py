"""The HTTP API end to end with the real small predictor in worker processes: results, every kind
of bad input (a 4xx or a FAILED job with a clear message, the service healthy afterwards),
cancellation, the queue bound, timeouts, webhooks, retry, limits and authentication."""

from __future__ import annotations

import base64
import json

import pytest

from splatforge.serve.fetch import UrlPolicy
from tests.serve.conftest import (LocalServer, SilentServer, b64, png_bomb, png_bytes, serve_client, small_config,
                                  wait_for, wait_terminal)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One service for the module, its image server, and a server that never answers."""
    server, silent = LocalServer(), SilentServer()
    policy = UrlPolicy(allow=(f"127.0.0.1:{server.port}", f"127.0.0.1:{silent.port}"), connect_timeout=2.0,
                       read_timeout=3.0, total_timeout=10.0, max_bytes=2 << 20)
    config = small_config(tmp_path_factory.mktemp("serve"), url_policy=policy, max_queue=3, max_attempts=2)
    config.limits.max_bytes = 2 << 20
    with serve_client(config) as client:
        yield client, server, silent
    server.close()
    silent.close()


def assert_healthy(client):
    """The service still answers, its worker is back, and a good job still completes."""
    assert wait_for(lambda: client.get("/v2/e/health").json()["workers"]["idle"] >= 1, timeout=120, interval=0.2)
    body = client.post("/v2/e/runsync", json={"input": {"image": b64(png_bytes(seed=9))}}).json()
    assert body["status"] == "COMPLETED", body


def assert_no_trace(response):
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_runsync_returns_the_sharp_worker_output_and_the_raw_file(env, tmp_path):
    from splatforge.io.ply import read_splat_ply

    client, _, _ = env
    body = client.post("/v2/anything/runsync", json={"input": {"image": b64(png_bytes(64, 48))}}).json()
    assert body["status"] == "COMPLETED", body
    assert isinstance(body["delayTime"], int) and isinstance(body["executionTime"], int)
    out = body["output"]
    assert set(out) == {"status", "ply", "num_gaussians", "image_size", "focal_length_px"}
    assert out["status"] == "success" and out["image_size"] == {"width": 64, "height": 48}
    assert out["focal_length_px"] > 0
    ply = base64.b64decode(out["ply"], validate=True)
    (tmp_path / "scene.ply").write_bytes(ply)
    assert read_splat_ply(tmp_path / "scene.ply")["means"].shape == (out["num_gaussians"], 3)
    raw = client.get(f"/v2/anything/results/{body['id']}/scene.ply")
    assert raw.status_code == 200 and raw.content == ply
    assert client.get(f"/v2/anything/results/{body['id']}/scene.spz").status_code == 404
    assert client.get(f"/v2/anything/results/{body['id']}/..%2Fjobs.sqlite3").status_code == 404


def test_run_then_status_by_get_and_post_with_focal_length(env):
    client, _, _ = env
    accepted = client.post("/v2/e/run", json={"input": {"image": b64(png_bytes()), "focal_length_px": 80.0}})
    assert accepted.status_code == 200 and accepted.json()["status"] == "IN_QUEUE"
    job_id = accepted.json()["id"]
    body = wait_terminal(client, job_id)
    assert body["status"] == "COMPLETED" and body["output"]["focal_length_px"] == pytest.approx(80.0)
    assert client.post(f"/v2/e/status/{job_id}").json() == body


def test_image_url_from_an_allowed_host(env):
    client, server, _ = env
    body = client.post("/v2/e/runsync", json={"input": {"image_url": server.url("/image.png")}}).json()
    assert body["status"] == "COMPLETED", body
    assert body["output"]["image_size"] == {"width": 64, "height": 48}


GOOD = b64(png_bytes())


@pytest.mark.parametrize("payload,message", [
    ({}, "no 'input'"),
    ({"input": None}, "input"),
    ({"input": "abc"}, "input"),
    ({"input": {}}, "neither"),
    ({"input": {"image": GOOD, "image_url": "http://example.com/a.png"}}, "not both"),
    ({"input": {"image": "not base64!!"}}, "not valid base64"),
    ({"input": {"image": "aGVsbG8"}}, "not valid base64"),  # bad padding
    ({"input": {"image": b64(b"GIF? no, just text")}}, "not an image"),
    ({"input": {"image": b64(png_bytes(1, 1))}}, "1x1 pixels"),
    ({"input": {"image": b64(png_bomb())}}, "decompression bomb"),
    ({"input": {"image": GOOD, "focal_length_px": -5}}, "focal_length_px"),
    ({"input": {"image": GOOD, "output_format": "obj"}}, "output_format"),
    ({"input": {"image": GOOD, "colour": 1}}, "colour"),
    ({"input": {"image_url": "file:///etc/passwd"}}, "only http and https"),
    ({"input": {"image": GOOD}, "webhook": "ftp://x/"}, "webhook"),
    ({"input": {"image": GOOD}, "policy": {"executionTimeout": 5}}, "executionTimeout"),
])
def test_bad_requests_are_400_with_a_clear_message(env, payload, message):
    client, _, _ = env
    for route in ("run", "runsync"):
        response = client.post(f"/v2/e/{route}", json=payload)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"], response.json()
        assert_no_trace(response)


def test_non_json_bodies_are_400(env):
    client, _, _ = env
    response = client.post("/v2/e/run", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_png_bomb_is_small_on_disk_and_a_real_png():
    from PIL import Image
    import io

    data = png_bomb()
    assert len(data) < 1_000_000
    Image.MAX_IMAGE_PIXELS, saved = None, Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (20000, 20000)
            im.crop((0, 0, 20000, 2)).load()  # decodes the first rows: the stream is valid deflate
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def failed_job_message(client, payload):
    body = client.post("/v2/e/runsync", json=payload).json()
    assert body["status"] == "FAILED", body
    assert "Traceback" not in body["error"]
    return body["error"]


def test_truncated_image_fails_the_job(env):
    client, _, _ = env
    data = png_bytes(256, 256)
    message = failed_job_message(client, {"input": {"image": b64(data[: len(data) // 2])}})
    assert "truncated or corrupt" in message


def test_urls_to_non_public_addresses_fail_the_job(env):
    client, server, _ = env
    for url in ("http://127.0.0.1:1/x.png", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.png",
                "http://[::1]/a.png", "http://localhost:1/a.png",  # a host name resolving to loopback
                server.url("/redirect?to=http://169.254.169.254/"), server.url("/redirect?to=http://10.0.0.1/")):
        message = failed_job_message(client, {"input": {"image_url": url}})
        assert "loopback, private, link-local" in message, (url, message)
    assert_healthy(client)


def test_url_that_never_answers_huge_download_and_non_image_fail_the_job(env):
    client, server, silent = env
    assert "did not answer" in failed_job_message(client, {"input": {"image_url": silent.url()}})
    assert "more than the limit" in failed_job_message(client, {"input": {"image_url": server.url("/huge")}})
    assert "not an image" in failed_job_message(client, {"input": {"image_url": server.url("/text")}})
    assert "HTTP 404" in failed_job_message(client, {"input": {"image_url": server.url("/nothing")}})
    assert_healthy(client)


def test_unknown_job_ids_are_404(env):
    client, _, _ = env
    for method, path in (("get", "status"), ("post", "status"), ("post", "cancel"), ("post", "retry")):
        for job_id in ("0" * 32, "no-such-job", "0" * 32 + "-s"):
            response = getattr(client, method)(f"/v2/e/{path}/{job_id}")
            assert response.status_code == 404 and "no job" in response.json()["error"]
        assert getattr(client, method)(f"/v2/e/{path}/..%2F..%2Fetc").status_code == 404
    assert client.get(f"/v2/e/results/{'0' * 32}/scene.ply").status_code == 404


def test_cancel_a_running_and_a_queued_job(env):
    client, _, silent = env
    running = client.post("/v2/e/run", json={"input": {"image_url": silent.url()}}).json()["id"]
    queued = client.post("/v2/e/run", json={"input": {"image": GOOD}}).json()["id"]
    assert wait_for(lambda: client.get(f"/v2/e/status/{running}").json()["status"] == "IN_PROGRESS", timeout=30)
    assert client.get(f"/v2/e/status/{queued}").json()["status"] == "IN_QUEUE"
    assert client.post(f"/v2/e/cancel/{queued}").json() == {"id": queued, "status": "CANCELLED"}
    assert client.post(f"/v2/e/cancel/{running}").json() == {"id": running, "status": "CANCELLED"}
    assert client.get(f"/v2/e/status/{running}").json()["status"] == "CANCELLED"
    # A finished job keeps its status.
    assert client.post(f"/v2/e/cancel/{running}").json()["status"] == "CANCELLED"
    assert_healthy(client)


def test_queue_full_is_429_and_purge_empties_it(env):
    client, _, silent = env
    blocker = client.post("/v2/e/run", json={"input": {"image_url": silent.url()}}).json()["id"]
    assert wait_for(lambda: client.get(f"/v2/e/status/{blocker}").json()["status"] == "IN_PROGRESS", timeout=30)
    queued = [client.post("/v2/e/run", json={"input": {"image": GOOD}}) for _ in range(3)]
    assert all(r.status_code == 200 for r in queued)
    full = client.post("/v2/e/run", json={"input": {"image": GOOD}})
    assert full.status_code == 429 and "queue is full" in full.json()["error"]
    assert client.get("/v2/e/health").json()["jobs"]["inQueue"] == 3
    assert client.post("/v2/e/purge-queue").json() == {"removed": 3, "status": "completed"}
    for r in queued:
        assert client.get(f"/v2/e/status/{r.json()['id']}").json()["status"] == "CANCELLED"
    client.post(f"/v2/e/cancel/{blocker}")
    assert_healthy(client)


def test_execution_timeout_and_ttl_end_jobs_as_timed_out(env):
    client, _, silent = env
    slow = {"image_url": silent.url()}
    body = client.post("/v2/e/runsync", json={"input": slow, "policy": {"executionTimeout": 1000}}).json()
    assert body["status"] == "TIMED_OUT" and "execution timeout of 1 s" in body["error"]
    blocker = client.post("/v2/e/run", json={"input": slow}).json()["id"]
    expiring = client.post("/v2/e/run", json={"input": {"image": GOOD}, "policy": {"ttl": 1000}}).json()["id"]
    body = wait_terminal(client, expiring)
    assert body["status"] == "TIMED_OUT" and "ttl" in body["error"]
    client.post(f"/v2/e/cancel/{blocker}")
    assert_healthy(client)


def test_runsync_wait_runs_out_with_the_job_still_going(env):
    client, _, silent = env
    body = client.post("/v2/e/runsync?wait=200", json={"input": {"image_url": silent.url()}}).json()
    assert body["status"] in ("IN_QUEUE", "IN_PROGRESS") and set(body) == {"id", "status"}
    client.post(f"/v2/e/cancel/{body['id']}")


def test_webhook_receives_the_final_status_body(env):
    client, server, _ = env
    job_id = client.post("/v2/e/run", json={"input": {"image": GOOD}, "webhook": server.url("/hook")}).json()["id"]
    wait_terminal(client, job_id)
    received = wait_for(lambda: [b for p, b in server.received if p == "/hook"], timeout=30)
    assert received
    payload = json.loads(received[0])
    assert payload["id"] == job_id and payload["status"] == "COMPLETED" and payload["output"]["ply"]


def test_webhook_deliveries_are_retried(env):
    client, server, _ = env
    job_id = client.post("/v2/e/run", json={"input": {"image": GOOD}, "webhook": server.url("/flaky-hook")}
                         ).json()["id"]
    wait_terminal(client, job_id)
    assert wait_for(lambda: len([p for p, _ in server.received if p == "/flaky-hook"]) == 3, timeout=30)
    assert wait_for(lambda: client.app.state.service.store.get(job_id).webhook_state == "sent", timeout=10)
    bodies = [json.loads(b) for p, b in server.received if p == "/flaky-hook"]
    assert all(b["id"] == job_id and b["status"] == "COMPLETED" for b in bodies)


def test_retry_a_failed_job(env):
    client, _, _ = env
    data = png_bytes(256, 256)
    body = client.post("/v2/e/runsync", json={"input": {"image": b64(data[:300])}}).json()
    assert body["status"] == "FAILED"
    assert client.post(f"/v2/e/retry/{body['id']}").json() == {"id": body["id"], "status": "IN_QUEUE"}
    assert wait_terminal(client, body["id"])["status"] == "FAILED"
    assert client.get("/v2/e/health").json()["jobs"]["retried"] >= 1
    ok = client.post("/v2/e/runsync", json={"input": {"image": GOOD}}).json()
    response = client.post(f"/v2/e/retry/{ok['id']}")
    assert response.status_code == 400 and "only FAILED or TIMED_OUT" in response.json()["error"]


def test_body_limits(env):
    client, _, _ = env
    big = {"input": {"image": "A" * (11 << 20)}}
    response = client.post("/v2/e/run", content=json.dumps(big), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "10,485,760" in response.json()["error"]
    huge = {"input": {"image": "A" * (21 << 20)}}
    response = client.post("/v2/e/runsync", content=json.dumps(huge), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    # Without a Content-Length (chunked), the body is counted as it arrives.
    chunks = (b"A" * (1 << 20) for _ in range(12))
    response = client.post("/v2/e/run", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over the limit" in response.json()["error"]
    # Between the two limits: accepted by runsync's size check, refused by the image byte limit.
    response = client.post("/v2/e/runsync", content=json.dumps(big), headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "over the limit" in response.json()["error"]


def test_health_shape(env):
    client, _, _ = env
    response = client.get("/v2/e/health")
    health = response.json()
    assert response.status_code == 200 and health["status"] == "healthy"
    assert set(health["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert {"idle", "running"} <= set(health["workers"])
    assert [w["id"] for w in health["workerStates"]] == ["worker-0"]
    assert health["workerStates"][0]["error"] is None
    assert health["jobs"]["completed"] >= 1


def test_api_key_and_endpoint_id(tmp_path):
    config = small_config(tmp_path, api_key="s3cret-key", endpoint_id="splat")
    with serve_client(config) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key-x"}):
            response = client.get("/v2/splat/health", headers=headers)
            assert response.status_code == 401 and "API key" in response.json()["error"]
            assert client.post("/v2/splat/run", json={"input": {"image": GOOD}}, headers=headers).status_code == 401
        assert client.get("/v2/splat/health", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert client.get("/v2/splat/health", headers={"Authorization": "s3cret-key"}).status_code == 200
        other = client.get("/v2/other/health", headers={"Authorization": "s3cret-key"})
        assert other.status_code == 404 and "no endpoint" in other.json()["error"]


@pytest.mark.parametrize("fmt", ["splat", "spz", "sog"])
def test_other_output_formats_load_back(env, tmp_path, fmt):
    from splatforge.io.scene import load_scene

    client, _, _ = env
    body = client.post("/v2/e/runsync", json={"input": {"image": GOOD, "output_format": fmt}}).json()
    assert body["status"] == "COMPLETED", body
    out = body["output"]
    assert set(out) == {"status", fmt, "num_gaussians", "image_size", "focal_length_px"}
    path = tmp_path / f"scene.{fmt}"
    path.write_bytes(base64.b64decode(out[fmt]))
    assert len(load_scene(path)) == out["num_gaussians"]
    raw = client.get(f"/v2/e/results/{body['id']}/scene.{fmt}")
    assert raw.status_code == 200 and raw.content == path.read_bytes()


def test_results_over_the_inline_limit_are_given_as_a_download_url(env):
    client, _, _ = env
    config = client.app.state.service.config
    saved, config.inline_limit = config.inline_limit, 1000
    try:
        body = client.post("/v2/e/runsync", json={"input": {"image": GOOD}}).json()
    finally:
        config.inline_limit = saved
    out = body["output"]
    # Absolute, under the request's base URL (no public_url is set here).
    assert "ply" not in out and out["ply_url"] == f"http://testserver/v2/e/results/{body['id']}/scene.ply"
    raw = client.get(out["ply_url"])
    assert raw.status_code == 200 and raw.content.startswith(b"ply\n")


def test_results_and_their_files_are_removed_when_they_expire(env):
    client, _, _ = env
    config = client.app.state.service.config
    saved, config.runsync_retention_s = config.runsync_retention_s, 2.0  # kept 2 s after the job ends
    try:
        body = client.post("/v2/e/runsync", json={"input": {"image": GOOD}}).json()
    finally:
        config.runsync_retention_s = saved
    folder = client.app.state.service.results_root / body["id"]
    assert body["status"] == "COMPLETED" and (folder / "scene.ply").is_file()
    assert wait_for(lambda: client.get(f"/v2/e/status/{body['id']}").status_code == 404, timeout=30)
    assert wait_for(lambda: not folder.exists(), timeout=10)


def test_a_worker_killed_mid_job_is_replaced_and_the_job_retried_then_failed(env):
    import os
    import signal

    client, _, silent = env
    pool = client.app.state.service.pool
    job_id = client.post("/v2/e/run", json={"input": {"image_url": silent.url()}}).json()["id"]
    for attempt in (1, 2):  # the app allows 2 attempts
        slot = wait_for(lambda: next((s for s in pool._slots if s.job_id == job_id and s.process is not None), None),
                        timeout=60)
        assert slot is not None, f"attempt {attempt} did not start"
        assert client.app.state.service.store.get(job_id).attempts == attempt
        os.kill(slot.process.pid, signal.SIGKILL)  # a worker process this app started
        assert wait_for(lambda: slot.job_id != job_id, timeout=30)
    body = wait_terminal(client, job_id)
    assert body["status"] == "FAILED" and "gave up after 2 attempts" in body["error"], body
    assert_healthy(client)
