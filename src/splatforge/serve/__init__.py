"""serve: image in, 3D Gaussians out, over the RunPod serverless API.

- `create_app(ServeConfig(...))`: the self-hosted FastAPI service (`splatforge serve`), with a
  durable SQLite job store and inference worker processes;
- `make_scene_job_handler(predictor, ...)`: the same job as a RunPod worker handler
  (`splatforge worker`);
- `predict_scene_file` / `scene_output`: the job itself, as a library call.
"""

from splatforge.serve.app import create_app
from splatforge.serve.fetch import UrlPolicy, UrlRefused, fetch_url
from splatforge.serve.handler import ImageLimits, SceneFile, predict_scene_file, scene_output
from splatforge.serve.runpod_worker import make_scene_job_handler
from splatforge.serve.service import SceneService, ServeConfig
from splatforge.serve.workers import ModelSpec

__all__ = ["create_app", "ServeConfig", "SceneService", "ModelSpec", "ImageLimits", "UrlPolicy", "UrlRefused",
           "fetch_url", "SceneFile", "predict_scene_file", "scene_output", "make_scene_job_handler"]
