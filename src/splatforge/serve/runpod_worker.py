"""The same job as a RunPod serverless worker: `splatforge worker` loads the model once and calls
`runpod.serverless.start` with `scene_job_handler`.

Handler results follow the runpod SDK's conventions: the output dict on success, `{"error": msg}`
for input the sender can fix (the SDK then marks the job FAILED with that message); bugs raise,
and the SDK reports them with their traceback in the worker log.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from splatforge.errors import SplatforgeError
from splatforge.serve.fetch import UrlPolicy
from splatforge.serve.handler import ImageLimits, predict_scene_file, scene_output
from splatforge.serve.schemas import parse_job_input
from splatforge.serve.workers import ModelSpec, load_predictor


def make_scene_job_handler(predictor, *, limits: ImageLimits, url_policy: UrlPolicy,
                           report_progress: bool | None = None) -> Callable[[dict], dict]:
    """A RunPod handler `handler(job) -> dict` around a loaded predictor.

    `report_progress`: send `runpod.serverless.progress_update` at each stage; default: only when
    running on RunPod (the SDK's job-fetching URL is set), not in local `--test_input` runs."""
    if report_progress is None:
        report_progress = os.environ.get("RUNPOD_WEBHOOK_GET_JOB") is not None

    def scene_job_handler(job: dict) -> dict:
        def progress(stage: str) -> None:
            if report_progress:
                import runpod

                runpod.serverless.progress_update(job, stage)

        try:
            job_input = parse_job_input(job.get("input") if isinstance(job, dict) else None)
            with tempfile.TemporaryDirectory(prefix="splatforge-job-") as tmp:
                scene = predict_scene_file(job_input, predictor, Path(tmp), limits=limits, url_policy=url_policy,
                                           progress=progress)
                return scene_output(scene)
        except SplatforgeError as err:
            return {"error": str(err)}

    return scene_job_handler


def start_runpod_worker(model: ModelSpec, *, limits: ImageLimits, url_policy: UrlPolicy) -> None:
    """Load the model and serve RunPod jobs until the platform stops the worker. A model that
    cannot load raises SplatforgeError before the worker asks the platform for a job."""
    import runpod

    predictor = load_predictor(model)
    runpod.serverless.start({"handler": make_scene_job_handler(predictor, limits=limits, url_policy=url_policy)})
