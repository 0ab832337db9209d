"""`rasterization()`: gsplat 1.5.3's entry point, running on a CPU (or delegating to gsplat on CUDA)."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ..core.sh import eval_sh
from .sh_cpu import sh_colors
from . import backend_gsplat
from .pixels import rasterize_to_pixels
from .project import covariances, project_gaussians
from .project_cpu import can_fuse, project_gaussians_fused
from .reference import composite_reference
from .tiles import isect_tiles

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
CAMERA_MODELS = ("pinhole", "ortho", "fisheye")
BACKENDS = ("auto", "cpu", "torch", "gsplat")


def _expect(name: str, t: Optional[Tensor], shape: Tuple, what: str) -> None:
    if t is None or not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {what}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {what} = {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def _check_finite(**tensors: Optional[Tensor]) -> None:
    for name, t in tensors.items():
        # one reduction first: a finite sum means every element is finite (it is NaN or inf otherwise,
        # or on overflow, which the exact check below sorts out)
        if t is None or bool(torch.isfinite(t.detach().sum())):
            continue
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf); rasterization needs finite inputs")


def _triu_to_covars(triu: Tensor) -> Tensor:  # [..., 6] (xx, xy, xz, yy, yz, zz) -> [..., 3, 3]
    xx, xy, xz, yy, yz, zz = triu.unbind(-1)
    return torch.stack([xx, xy, xz, xy, yy, yz, xz, yz, zz], dim=-1).reshape(triu.shape[:-1] + (3, 3))


def choose_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and backend_gsplat.available() else "cpu"
    return backend


def rasterization(
    means: Tensor,  # [..., N, 3]
    quats: Optional[Tensor],  # [..., N, 4]
    scales: Optional[Tensor],  # [..., N, 3]
    opacities: Tensor,  # [..., N]
    colors: Tensor,  # [..., (C,) N, D] or [..., (C,) N, K, 3]
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,  # [..., C, D]
    render_mode: str = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: str = "pinhole",
    segmented: bool = False,
    covars: Optional[Tensor] = None,  # [..., N, 3, 3] or [..., N, 6] (upper triangle)
    with_ut: bool = False,
    with_eval3d: bool = False,
    radial_coeffs: Optional[Tensor] = None,
    tangential_coeffs: Optional[Tensor] = None,
    thin_prism_coeffs: Optional[Tensor] = None,
    ftheta_coeffs=None,
    rolling_shutter=None,
    viewmats_rs: Optional[Tensor] = None,
    backend: str = "auto",
) -> Tuple[Tensor, Tensor, Dict]:
    """Rasterize N 3D Gaussians into C images, with gsplat 1.5.3's signature and semantics.

    Code written for `gsplat.rasterization` runs unchanged: swap the import. The one new argument
    is `backend` ("auto", "cpu", "torch", "gsplat"); "auto" delegates to gsplat's CUDA kernels for
    CUDA tensors when gsplat is installed and runs the Numba CPU kernels otherwise.

    Args:
        means: Gaussian centres in world space. [..., N, 3]
        quats: rotations as quaternions (w, x, y, z), need not be normalized. [..., N, 4]
            (None when `covars` is given)
        scales: linear (post-activation) standard deviations along the local axes. [..., N, 3]
        opacities: post-activation opacities in [0, 1]. [..., N]
        colors: with `sh_degree=None`, any D feature channels per Gaussian, shared by the cameras
            [..., N, D] or per camera [..., C, N, D]; with `sh_degree` in 0..3, SH coefficients
            [..., N, K, 3] or [..., C, N, K, 3] with K >= (sh_degree + 1)^2. SH colours get +0.5
            and are clamped at 0, as INRIA's renderer does.
        viewmats: world-to-camera matrices, OpenCV convention (x right, y down, z forward). [..., C, 4, 4]
        Ks: intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; pixel centres at +0.5. [..., C, 3, 3]
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians whose camera-space depth is outside (near, far) are culled.
        radius_clip: Gaussians whose pixel radius is at most this are culled.
        eps2d: added to the 2D covariance's diagonal (a low-pass filter), in pixels^2.
        sh_degree: see `colors`.
        packed: True returns per-(camera, Gaussian) results only for visible pairs, [nnz, ...],
            with `camera_ids` and `gaussian_ids` in meta; False returns [..., C, N, ...].
        tile_size: tile edge in pixels.
        backgrounds: colour behind the Gaussians per image. [..., C, D]
        render_mode: "RGB"; "D" accumulated depth sum(w_i z_i); "ED" expected depth
            sum(w_i z_i) / sum(w_i); "RGB+D" and "RGB+ED" append the depth as the last channel.
        absgrad: after backward, `meta["means2d"].absgrad` holds sum over pixels of |dL/dmean2d|.
        rasterize_mode: "classic" or "antialiased" (opacity times the eps2d blur's compensation
            sqrt(det(cov2d) / det(cov2d + eps2d I)), as in Mip-Splatting).
        camera_model: "pinhole", "ortho" or "fisheye" (equidistant).
        covars: world covariances in place of quats and scales. [..., N, 3, 3] or [..., N, 6]
        sparse_grad, distributed, with_ut, with_eval3d, distortion, ftheta, rolling shutter:
            gsplat's CUDA-only features; the CPU backends raise a ValueError naming them.
        segmented, channel_chunk: CUDA implementation details, accepted and ignored on the CPU.

    Returns:
        render_colors [..., C, H, W, D'] (D' = D, 1 for depth modes, or D + 1),
        render_alphas [..., C, H, W, 1], and meta, a dict with camera_ids, gaussian_ids (packed),
        radii [..., C, N, 2] int32, means2d, depths, conics, opacities (after compensation),
        tiles_per_gauss, isect_ids, flatten_ids, isect_offsets [..., C, tile_height, tile_width],
        tile_width, tile_height, width, height, tile_size, n_batches, n_cameras. Call
        `meta["means2d"].retain_grad()` before backward to read the screen-space gradients that
        densification uses.

    Non-finite inputs raise a ValueError naming the argument.

    Example:
        >>> import torch, splatforge
        >>> means = torch.randn(100, 3) + torch.tensor([0.0, 0.0, 5.0])
        >>> quats = torch.randn(100, 4); scales = torch.full((100, 3), 0.05)
        >>> opacities = torch.full((100,), 0.8); colors = torch.rand(100, 3)
        >>> viewmats = torch.eye(4)[None]; Ks = torch.tensor([[[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]]])
        >>> rgb, alpha, meta = splatforge.rasterization(means, quats, scales, opacities, colors,
        ...                                              viewmats, Ks, width=128, height=96)
        >>> rgb.shape, alpha.shape
        (torch.Size([1, 96, 128, 3]), torch.Size([1, 96, 128, 1]))
    """
    chosen = choose_backend(backend, means.device)
    if chosen == "gsplat":
        return backend_gsplat.rasterization(**{k: v for k, v in locals().items() if k not in ("backend", "chosen")})

    unsupported = {
        "sparse_grad": sparse_grad, "distributed": distributed, "with_ut": with_ut,
        "with_eval3d": with_eval3d, "radial_coeffs": radial_coeffs is not None,
        "tangential_coeffs": tangential_coeffs is not None, "thin_prism_coeffs": thin_prism_coeffs is not None,
        "ftheta_coeffs": ftheta_coeffs is not None, "viewmats_rs": viewmats_rs is not None,
    }
    for name, used in unsupported.items():
        if used:
            raise ValueError(f"{name} is a gsplat CUDA feature that the {chosen!r} backend does not support")
    if rolling_shutter is not None and getattr(rolling_shutter, "name", str(rolling_shutter)) != "GLOBAL":
        raise ValueError(f"rolling_shutter is a gsplat CUDA feature that the {chosen!r} backend does not support")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model must be one of {CAMERA_MODELS} on the CPU, got {camera_model!r}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"width and height must be positive ints, got {width!r} x {height!r}")
    if not (isinstance(tile_size, int) and tile_size > 0):
        raise ValueError(f"tile_size must be a positive int, got {tile_size!r}")

    # ---- shapes -------------------------------------------------------------------------------
    if not isinstance(means, Tensor) or means.dim() < 2 or means.shape[-1] != 3:
        raise ValueError(f"means must be a tensor of shape [..., N, 3], got {getattr(means, 'shape', means)}")
    batch_dims, n = tuple(means.shape[:-2]), means.shape[-2]
    _expect("means", means, batch_dims + (n, 3), "[..., N, 3]")
    if viewmats is None or viewmats.dim() < 3:
        raise ValueError(f"viewmats must have shape [..., C, 4, 4], got {getattr(viewmats, 'shape', None)}")
    c = viewmats.shape[-3]
    _expect("viewmats", viewmats, batch_dims + (c, 4, 4), "[..., C, 4, 4]")
    _expect("Ks", Ks, batch_dims + (c, 3, 3), "[..., C, 3, 3]")
    _expect("opacities", opacities, batch_dims + (n,), "[..., N]")
    if covars is None:
        _expect("quats", quats, batch_dims + (n, 4), "[..., N, 4]")
        _expect("scales", scales, batch_dims + (n, 3), "[..., N, 3]")
        world_covars = None  # built below only if the torch projection runs
    else:
        if covars.shape == batch_dims + (n, 6):
            world_covars = _triu_to_covars(covars)
        else:
            _expect("covars", covars, batch_dims + (n, 3, 3), "[..., N, 3, 3] or [..., N, 6]")
            world_covars = covars
    nb = len(batch_dims)
    if sh_degree is None:
        per_camera = colors.dim() == nb + 3
        want = batch_dims + ((c, n) if per_camera else (n,))
        if colors.dim() not in (nb + 2, nb + 3) or tuple(colors.shape[:-1]) != want:
            raise ValueError(f"colors must be [..., N, D] or [..., C, N, D] with N={n}, C={c}, got {tuple(colors.shape)}")
    else:
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be None or 0..3, got {sh_degree}")
        per_camera = colors.dim() == nb + 4
        want = batch_dims + ((c, n) if per_camera else (n,))
        k_needed = (sh_degree + 1) ** 2
        if (colors.dim() not in (nb + 3, nb + 4) or tuple(colors.shape[:-2]) != want
                or colors.shape[-1] != 3 or colors.shape[-2] < k_needed):
            raise ValueError(
                f"with sh_degree={sh_degree}, colors must be [..., N, K, 3] or [..., C, N, K, 3] with "
                f"N={n}, C={c}, K >= {k_needed}, got {tuple(colors.shape)}"
            )
    depth_channels = render_mode in ("D", "ED")
    if backgrounds is not None:
        d_bg = 3 if sh_degree is not None else colors.shape[-1]
        _expect("backgrounds", backgrounds, batch_dims + (c, d_bg), "[..., C, D]")
    _check_finite(means=means, quats=quats, scales=scales, covars=covars, opacities=opacities,
                  colors=colors, viewmats=viewmats, Ks=Ks, backgrounds=backgrounds)

    # ---- projection and colours ---------------------------------------------------------------
    projection_args = dict(eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
                           calc_compensations=rasterize_mode == "antialiased", camera_model=camera_model)
    if chosen == "cpu" and can_fuse(covars, viewmats, Ks, camera_model):
        proj = project_gaussians_fused(means, quats, scales, opacities, viewmats, Ks, width, height,
                                       **projection_args)
    else:
        if world_covars is None:
            world_covars = covariances(quats, scales)
        proj = project_gaussians(means, world_covars, viewmats, Ks, width, height, opacities=opacities,
                                 **projection_args)
    radii, means2d, depths, conics = proj.radii, proj.means2d, proj.depths, proj.conics
    opac = opacities[..., None, :].expand(batch_dims + (c, n))
    if proj.compensations is not None:
        opac = opac * proj.compensations
    if depth_channels:  # depth alone: the colours (and their SH) are never evaluated
        feats = depths[..., None]
        if backgrounds is not None:
            backgrounds = torch.zeros(batch_dims + (c, 1), dtype=backgrounds.dtype, device=backgrounds.device)
    elif sh_degree is None:
        feats = colors if per_camera else colors[..., None, :, :].expand(batch_dims + (c, n, colors.shape[-1]))
    else:
        campos = torch.linalg.inv(viewmats)[..., :3, 3]  # [..., C, 3]
        dirs = means[..., None, :, :] - campos[..., :, None, :]  # [..., C, N, 3]
        if chosen == "cpu" and not batch_dims and not per_camera:  # fused Numba SH, forward and backward
            feats = torch.clamp_min(sh_colors(sh_degree, dirs, colors) + 0.5, 0.0)
        else:
            coeffs = colors if per_camera else colors[..., None, :, :, :].expand(batch_dims + (c,) + colors.shape[-3:])
            feats = torch.clamp_min(eval_sh(sh_degree, dirs, coeffs) + 0.5, 0.0)
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, torch.zeros_like(backgrounds[..., :1])], dim=-1)

    n_images = math.prod(batch_dims) * c
    image_ids = torch.arange(n_images, device=means.device).repeat_interleave(n)
    gauss_ids = torch.arange(n, device=means.device).repeat(n_images)
    meta: Dict = {"batch_ids": None, "camera_ids": None, "gaussian_ids": None}
    if packed:
        visible = (radii > 0).all(dim=-1).reshape(-1)  # over [I * N]
        sel = visible.nonzero().squeeze(1)
        image_ids, gauss_ids = image_ids[sel], gauss_ids[sel]
        b_ids, cam_ids, g_ids = image_ids // c, image_ids % c, gauss_ids
        radii = radii.reshape(-1, 2)[sel]
        means2d = means2d.reshape(-1, 2)[sel]
        depths = depths.reshape(-1)[sel]
        conics = conics.reshape(-1, 3)[sel]
        opac = opac.reshape(-1)[sel]
        feats = feats.reshape(-1, feats.shape[-1])[sel]
        meta.update(batch_ids=b_ids, camera_ids=cam_ids, gaussian_ids=g_ids)
    meta.update(radii=radii, means2d=means2d, depths=depths, conics=conics, opacities=opac)

    # ---- tiles and compositing ----------------------------------------------------------------
    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    tiles_per_gauss, isect_ids, flatten_ids, isect_offsets = isect_tiles(
        means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1), image_ids, n_images,
        tile_size, tile_width, tile_height,
    )
    bg_flat = None if backgrounds is None else backgrounds.reshape(n_images, -1)
    if chosen == "cpu":
        render_colors, render_alphas = rasterize_to_pixels(
            means2d, conics, feats, opac, width, height, tile_size, isect_offsets, flatten_ids,
            backgrounds=bg_flat, absgrad=absgrad,
        )
    else:
        render_colors, render_alphas = _composite_torch(
            means2d, conics, feats, opac, depths, radii, image_ids, gauss_ids, n_images, n,
            width, height, bg_flat,
        )
    render_colors = render_colors.reshape(batch_dims + (c, height, width, -1))
    render_alphas = render_alphas.reshape(batch_dims + (c, height, width, 1))
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )
    meta.update(
        tiles_per_gauss=tiles_per_gauss.reshape(radii.shape[:-1]).to(means.device),
        isect_ids=isect_ids.to(means.device), flatten_ids=flatten_ids.to(means.device),
        isect_offsets=isect_offsets.reshape(batch_dims + (c, tile_height, tile_width)).to(means.device),
        tile_width=tile_width, tile_height=tile_height, width=width, height=height,
        tile_size=tile_size, n_batches=math.prod(batch_dims), n_cameras=c,
    )
    return render_colors, render_alphas, meta


def _composite_torch(means2d, conics, feats, opac, depths, radii, image_ids, gauss_ids, n_images, n,
                     width, height, backgrounds):
    """The dense reference, fed the same entries as the kernels, scattered back to [I, N, ...]."""
    def dense(x: Tensor) -> Tensor:
        return x.new_zeros((n_images, n) + tuple(x.shape[1:])).index_put((image_ids, gauss_ids), x)

    d = feats.shape[-1]
    return composite_reference(
        dense(means2d.reshape(-1, 2)), dense(conics.reshape(-1, 3)), dense(feats.reshape(-1, d)),
        dense(opac.reshape(-1)), dense(depths.reshape(-1)), dense((radii.reshape(-1, 2) > 0).all(dim=-1)),
        width, height, backgrounds,
    )
