"""`splatforge worker`: the same job as a RunPod serverless handler, called directly and through
the runpod SDK's local test mode (`--test_input`)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from splatforge.serve import ImageLimits, UrlPolicy, make_scene_job_handler
from tests.serve.conftest import b64, png_bytes


@pytest.fixture(scope="module")
def handler():
    from splatforge.predict import build_predictor

    predictor = build_predictor("small", seed=0)
    return make_scene_job_handler(predictor, limits=ImageLimits(), url_policy=UrlPolicy(), report_progress=False)


def test_handler_returns_the_sharp_worker_output(handler):
    output = handler({"id": "j1", "input": {"image": b64(png_bytes(40, 30))}})
    assert set(output) == {"status", "ply", "num_gaussians", "image_size", "focal_length_px"}
    assert output["image_size"] == {"width": 40, "height": 30}
    assert base64.b64decode(output["ply"]).startswith(b"ply\n")


@pytest.mark.parametrize("job,message", [
    ({"id": "j"}, "no 'input'"),
    ({"id": "j", "input": {}}, "neither"),
    ({"id": "j", "input": {"image": "@@@"}}, "not valid base64"),
    ({"id": "j", "input": {"image": b64(png_bytes(1, 1))}}, "1x1"),
    ({"id": "j", "input": {"image_url": "http://169.254.169.254/latest"}}, "link-local"),
])
def test_handler_reports_user_errors_as_an_error_dict(handler, job, message):
    output = handler(job)
    assert set(output) == {"error"} and message in output["error"]


def test_progress_updates_are_sent_through_the_sdk(monkeypatch):
    import runpod

    from splatforge.predict import build_predictor

    sent = []
    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, progress: sent.append(progress))
    handler = make_scene_job_handler(build_predictor("small", seed=0), limits=ImageLimits(), url_policy=UrlPolicy(),
                                     report_progress=True)
    assert handler({"id": "j", "input": {"image": b64(png_bytes())}})["status"] == "success"
    assert sent == ["decoding image", "predicting", "writing scene"]


def test_worker_command_runs_a_local_test_job(tmp_path):
    job = json.dumps({"input": {"image": b64(png_bytes())}})
    done = subprocess.run([sys.executable, "-m", "splatforge.serve_cli", "worker", "--preset", "small", "--seed", "0",
                           "--torch-threads", "1", "--test_input", job], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "completed successfully" in done.stdout + done.stderr
