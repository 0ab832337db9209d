"""`Gaussians`: the container every layer passes around, holding pre-activation parameters.

Parameters are stored as the optimizer sees them, as in INRIA 3DGS and gsplat: log scales, logit
opacities, unnormalized quaternions and SH coefficients. `rasterization()` takes the activated
values; the `activated_*` methods produce them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from splatforge.core.knn import nearest_neighbors
from splatforge.core.sh import C0, MAX_SH_DEGREE, num_sh_bases, rgb_to_sh, sh_degree_from_bases
from splatforge.errors import SplatforgeError

FIELDS = ("means", "scales", "quats", "opacities", "sh0", "shN")
_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)

Index = int | slice | Tensor | np.ndarray | Sequence[int] | Sequence[bool]


@dataclass(eq=False)
class Gaussians:
    """N 3D Gaussians, pre-activation, as torch tensors of one dtype on one device.

    Attributes:
        means [N, 3]: centres, world units.
        scales [N, 3]: log of the standard deviations along the local axes (log world units).
        quats [N, 4]: rotations as (w, x, y, z), not necessarily normalized.
        opacities [N]: logit of the opacity.
        sh0 [N, 1, 3]: degree-0 SH coefficient per channel; RGB = 0.5 + C0 * sh0.
        shN [N, K, 3]: SH coefficients of degrees 1..d, K = (d+1)^2 - 1 (K = 0 at degree 0).

    Shapes, dtypes and devices are checked when the object is built (not on later attribute
    assignment, which training code does in place). Equality is identity: compare tensors
    explicitly.
    """

    means: Tensor  # [N, 3]
    scales: Tensor  # [N, 3]
    quats: Tensor  # [N, 4]
    opacities: Tensor  # [N]
    sh0: Tensor  # [N, 1, 3]
    shN: Tensor  # [N, K, 3]

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if not value.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if self.means.ndim != 2 or self.means.shape[1] != 3:
            raise ValueError(f"means must be [N, 3], got {tuple(self.means.shape)}")
        n = self.means.shape[0]
        expected = {"scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                wanted = "[" + ", ".join(["N", *map(str, shape[1:])]) + "]"
                raise ValueError(f"{name} must be {wanted} with N={n}, got {got}")
        sh_n = tuple(self.shN.shape)
        if len(sh_n) != 3 or sh_n[0] != n or sh_n[2] != 3 or sh_n[1] not in (0, 3, 8, 15):
            raise ValueError(
                f"shN must be [N, K, 3] with N={n} and K = (d+1)^2 - 1 in (0, 3, 8, 15), got {sh_n}"
            )
        for name in FIELDS[1:]:
            value = getattr(self, name)
            if value.dtype != self.means.dtype or value.device != self.means.device:
                raise ValueError(
                    f"{name} is {value.dtype} on {value.device} but means is {self.means.dtype} on "
                    f"{self.means.device}; all fields must share one dtype and device (use .to())"
                )

    # ---- size and type -------------------------------------------------------------------

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.shN.shape[1] + 1)

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def __repr__(self) -> str:
        return (
            f"Gaussians(num_gaussians={len(self)}, sh_degree={self.sh_degree}, "
            f"dtype={self.dtype}, device={self.device})"
        )

    # ---- tensor-wise transforms, each returning a new Gaussians ----------------------------

    def _map(self, fn) -> Gaussians:
        return Gaussians(**{name: fn(getattr(self, name)) for name in FIELDS})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Gaussians:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> Gaussians:
        return self._map(Tensor.detach)

    def clone(self) -> Gaussians:
        return self._map(Tensor.clone)

    def requires_grad_(self, flag: bool = True) -> Gaussians:
        """Set `requires_grad` on every field in place; returns self for chaining."""
        for name in FIELDS:
            getattr(self, name).requires_grad_(flag)
        return self

    def __getitem__(self, index: Index) -> Gaussians:
        """Select Gaussians by int index tensor/array/list, bool mask [N] or slice.

        A plain int selects one Gaussian but keeps the N axis (the result has length 1)."""
        if isinstance(index, Tensor) and index.ndim == 0 and index.dtype in _INT_DTYPES:
            index = int(index)
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            index = int(index)
            index = slice(index, index + 1 if index != -1 else None)
            if len(range(len(self))[index]) != 1:
                raise IndexError(f"index out of range for {len(self)} Gaussians")
        elif not isinstance(index, slice):
            index = _as_tensor(index).to(self.device)
            if index.numel() == 0 and index.dtype != torch.bool:
                index = index.long()  # [] arrives as float64
            if index.dtype == torch.bool:
                if index.shape != (len(self),):
                    raise IndexError(f"bool mask must be [N] with N={len(self)}, got {tuple(index.shape)}")
            elif index.ndim != 1 or index.is_floating_point():
                raise IndexError(
                    "index must be a 1-D integer tensor, bool mask or slice, "
                    f"got {index.dtype} {tuple(index.shape)}"
                )
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(items: Sequence[Gaussians], pad_sh: bool = False) -> Gaussians:
        """Concatenate along N. All items must have one SH degree, unless `pad_sh` is set: then
        lower degrees are padded with zero coefficients up to the highest one."""
        items = list(items)
        if not items:
            raise ValueError("Gaussians.cat needs at least one Gaussians")
        degrees = [g.sh_degree for g in items]
        if len(set(degrees)) > 1:
            if not pad_sh:
                raise ValueError(
                    f"cannot concatenate Gaussians with different SH degrees {degrees}; "
                    "pass pad_sh=True to pad the lower degrees with zeros"
                )
            items = [g.with_sh_degree(max(degrees)) for g in items]
        kinds = {(g.dtype, g.device) for g in items}
        if len(kinds) > 1:
            kinds_text = sorted(f"{dtype} on {device}" for dtype, device in kinds)
            raise ValueError(f"cannot concatenate Gaussians of different dtypes/devices {kinds_text}")
        return Gaussians(**{name: torch.cat([getattr(g, name) for g in items], 0) for name in FIELDS})

    def with_sh_degree(self, degree: int) -> Gaussians:
        """A copy whose shN has (degree+1)^2 - 1 coefficients: zeros appended or higher degrees
        dropped. Other fields are shared, not copied."""
        k = num_sh_bases(degree) - 1
        have = self.shN.shape[1]
        if k <= have:
            sh_n = self.shN[:, :k]
        else:
            pad = self.shN.new_zeros((len(self), k - have, 3))
            sh_n = torch.cat([self.shN, pad], 1)
        return Gaussians(self.means, self.scales, self.quats, self.opacities, self.sh0, sh_n)

    # ---- activations (what rasterization() takes) ------------------------------------------

    def activated_scales(self) -> Tensor:  # [N, 3]
        """Standard deviations along the local axes, world units."""
        return torch.exp(self.scales)

    def activated_opacities(self) -> Tensor:  # [N]
        """Opacities in (0, 1)."""
        return torch.sigmoid(self.opacities)

    def normalized_quats(self) -> Tensor:  # [N, 4]
        """Unit quaternions (w, x, y, z); an all-zero quaternion stays zero."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    def colors_sh(self) -> Tensor:  # [N, (d+1)^2, 3]
        """All SH coefficients, the `colors` argument of rasterization() with `sh_degree=d`."""
        return torch.cat([self.sh0, self.shN], 1)

    def rasterization_args(self, sh_degree: int | None = None) -> dict[str, Any]:
        """The scene arguments of `rasterization()` (means, quats, scales, opacities, colors,
        sh_degree); see the module function `rasterization_args`."""
        return rasterization_args(self.as_dict(), self.sh_degree if sh_degree is None else sh_degree)

    def rgb(self) -> Tensor:  # [N, 3]
        """View-independent colour, 0.5 + C0 * sh0 (not clamped)."""
        return self.sh0[:, 0] * C0 + 0.5

    # ---- checks and serialization ------------------------------------------------------------

    def check_finite(self) -> None:
        """Raise SplatforgeError naming each field with NaN or inf values and how many rows."""
        problems = []
        for name, value in self.named_parameters():
            bad_values = ~torch.isfinite(value.detach())
            bad = int(bad_values.reshape(len(self), -1).any(dim=1).sum()) if value.numel() else 0
            if bad:
                problems.append(f"{name}: {bad} rows")
        if problems:
            raise SplatforgeError(
                f"Gaussians have non-finite values (NaN or inf) out of {len(self)} rows in "
                f"{', '.join(problems)}; the input or the optimization diverged"
            )

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """(name, tensor) for each field, in the order means, scales, quats, opacities, sh0, shN."""
        for name in FIELDS:
            yield name, getattr(self, name)

    def parameters(self) -> Iterator[Tensor]:
        """The field tensors, in `named_parameters` order (so `torch.optim.Adam(g.parameters())`
        works, like `nn.Module.parameters()`)."""
        for _, value in self.named_parameters():
            yield value

    def as_dict(self) -> dict[str, Tensor]:
        """{field name: tensor}; the tensors are shared, not copied."""
        return dict(self.named_parameters())

    @staticmethod
    def from_dict(
        data: Mapping[str, Any],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Gaussians:
        """Build from a mapping of tensors or arrays, e.g. `as_dict()` or `np.load(path.npz)`.

        `shN` may be missing (degree 0). Other keys are ignored, so a checkpoint can hold more.
        """
        missing = [name for name in FIELDS[:-1] if name not in data]
        if missing:
            raise SplatforgeError(
                f"Gaussians data is missing {missing}; expected the keys {list(FIELDS)} "
                f"(shN optional), found {sorted(data)}"
            )
        fields = {name: _as_tensor(data[name]) for name in FIELDS if name in data}
        if "shN" not in fields:
            fields["shN"] = fields["sh0"].new_zeros((fields["sh0"].shape[0], 0, 3))
        dtype = dtype or (fields["means"].dtype if fields["means"].is_floating_point() else torch.float32)
        return Gaussians(**{name: t.to(device=device, dtype=dtype) for name, t in fields.items()})

    # ---- constructors ----------------------------------------------------------------------

    @staticmethod
    def empty(
        sh_degree: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Gaussians:
        """Zero Gaussians with room for SH of `sh_degree`."""
        k = num_sh_bases(sh_degree) - 1
        z = lambda *shape: torch.zeros(shape, device=device, dtype=dtype)  # noqa: E731
        return Gaussians(z(0, 3), z(0, 3), z(0, 4), z(0), z(0, 1, 3), z(0, k, 3))

    @staticmethod
    def from_points(
        points: Tensor | np.ndarray,  # [N, 3]
        colors: Tensor | np.ndarray | None = None,  # [N, 3]
        sh_degree: int = 3,
        scale: float | None = None,
        opacity: float = 0.1,
        dtype: torch.dtype = torch.float32,
    ) -> Gaussians:
        """Isotropic Gaussians at a point cloud's points, the usual start of training.

        Args:
            points: positions, world units. A tensor keeps its device; an array goes to the CPU.
            colors: RGB in [0, 1] (or uint8 in [0, 255]); None is mid-grey.
            sh_degree: SH degree of the result, 0..3; coefficients above degree 0 start at zero.
            scale: standard deviation of every Gaussian, world units. None uses each point's mean
                distance to its 3 nearest neighbours (as INRIA 3DGS and gsplat do), which needs
                at least 2 points.
            opacity: initial opacity in (0, 1).
            dtype: floating dtype of the result.

        Returns:
            Gaussians with identity rotations; shN zeros.
        """
        device = points.device if isinstance(points, Tensor) else torch.device("cpu")
        pts = _as_tensor(points)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must be [N, 3], got {tuple(pts.shape)}")
        pts = pts.detach().to(device=device, dtype=dtype)
        n = pts.shape[0]
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {opacity}")
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be 0..{MAX_SH_DEGREE}, got {sh_degree}")

        if colors is None:
            rgb = torch.full((n, 3), 0.5, dtype=dtype, device=device)
        else:
            raw = _as_tensor(colors)
            if tuple(raw.shape) != (n, 3):
                raise ValueError(f"colors must be [N, 3] with N={n}, got {tuple(raw.shape)}")
            rgb = raw.detach().to(device=device, dtype=dtype)
            if raw.dtype == torch.uint8:
                rgb = rgb / 255.0

        if scale is not None:
            if not scale > 0:
                raise ValueError(f"scale must be > 0 world units, got {scale}")
            log_scales = torch.full((n, 3), math.log(scale), dtype=dtype, device=device)
        elif n == 1:
            raise ValueError("one point has no neighbours to size it from; pass scale=")
        else:
            dists, _ = nearest_neighbors(pts.cpu().double().numpy(), k=3)
            finite = np.isfinite(dists)  # fewer than 4 points leave some neighbours missing
            mean_dist = np.where(finite, dists, 0.0).sum(1) / np.maximum(finite.sum(1), 1)
            # Stacked duplicate points have distance 0; a tiny floor keeps log() finite (INRIA
            # 3DGS clamps the squared distance at 1e-7 for the same reason).
            mean_dist = np.maximum(mean_dist, 1e-7**0.5)
            log_scales = torch.from_numpy(np.log(mean_dist)).to(device=device, dtype=dtype)
            log_scales = log_scales[:, None].repeat(1, 3)

        quats = torch.zeros((n, 4), dtype=dtype, device=device)
        quats[:, 0] = 1.0
        return Gaussians(
            means=pts.clone(),
            scales=log_scales,
            quats=quats,
            opacities=torch.full((n,), math.log(opacity / (1.0 - opacity)), dtype=dtype, device=device),
            sh0=rgb_to_sh(rgb)[:, None, :].contiguous(),
            shN=torch.zeros((n, num_sh_bases(sh_degree) - 1, 3), dtype=dtype, device=device),
        )


def rasterization_args(params: Mapping[str, Tensor], sh_degree: int) -> dict[str, Any]:
    """Pre-activation parameters (a `Gaussians`' fields, or a trainer's dict of them, optionally
    with leading batch dimensions) as the scene arguments of `rasterization()`: means, quats (the
    rasterizer normalizes them), activated scales and opacities, and as `colors` the SH
    coefficients up to `sh_degree` only (the rest would be copied for nothing; they still get
    their zero gradient through the slice). Cameras, image size and options are the caller's:

        rgb, alpha, meta = rasterization(**gaussians.rasterization_args(), viewmats=..., Ks=..., ...)
    """
    k_rest = num_sh_bases(sh_degree) - 1
    if params["shN"].shape[-2] < k_rest:
        raise ValueError(f"sh_degree {sh_degree} needs {k_rest} shN coefficients, got {params['shN'].shape[-2]}")
    colors = torch.cat([params["sh0"], params["shN"][..., :k_rest, :]], dim=-2)
    return dict(means=params["means"], quats=params["quats"], scales=torch.exp(params["scales"]),
                opacities=torch.sigmoid(params["opacities"]), colors=colors, sh_degree=sh_degree)


def _as_tensor(value: Any) -> Tensor:
    """A tensor from a tensor (unchanged), array, list or scalar; lists go through numpy so a
    list of bools becomes a bool mask."""
    return value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
