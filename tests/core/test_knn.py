"""nearest_neighbors against a brute-force search, including its ordering of ties."""

import numpy as np
import pytest

from splatforge.core.knn import nearest_neighbors


def brute_force(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]  # stable: equal distances by index
    dist = np.take_along_axis(d, idx, axis=1)
    missing = ~np.isfinite(dist)
    idx[missing] = -1
    if idx.shape[1] < k:  # fewer than k other points
        pad = k - idx.shape[1]
        dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
    return dist, idx


def clouds():
    rng = np.random.default_rng(0)
    yield "uniform", rng.random((500, 3))
    yield "gaussian_wide", rng.normal(size=(400, 3)) * 50.0
    plane = rng.random((400, 3))
    plane[:, 2] = 0.0
    yield "plane", plane
    line = np.zeros((300, 3))
    line[:, 0] = rng.random(300)
    yield "line", line
    clusters = np.concatenate([rng.normal(size=(150, 3)) * 0.01 + c for c in rng.random((3, 3)) * 10])
    yield "clusters", clusters
    outliers = np.concatenate([rng.random((400, 3)), rng.random((20, 3)) * 1e6, [[1e9, -1e9, 0.0]]])
    yield "outliers", outliers
    # Integer lattice: many exactly equal distances, so the tie order is tested too.
    yield "lattice", np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    yield "duplicates", np.repeat(rng.integers(0, 4, size=(60, 3)).astype(float), 5, axis=0)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("name,points", list(clouds()), ids=[name for name, _ in clouds()])
def test_matches_brute_force(name, points, k):
    dist, idx = nearest_neighbors(points, k)
    ref_dist, ref_idx = brute_force(points, k)
    assert dist.shape == idx.shape == (len(points), k)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_fewer_points_than_neighbours(n):
    points = np.random.default_rng(n).random((n, 3))
    dist, idx = nearest_neighbors(points, 3)
    ref_dist, ref_idx = brute_force(points, 3)
    np.testing.assert_allclose(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)
    assert (idx[:, max(n - 1, 0):] == -1).all() and np.isinf(dist[:, max(n - 1, 0):]).all()


def test_never_returns_the_point_itself():
    points = np.random.default_rng(1).random((2000, 3)).astype(np.float32)
    _, idx = nearest_neighbors(points, 4)
    assert not (idx == np.arange(len(points))[:, None]).any()


def test_larger_cloud_sampled_against_brute_force():
    rng = np.random.default_rng(2)
    # A surface with density varying 100x, like a captured scene, plus a sparse halo.
    u = rng.random((30000, 2)) ** 3
    points = np.concatenate([np.c_[u, 0.01 * np.sin(20 * u[:, :1])], rng.normal(size=(500, 3)) * 5])
    dist, idx = nearest_neighbors(points, 3)
    sample = rng.choice(len(points), 300, replace=False)
    d = np.sqrt(((points[sample, None, :] - points[None, :, :]) ** 2).sum(-1))
    d[np.arange(len(sample)), sample] = np.inf
    np.testing.assert_allclose(dist[sample], np.sort(d, axis=1)[:, :3], rtol=1e-12)


def test_empty_and_bad_input():
    dist, idx = nearest_neighbors(np.zeros((0, 3)), 3)
    assert dist.shape == idx.shape == (0, 3)
    with pytest.raises(ValueError, match=r"points must be \[N, 3\]"):
        nearest_neighbors(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="k must be >= 1"):
        nearest_neighbors(np.zeros((5, 3)), 0)
    with pytest.raises(ValueError, match="1 rows with NaN or inf"):
        nearest_neighbors(np.array([[0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]]))
