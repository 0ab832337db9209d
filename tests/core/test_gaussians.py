"""The Gaussians container: validation, indexing, concatenation, activations, construction."""

import math

import numpy as np
import pytest
import torch

from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError


def make(n: int = 5, degree: int = 1, seed: int = 0, dtype=torch.float32) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    r = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    return Gaussians(r(n, 3), r(n, 3), r(n, 4), r(n), r(n, 1, 3), r(n, k, 3))


def fields(n=5, k=3):
    return dict(
        means=torch.zeros(n, 3), scales=torch.zeros(n, 3), quats=torch.zeros(n, 4),
        opacities=torch.zeros(n), sh0=torch.zeros(n, 1, 3), shN=torch.zeros(n, k, 3),
    )


@pytest.mark.parametrize(
    "name,bad,message",
    [
        ("means", torch.zeros(5), r"means must be \[N, 3\], got \(5,\)"),
        ("scales", torch.zeros(5, 2), r"scales must be \[N, 3\] with N=5, got \(5, 2\)"),
        ("quats", torch.zeros(4, 4), r"quats must be \[N, 4\] with N=5, got \(4, 4\)"),
        ("opacities", torch.zeros(5, 1), r"opacities must be \[N\] with N=5, got \(5, 1\)"),
        ("sh0", torch.zeros(5, 3), r"sh0 must be \[N, 1, 3\] with N=5, got \(5, 3\)"),
        ("shN", torch.zeros(5, 5, 3), r"shN must be \[N, K, 3\] with N=5 .*got \(5, 5, 3\)"),
        ("shN", torch.zeros(5, 3), r"shN must be \[N, K, 3\]"),
    ],
)
def test_shape_validation_names_the_field(name, bad, message):
    with pytest.raises(ValueError, match=message):
        Gaussians(**{**fields(), name: bad})


def test_dtype_and_type_validation():
    with pytest.raises(ValueError, match="opacities is torch.float64 .* means is torch.float32"):
        Gaussians(**{**fields(), "opacities": torch.zeros(5, dtype=torch.float64)})
    with pytest.raises(TypeError, match="quats must be a floating-point tensor"):
        Gaussians(**{**fields(), "quats": torch.zeros(5, 4, dtype=torch.int64)})
    with pytest.raises(TypeError, match="means must be a torch.Tensor"):
        Gaussians(**{**fields(), "means": np.zeros((5, 3))})


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_properties(degree):
    g = make(7, degree)
    assert len(g) == g.num_gaussians == 7
    assert g.sh_degree == degree
    assert g.device == torch.device("cpu") and g.dtype == torch.float32
    assert g.colors_sh().shape == (7, (degree + 1) ** 2, 3)
    assert "num_gaussians=7" in repr(g)


def test_indexing():
    g = make(6)
    for index, rows in [
        (torch.tensor([4, 1]), [4, 1]),
        (np.array([0, 5]), [0, 5]),
        ([2, 3], [2, 3]),
        (torch.tensor([True, False, True, False, False, True]), [0, 2, 5]),
        ([False] * 5 + [True], [5]),
        (slice(1, 4), [1, 2, 3]),
        (slice(None, None, 2), [0, 2, 4]),
        (3, [3]),
        (np.int64(2), [2]),
        (torch.tensor(4), [4]),
        (-1, [5]),
        ([], []),
    ]:
        sub = g[index]
        assert isinstance(sub, Gaussians) and len(sub) == len(rows)
        for name, value in sub.named_parameters():
            torch.testing.assert_close(value, getattr(g, name)[rows])
    with pytest.raises(IndexError, match="bool mask must be"):
        g[torch.ones(5, dtype=torch.bool)]
    with pytest.raises(IndexError):
        g[6]
    with pytest.raises(IndexError, match="integer"):
        g[torch.tensor([0.5])]


def test_cat_and_sh_degree_padding():
    a, b = make(3, 1, seed=1), make(4, 1, seed=2)
    c = Gaussians.cat([a, b])
    assert len(c) == 7 and c.sh_degree == 1
    torch.testing.assert_close(c.means, torch.cat([a.means, b.means]))
    torch.testing.assert_close(c[3:].shN, b.shN)

    low = make(2, 0, seed=3)
    with pytest.raises(ValueError, match=r"different SH degrees \[1, 0\].*pad_sh=True"):
        Gaussians.cat([a, low])
    padded = Gaussians.cat([a, low], pad_sh=True)
    assert padded.sh_degree == 1
    assert (padded.shN[3:] == 0).all()
    with pytest.raises(ValueError, match="at least one"):
        Gaussians.cat([])
    with pytest.raises(ValueError, match="dtypes"):
        Gaussians.cat([a, b.to(dtype=torch.float64)])


