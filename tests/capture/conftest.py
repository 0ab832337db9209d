"""One demo scene written as a COLMAP capture, and the same cameras and photos as a nerfstudio
transforms.json (with nerfstudio's applied_transform and a points PLY) and as a Blender scene."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycolmap")

from splatforge.demo.capture import make_demo_capture  # noqa: E402
from splatforge.io.colmap import read_colmap_model  # noqa: E402
from splatforge.io.ply_format import write_ply_elements  # noqa: E402

GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes
# what nerfstudio's COLMAP conversion applies to COLMAP's world (x, z, -y), as 3x4
APPLIED = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0]])


def applied_4x4() -> np.ndarray:
    return np.vstack([APPLIED, [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="session")
def demo_colmap(tmp_path_factory) -> Path:
    return make_demo_capture(tmp_path_factory.mktemp("formats") / "colmap", num_views=10, width=64, height=48,
                             seed=1, num_points=300)


def write_transforms(colmap_dir: Path, out: Path, *, applied: bool = True, ply: bool = True,
                     extension: bool = True, per_frame: bool = False) -> Path:
    """The COLMAP capture as nerfstudio's ns-process-data writes it (poses in OpenGL axes, in the
    applied_transform's frame; points PLY in that frame too)."""
    model = read_colmap_model(colmap_dir)
    camera = next(iter(model.cameras.values()))
    transform = applied_4x4() if applied else np.eye(4)
    (out / "images").mkdir(parents=True)
    intr = {"fl_x": camera.K[0, 0], "fl_y": camera.K[1, 1], "cx": camera.K[0, 2], "cy": camera.K[1, 2],
            "w": camera.width, "h": camera.height}
    frames = []
    for im in model.images:
        shutil.copy(colmap_dir / "images" / im.name, out / "images" / im.name)
        c2w = transform @ np.linalg.inv(im.viewmat) @ GL
        path = f"images/{im.name}" if extension else f"./images/{Path(im.name).stem}"
        frames.append({"file_path": path, "transform_matrix": c2w.tolist(), **(intr if per_frame else {})})
    meta = {"camera_model": "PINHOLE", **({} if per_frame else intr), "frames": frames}
    if applied:
        meta["applied_transform"] = APPLIED.tolist()
    if ply:
        pts = model.points @ transform[:3, :3].T + transform[:3, 3]
        vertex = np.zeros(len(pts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                           ("blue", "u1")])
        for i, k in enumerate("xyz"):
            vertex[k] = pts[:, i]
        for i, k in enumerate(("red", "green", "blue")):
            vertex[k] = model.colors[:, i]
        write_ply_elements(out / "sparse_pc.ply", {"vertex": vertex})
        meta["ply_file_path"] = "sparse_pc.ply"
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


def write_blender(colmap_dir: Path, out: Path, alpha=None, test_every: int = 8) -> Path:
    """The COLMAP capture as a Blender scene: RGBA PNGs without extension in the json, every 8th view in
    transforms_test.json (the order COLMAP's default split holds out)."""
    model = read_colmap_model(colmap_dir)
    camera = next(iter(model.cameras.values()))
    angle = 2 * np.arctan(camera.width / (2 * camera.K[0, 0]))
    splits = {"train": [], "test": []}
    for i, im in enumerate(model.images):
        split = "test" if i % test_every == 0 else "train"
        (out / split).mkdir(parents=True, exist_ok=True)
        rgb = np.asarray(Image.open(colmap_dir / "images" / im.name).convert("RGB"))
        a = np.full(rgb.shape[:2], 255, np.uint8) if alpha is None else alpha
        Image.fromarray(np.dstack([rgb, a])).save(out / split / f"r_{i}.png")
        splits[split].append({"file_path": f"./{split}/r_{i}", "rotation": 0.0,
                              "transform_matrix": (np.linalg.inv(im.viewmat) @ GL).tolist()})
    for split, frames in splits.items():
        (out / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return out
