"""The Buddha capture in tests/data/buddha (67 real photos, CC BY 4.0) and what the SfM tests share:
one SfM run over 30 of its photos, made once per session, and the dataset's own cameras."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycolmap")

BUDDHA = Path(__file__).resolve().parents[1] / "data" / "buddha"
# 30 consecutive photos of the 67: one side of the head, SfM on them takes ~20 s on 2 cores at 512 px
SUBSET = slice(20, 50)
ORIGINAL_SIZE = (2736, 1540)  # the photos the projection matrices were estimated for


def buddha_names() -> list[str]:
    return sorted(p.name for p in (BUDDHA / "images").glob("*.jpg"))


def copy_photos(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(BUDDHA / "images" / name, folder / name)
    return folder


@functools.lru_cache(maxsize=None)
def _sfm_run(base: str) -> Path:
    """The `splatforge capture` command on the subset, run once per session (pytest would otherwise
    run a session fixture once per module that imports it)."""
    from splatforge.cli import main

    photos = copy_photos(Path(base) / "buddha_photos", buddha_names()[SUBSET])
    out = Path(base) / "buddha_capture"
    status = main(["capture", str(photos), "-o", str(out), "--max-image-size", "512", "--no-progress"])
    assert status == 0
    return out


@pytest.fixture()
def buddha_sfm(tmp_path_factory) -> Path:
    return _sfm_run(str(tmp_path_factory.getbasetemp()))


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