def test_with_sh_degree_pads_and_truncates():
    g = make(4, 2)
    up = g.with_sh_degree(3)
    assert up.shN.shape == (4, 15, 3)
    torch.testing.assert_close(up.shN[:, :8], g.shN)
    assert (up.shN[:, 8:] == 0).all()
    down = g.with_sh_degree(0)
    assert down.shN.shape == (4, 0, 3) and down.sh_degree == 0
    torch.testing.assert_close(g.with_sh_degree(1).shN, g.shN[:, :3])


def test_to_detach_clone_requires_grad():
    g = make(3)
    g64 = g.to(dtype=torch.float64)
    assert g64.dtype == torch.float64 and all(t.dtype == torch.float64 for t in g64.parameters())
    assert g.dtype == torch.float32  # the original is untouched

    assert g.requires_grad_() is g
    assert all(t.requires_grad for t in g.parameters())
    loss = sum(t.sum() for t in g.parameters())
    loss.backward()
    assert all(t.grad is not None for t in g.parameters())
    d = g.detach()
    assert not any(t.requires_grad for t in d.parameters())

    c = g.detach().clone()
    c.means.add_(1.0)
    assert not torch.equal(c.means, g.means)
    optimizer = torch.optim.Adam(g.parameters(), lr=0.1)  # parameters() yields plain tensors
    optimizer.step()


def test_activations():
    g = make(4, 1)
    torch.testing.assert_close(g.activated_scales(), torch.exp(g.scales))
    torch.testing.assert_close(g.activated_opacities(), torch.sigmoid(g.opacities))
    q = g.normalized_quats()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(q * g.quats.norm(dim=-1, keepdim=True), g.quats)
    torch.testing.assert_close(g.rgb(), g.sh0[:, 0] * C0 + 0.5)
    torch.testing.assert_close(g.colors_sh(), torch.cat([g.sh0, g.shN], 1))


def test_dict_round_trip_through_npz(tmp_path):
    g = make(5, 2)
    np.savez(tmp_path / "g.npz", **{k: v.numpy() for k, v in g.as_dict().items()}, step=np.int64(7))
    loaded = Gaussians.from_dict(dict(np.load(tmp_path / "g.npz")))
    assert loaded.sh_degree == 2
    for name, value in g.named_parameters():
        torch.testing.assert_close(getattr(loaded, name), value)
    assert [name for name, _ in g.named_parameters()] == list(g.as_dict())

    degree0 = {k: v for k, v in g.as_dict().items() if k != "shN"}
    assert Gaussians.from_dict(degree0).shN.shape == (5, 0, 3)
    assert Gaussians.from_dict(g.as_dict(), dtype=torch.float64).dtype == torch.float64
    with pytest.raises(SplatforgeError, match=r"missing \['quats'\]"):
        Gaussians.from_dict({k: v for k, v in g.as_dict().items() if k != "quats"})


def test_empty():
    g = Gaussians.empty(sh_degree=2)
    assert len(g) == 0 and g.sh_degree == 2 and g.shN.shape == (0, 8, 3)
    assert len(Gaussians.cat([g, make(3, 2)])) == 3


def test_check_finite():
    make(4).check_finite()
    g = make(4)
    g.means[2, 1] = float("nan")
    g.opacities[0] = float("inf")
    g.opacities[3] = float("-inf")
    with pytest.raises(SplatforgeError, match=r"out of 4 rows in means: 1 rows, opacities: 2 rows"):
        g.check_finite()


