"""serve: image in, 3D Gaussians out, over the RunPod serverless API.

- `create_app(ServeConfig(...))`: the self-hosted FastAPI service (`splatforge serve`), with a
  durable SQLite job store and inference worker processes;
- `make_scene_job_handler(predictor, ...)`: the same job as a RunPod worker handler
  (`splatforge worker`);
- `predict_scene_file` / `scene_output`: the job itself, as a library call;
- `ServeConfig`, `ModelSpec`, `ImageLimits`, `UrlPolicy`: the settings (`serve.settings`, which
  imports only the standard library);
- `check_model(ModelSpec(...))`: SplatforgeError with the reason if workers could not load the
  model (`splatforge serve` calls it before it binds).
"""

from splatforge._lazy import lazy_exports

# imported on first use: `splatforge serve --help` should not load FastAPI's app, torch or the predictor
__getattr__, __dir__ = lazy_exports(__name__, {
    "create_app": ".app", "UrlRefused": ".fetch", "fetch_url": ".fetch",
    "SceneFile": ".handler", "predict_scene_file": ".handler", "scene_output": ".handler",
    "make_scene_job_handler": ".runpod_worker", "SceneService": ".service", "check_model": ".workers",
    **dict.fromkeys(["ServeConfig", "ModelSpec", "ImageLimits", "UrlPolicy"], ".settings"),
})

__all__ = ["create_app", "ServeConfig", "SceneService", "ModelSpec", "ImageLimits", "UrlPolicy", "UrlRefused",
           "fetch_url", "SceneFile", "predict_scene_file", "scene_output", "make_scene_job_handler", "check_model"]
