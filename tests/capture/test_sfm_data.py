"""The real captures the SfM tests share: the fox in tests/data/fox (50 phone-video frames with
instant-ngp's cameras, NVIDIA Source Code License-NC) and the Buddha in tests/data/buddha (67 photos
with AliceVision's cameras, CC BY 4.0). One SfM run over every other fox frame, made once per
session (`phone_sfm`), and each dataset's own cameras to check what SfM solves against."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycolmap")

DATA = Path(__file__).resolve().parents[1] / "data"
BUDDHA = DATA / "buddha"
FOX = DATA / "fox"
# every other frame of the fox's 50: all around the figurine; SfM on them takes ~25 s on 2 cores
SUBSET = slice(0, None, 2)
ORIGINAL_SIZE = (2736, 1540)  # the Buddha photos the projection matrices were estimated for


def buddha_names() -> list[str]:
    return sorted(p.name for p in (BUDDHA / "images").glob("*.jpg"))


def fox_names() -> list[str]:
    return sorted(p.name for p in (FOX / "images").glob("*.jpg"))


def copy_photos(folder: Path, names: list[str], source: Path = BUDDHA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / "images" / name, folder / name)
    return folder


@functools.lru_cache(maxsize=None)
def _sfm_run(base: str) -> Path:
    """The `splatforge capture` command on the fox subset, run once per session (pytest would otherwise
    run a session fixture once per module that imports it)."""
    from splatforge.cli import main

    photos = copy_photos(Path(base) / "phone_photos", fox_names()[SUBSET], FOX)
    out = Path(base) / "phone_capture"
    status = main(["capture", str(photos), "-o", str(out), "--max-image-size", "512", "--no-progress"])
    assert status == 0
    return out


@pytest.fixture()
def phone_sfm(tmp_path_factory) -> Path:
    return _sfm_run(str(tmp_path_factory.getbasetemp()))


def fox_cameras(names: list[str]) -> np.ndarray:
    """World-to-camera matrices [C, 4, 4] (OpenCV axes) of the named fox frames, from instant-ngp's json."""
    frames = json.loads((FOX / "transforms.json").read_text())["frames"]
    c2w = {Path(f["file_path"]).name: np.array(f["transform_matrix"]) for f in frames}
    viewmats = []
    for name in names:
        m = c2w[name].copy()
        m[:3, 1:3] *= -1  # OpenGL -> OpenCV camera axes
        viewmats.append(np.linalg.inv(m))
    return np.stack(viewmats)


def _rq(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flip = np.flipud(np.eye(3))
    q, r = np.linalg.qr((flip @ m).T)
    return flip @ r.T @ flip, flip @ q.T


def dataset_cameras(names: list[str], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(Ks [C,3,3], viewmats [C,4,4]) of the named photos at `size`, from AliceVision's projection
    matrices (P = K [R | t]) for the original photos."""
    Ks, viewmats = [], []
    for name in names:
        P = np.loadtxt(BUDDHA / "projections" / f"{Path(name).stem}_P.txt")
        K, R = _rq(P[:, :3])
        signs = np.diag(np.sign(np.diag(K)))
        K, R = K @ signs, signs @ R
        t = np.linalg.solve(K, P[:, 3])
        if np.linalg.det(R) < 0:
            R, t = -R, -t
        K = np.diag([size[0] / ORIGINAL_SIZE[0], size[1] / ORIGINAL_SIZE[1], 1.0]) @ (K / K[2, 2])
        viewmat = np.eye(4)
        viewmat[:3, :3], viewmat[:3, 3] = R, t
        Ks.append(K)
        viewmats.append(viewmat)
    return np.stack(Ks), np.stack(viewmats)


def test_the_dataset_has_67_photos_and_a_camera_for_each():
    names = buddha_names()
    assert len(names) == 67
    with Image.open(BUDDHA / "images" / names[0]) as im:
        size = im.size
    assert size == (512, 288)
    Ks, viewmats = dataset_cameras(names, size)
    assert np.allclose(viewmats[:, :3, :3] @ viewmats[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-6)
    # the principal points lie near the photo centre and the focal lengths agree: one camera
    assert np.all(np.abs(Ks[:, 0, 2] - size[0] / 2) < 0.1 * size[0])
    assert np.ptp(Ks[:, 0, 0]) < 0.05 * Ks[0, 0, 0]
    assert (BUDDHA / "README.md").read_text().count("CC BY 4.0") >= 1


def pose_errors(model, names: list[str], reference: np.ndarray) -> tuple[float, float, float]:
    """How far a reconstruction's cameras are from reference world-to-camera matrices [C, 4, 4] (one for
    each of `names`), in terms that need no alignment of the two frames except for the camera centres:
    (mean and max difference of the relative rotation angle over all camera pairs, in degrees; mean
    camera-centre error after the best similarity alignment, as a fraction of the cameras' mean
    distance from their centroid)."""
    by_name = {im.name: im for im in model.images.values()}
    rotations, centres, ref_rotations, ref_centres = [], [], [], []
    for name, viewmat in zip(names, reference):
        m = np.asarray(by_name[name].cam_from_world().matrix())
        rotations.append(m[:3, :3])
        centres.append(-m[:3, :3].T @ m[:3, 3])
        ref_rotations.append(viewmat[:3, :3])
        ref_centres.append(-viewmat[:3, :3].T @ viewmat[:3, 3])

    def angle(r):
        return np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))

    diffs = [abs(angle(rotations[i] @ rotations[j].T) - angle(ref_rotations[i] @ ref_rotations[j].T))
             for i in range(len(names)) for j in range(i + 1, len(names))]
    x, y = np.array(centres), np.array(ref_centres)
    xc, yc = x - x.mean(0), y - y.mean(0)
    u, s, vt = np.linalg.svd(yc.T @ xc / len(x))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = (s * np.diag(d)).sum() / (xc ** 2).sum() * len(x)
    residual = np.linalg.norm(scale * xc @ rot.T - yc, axis=1)
    return float(np.mean(diffs)), float(np.max(diffs)), float(residual.mean() / np.linalg.norm(yc, axis=1).mean())