def test_from_points_matches_brute_force_neighbour_distances():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 3)).astype(np.float32)
    colors = rng.random((300, 3)).astype(np.float32)
    g = Gaussians.from_points(points, colors, sh_degree=3, opacity=0.1)

    d = np.sqrt(((points[:, None].astype(np.float64) - points[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    expected = np.log(np.sort(d, axis=1)[:, :3].mean(1))
    np.testing.assert_allclose(g.scales.numpy(), np.repeat(expected[:, None], 3, 1), rtol=1e-5, atol=1e-5)

    assert g.sh_degree == 3 and g.shN.shape == (300, 15, 3) and (g.shN == 0).all()
    torch.testing.assert_close(g.means, torch.from_numpy(points))
    torch.testing.assert_close(g.quats, torch.tensor([[1.0, 0, 0, 0]]).expand(300, 4))
    torch.testing.assert_close(g.activated_opacities(), torch.full((300,), 0.1))
    torch.testing.assert_close(g.rgb(), torch.from_numpy(colors))
    assert g.dtype == torch.float32


def test_from_points_options():
    points = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]], dtype=torch.float64)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 0]], dtype=np.uint8)
    g = Gaussians.from_points(points, colors, sh_degree=0, scale=0.5, opacity=0.5)
    torch.testing.assert_close(g.activated_scales(), torch.full((3, 3), 0.5))
    torch.testing.assert_close(g.rgb(), torch.tensor(colors / 255.0, dtype=torch.float32))
    assert g.sh_degree == 0 and g.opacities.abs().max() < 1e-6

    # Fewer than 4 points: each mean is over the neighbours that exist.
    g = Gaussians.from_points(points, sh_degree=1)
    expected = [(1 + 2) / 2, (1 + math.sqrt(5)) / 2, (2 + math.sqrt(5)) / 2]
    torch.testing.assert_close(g.activated_scales()[:, 0], torch.tensor(expected))
    torch.testing.assert_close(g.rgb(), torch.full((3, 3), 0.5))

    # Stacked duplicates still give finite scales.
    assert torch.isfinite(Gaussians.from_points(np.zeros((4, 3))).scales).all()
    assert len(Gaussians.from_points(np.zeros((0, 3)))) == 0

    with pytest.raises(ValueError, match="pass scale="):
        Gaussians.from_points(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"opacity must be in \(0, 1\)"):
        Gaussians.from_points(points, opacity=1.0)
    with pytest.raises(ValueError, match=r"colors must be \[N, 3\] with N=3"):
        Gaussians.from_points(points, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"points must be \[N, 3\]"):
        Gaussians.from_points(np.zeros((3, 2)))


def test_from_points_on_the_garden_capture():
    from pathlib import Path

    path = Path("/work/shared/data/test_garden.npz")
    if not path.exists():
        pytest.skip("shared garden data not present")
    data = np.load(path)
    points, colors = data["means3d"], data["colors"]
    g = Gaussians.from_points(points, colors, sh_degree=3)
    assert len(g) == len(points) and g.shN.shape == (len(points), 15, 3)
    g.check_finite()
    torch.testing.assert_close(g.rgb(), torch.from_numpy(colors / 255.0).float())
    sample = np.random.default_rng(0).choice(len(points), 200, replace=False)
    all_points = torch.from_numpy(points).double()
    d = torch.cdist(all_points[sample], all_points)
    d[torch.arange(200), torch.from_numpy(sample)] = float("inf")
    expected = torch.log(d.topk(3, largest=False).values.mean(1).clamp_min(1e-7**0.5))
    torch.testing.assert_close(g.scales[sample, 0].double(), expected, rtol=1e-5, atol=1e-5)


def test_rasterization_args_activate_and_slice_to_the_degree():
    g = Gaussians.from_points(torch.randn(5, 3), sh_degree=3, scale=0.2)
    g.shN = torch.randn(g.shN.shape)
    args = g.rasterization_args()
    assert set(args) == {"means", "quats", "scales", "opacities", "colors", "sh_degree"} and args["sh_degree"] == 3
    torch.testing.assert_close(args["scales"], g.activated_scales())
    torch.testing.assert_close(args["opacities"], g.activated_opacities())
    torch.testing.assert_close(args["colors"], g.colors_sh())
    low = g.rasterization_args(sh_degree=1)
    assert low["sh_degree"] == 1 and low["colors"].shape == (5, 4, 3)
    torch.testing.assert_close(low["colors"], g.colors_sh()[:, :4])
    with pytest.raises(ValueError, match="sh_degree 2 needs 8"):
        g.with_sh_degree(1).rasterization_args(sh_degree=2)
