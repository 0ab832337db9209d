"""The demo's own ray caster (Numba, parallel over image rows), independent of the Gaussian
rasterizer, so the demo photos are ground truth the trainer has to earn.

`render_view(scene, viewmat, K, width, height)` shoots `samples_per_side`^2 rays per pixel on a
stratified grid (each sample jittered inside its cell by a fixed, seeded pattern), shades each hit
(Lambert: ambient + one directional light, with a shadow ray), averages the samples in linear RGB
and encodes sRGB. It also returns the camera depth and shape index of the ray through each pixel
centre. Cameras follow the project's convention: world-to-camera `viewmat` [4, 4] with OpenCV
axes (x right, y down, z forward), intrinsics `K` [3, 3], pixel centres at +0.5.

`cast_rays`, `occluded` and `shade_points` expose the same intersection and shading for
arbitrary rays and surface points (the capture writer samples its SfM points with them).
The first call compiles the kernels (several seconds, then cached on disk).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SplatforgeError
from . import kernels
from .scene import Box, Cylinder, GroundDisk, Scene, Sky, Sphere, Texture

_TEXTURE_CODES = {"checker": kernels.CHECKER, "stripes": kernels.STRIPES, "noise": kernels.NOISE,
                  "gradient": kernels.GRADIENT}


@dataclass(frozen=True)
class PackedScene:
    """A scene as the kernels take it (see kernels' module docstring)."""

    kinds: np.ndarray  # [S] int64
    params: np.ndarray  # [S, 8] float64
    tex_kinds: np.ndarray  # [S] int64
    tex_params: np.ndarray  # [S, 13] float64
    tex_seeds: np.ndarray  # [S] int64
    lighting: np.ndarray  # [5] float64: direction towards the light (3), intensity, ambient
    background: np.ndarray  # [3] float64, linear RGB
    sky: np.ndarray = field(default_factory=lambda: np.zeros(kernels.SKY_PARAMS))  # see kernels.sky_radiance

    @property
    def geometry(self) -> tuple[np.ndarray, np.ndarray]:
        return self.kinds, self.params

    @property
    def shading(self) -> tuple[np.ndarray, ...]:
        return self.kinds, self.params, self.tex_kinds, self.tex_params, self.tex_seeds, self.lighting


def _pack_texture(texture: Texture) -> tuple[int, np.ndarray, int]:
    axis = np.asarray(texture.axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    tp = np.array([*texture.color_a, *texture.color_b, texture.scale, *axis, texture.offset, texture.softness,
                   texture.tint], dtype=np.float64)
    return _TEXTURE_CODES[texture.kind], tp, int(texture.seed)


def pack_sky(sky: Sky | None, sun: np.ndarray) -> np.ndarray:
    """The kernels' sky parameters (see `kernels.sky_radiance`); all zero for no sky."""
    out = np.zeros(kernels.SKY_PARAMS)
    if sky is None:
        return out
    out[0] = 1.0
    out[1:4], out[4:7] = sky.zenith, sky.horizon
    out[7:10] = sun
    out[10:14] = sky.sun_glow, sky.cloud_cover, sky.cloud_size, sky.seed
    out[14:17] = sky.hills
    out[17:19] = np.radians(sky.hill_height_degrees), np.radians(sky.hill_variation_degrees)
    return out


def pack_scene(scene: Scene) -> PackedScene:
    if not scene.shapes:
        raise SplatforgeError("the scene has no shapes")
    kinds, params, tex = [], [], []
    for shape in scene.shapes:
        p = np.zeros(8)
        if isinstance(shape, Sphere):
            kinds.append(kernels.SPHERE)
            p[:4] = [*shape.center, shape.radius]
        elif isinstance(shape, Box):
            kinds.append(kernels.BOX)
            yaw = np.radians(shape.yaw)
            p[:] = [*shape.center, *shape.half_size, np.cos(yaw), np.sin(yaw)]
        elif isinstance(shape, Cylinder):
            kinds.append(kernels.CYLINDER)
            p[:5] = [*shape.center, shape.radius, shape.z_min, shape.z_max]
        elif isinstance(shape, GroundDisk):
            kinds.append(kernels.GROUND)
            p[0] = shape.radius
        else:
            raise SplatforgeError(f"the ray caster does not know the shape {type(shape).__name__}")
        params.append(p)
        tex.append(_pack_texture(shape.texture))
    light = np.asarray(scene.light_direction, dtype=np.float64)
    if not np.isclose(np.linalg.norm(light), 1.0, atol=1e-6):
        raise SplatforgeError(f"light_direction must be a unit vector, got {scene.light_direction}")
    return PackedScene(
        kinds=np.array(kinds, dtype=np.int64),
        params=np.stack(params),
        tex_kinds=np.array([t[0] for t in tex], dtype=np.int64),
        tex_params=np.stack([t[1] for t in tex]),
        tex_seeds=np.array([t[2] for t in tex], dtype=np.int64),
        lighting=np.array([*light, scene.light_intensity, scene.ambient], dtype=np.float64),
        background=srgb_to_linear(np.asarray(scene.background, dtype=np.float64)),
        sky=pack_sky(scene.sky, light),
    )


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _rays(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    origins = np.ascontiguousarray(origins, dtype=np.float64)
    dirs = np.asarray(dirs, dtype=np.float64)
    if origins.ndim != 2 or origins.shape[1] != 3 or dirs.shape != origins.shape:
        raise SplatforgeError(f"origins and dirs must both be [N, 3], got {origins.shape} and {dirs.shape}")
    norms = np.linalg.norm(dirs, axis=1, keepdims=True)
    if not (np.isfinite(origins).all() and np.isfinite(dirs).all() and (norms > 0).all()):
        raise SplatforgeError("ray origins and directions must be finite, and directions non-zero")
    return origins, np.ascontiguousarray(dirs / norms)


def cast_rays(scene: Scene | PackedScene, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of each ray (`origins`, `dirs` [N, 3]; directions need not be unit): distance
    along the unit direction [N] (inf on a miss) and shape index [N] (-1 on a miss)."""
    packed = scene if isinstance(scene, PackedScene) else pack_scene(scene)
    origins, dirs = _rays(origins, dirs)
    dist = np.empty(len(origins))
    index = np.empty(len(origins), dtype=np.int64)
    kernels.cast_kernel(*packed.geometry, origins, dirs, dist, index)
    return dist, index


def occluded(scene: Scene | PackedScene, origins: np.ndarray, dirs: np.ndarray,
             max_dist: np.ndarray | float = np.inf) -> np.ndarray:
    """Whether each ray hits anything closer than `max_dist` ([N] or a scalar) along its unit
    direction: shadow and visibility tests."""
    packed = scene if isinstance(scene, PackedScene) else pack_scene(scene)
    origins, dirs = _rays(origins, dirs)
    limit = np.ascontiguousarray(np.broadcast_to(np.asarray(max_dist, dtype=np.float64), (len(origins),)))
    out = np.empty(len(origins), dtype=np.bool_)
    kernels.occluded_kernel(*packed.geometry, origins, dirs, limit, out)
    return out


def _check_index(packed: PackedScene, index: np.ndarray, n: int) -> np.ndarray:
    index = np.ascontiguousarray(index, dtype=np.int64)
    if index.shape != (n,) or (n and (index.min() < 0 or index.max() >= len(packed.kinds))):
        raise SplatforgeError(f"index must be [{n}] shape indices in [0, {len(packed.kinds)}), got shape {index.shape}")
    return index


def shade_points(scene: Scene | PackedScene, points: np.ndarray, index: np.ndarray,
                 view_dirs: np.ndarray) -> np.ndarray:
    """Linear RGB radiance [N, 3] of surface points [N, 3] of shapes `index` [N], seen along
    `view_dirs` [N, 3] (towards the points); Lambert + ambient with shadows, as in the renders."""
    packed = scene if isinstance(scene, PackedScene) else pack_scene(scene)
    points, view_dirs = _rays(points, view_dirs)
    index = _check_index(packed, index, len(points))
    out = np.empty((len(points), 3))
    kernels.shade_kernel(*packed.shading, points, index, view_dirs, out)
    return out


def surface_normals(scene: Scene | PackedScene, points: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Outward unit normals [N, 3] at surface points [N, 3] of shapes `index` [N]."""
    packed = scene if isinstance(scene, PackedScene) else pack_scene(scene)
    points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    index = _check_index(packed, index, len(points))
    out = np.empty((len(points), 3))
    kernels.normals_kernel(*packed.geometry, points, index, out)
    return out


def texture_albedo(texture: Texture, local: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 3]
    """Linear RGB albedo of a texture at points in its shape's local frame."""
    code, tp, seed = _pack_texture(texture)
    local = np.ascontiguousarray(local, dtype=np.float64).reshape(-1, 3)
    out = np.empty((len(local), 3))
    kernels.albedo_kernel(code, tp, seed, local, out)
    return out


def sample_offsets(samples_per_side: int, seed: int = 0) -> np.ndarray:  # -> [S, 2] in (0, 1)
    """Stratified sub-pixel positions: one per cell of an n x n grid, jittered within the middle
    half of its cell (fixed by `seed`, so renders are reproducible); n = 1 is the pixel centre."""
    n = int(samples_per_side)
    if n < 1 or n > 16:
        raise SplatforgeError(f"samples_per_side must be in 1..16, got {samples_per_side}")
    if n == 1:
        return np.array([[0.5, 0.5]])
    rng = np.random.default_rng(seed)
    grid = (np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="xy"), axis=-1).reshape(-1, 2) + 0.5) / n
    return grid + rng.uniform(-0.25, 0.25, size=grid.shape) / n


def _check_camera(viewmat, K, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    viewmat, K = np.asarray(viewmat, dtype=np.float64), np.asarray(K, dtype=np.float64)
    if viewmat.shape != (4, 4) or K.shape != (3, 3):
        raise SplatforgeError(f"viewmat must be [4, 4] and K [3, 3], got {viewmat.shape} and {K.shape}")
    if not (np.isfinite(viewmat).all() and np.isfinite(K).all()):
        raise SplatforgeError("viewmat and K must be finite")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise SplatforgeError(f"focal lengths must be > 0 pixels, got fx={K[0, 0]}, fy={K[1, 1]}")
    rot = viewmat[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
        raise SplatforgeError("viewmat's rotation part is not a rotation (orthonormal, det +1)")
    if not (1 <= int(width) <= 16384 and 1 <= int(height) <= 16384):
        raise SplatforgeError(f"image size must be between 1x1 and 16384x16384, got {width}x{height}")
    return viewmat, K


def pixel_rays(viewmat: np.ndarray, K: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-space origins and unit directions [N, 3] of the rays through pixel coordinates
    (u, v) [N] (continuous; the centre of pixel column i, row j is (i + 0.5, j + 0.5))."""
    viewmat, K = np.asarray(viewmat, dtype=np.float64), np.asarray(K, dtype=np.float64)
    rot, t = viewmat[:3, :3], viewmat[:3, 3]
    cam = np.stack([(np.asarray(u) - K[0, 2]) / K[0, 0], (np.asarray(v) - K[1, 2]) / K[1, 1], np.ones(np.shape(u))], 1)
    dirs = cam @ rot  # camera -> world is rot^T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.broadcast_to(-rot.T @ t, dirs.shape).copy(), dirs


@dataclass
class RenderedView:
    image: np.ndarray  # [H, W, 3] float32 sRGB in [0, 1], antialiased
    depth: np.ndarray  # [H, W] float64 camera z of the surface at each pixel centre; inf where none
    shape_index: np.ndarray  # [H, W] int64 index into scene.shapes at each pixel centre, -1 for none

    @property
    def mask(self) -> np.ndarray:  # [H, W] bool: a surface (not background or sky) at the pixel centre
        return self.shape_index >= 0


def render_view(scene: Scene | PackedScene, viewmat: np.ndarray, K: np.ndarray, width: int, height: int,
                samples_per_side: int = 2, seed: int = 0) -> RenderedView:
    """Ray-cast one view (see the module docstring).

    Args:
        scene: what to render (`scene.make_scene`), or it packed by `pack_scene`.
        viewmat: [4, 4] world-to-camera, OpenCV axes.
        K: [3, 3] pinhole intrinsics in pixels.
        width, height: image size in pixels.
        samples_per_side: n for n x n antialiasing samples per pixel (1: the pixel centre only).
        seed: fixes the sub-pixel jitter pattern.
    """
    packed = scene if isinstance(scene, PackedScene) else pack_scene(scene)
    viewmat, K = _check_camera(viewmat, K, width, height)
    width, height = int(width), int(height)
    offsets = sample_offsets(samples_per_side, seed)
    rot = np.ascontiguousarray(viewmat[:3, :3])
    origin = -rot.T @ viewmat[:3, 3]
    image = np.empty((height, width, 3), dtype=np.float32)
    depth = np.empty((height, width))
    index = np.empty((height, width), dtype=np.int64)
    kernels.render_kernel(*packed.shading, packed.background, packed.sky, rot, origin, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                          offsets, image, depth, index)
    return RenderedView(image, depth, index)


def render_views(scene: Scene | PackedScene, viewmats: np.ndarray, Ks: np.ndarray, width: int, height: int,
                 samples_per_side: int = 2, seed: int = 0, progress=None) -> list[RenderedView]:
    """`render_view` for each camera (`viewmats` [C, 4, 4], `Ks` [C, 3, 3]); `progress(views_done)`
    is called after each view when given."""
    viewmats, Ks = np.asarray(viewmats, dtype=np.float64), np.asarray(Ks, dtype=np.float64)
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (len(viewmats), 3, 3):
        raise SplatforgeError(f"viewmats must be [C, 4, 4] and Ks [C, 3, 3], got {viewmats.shape} and {Ks.shape}")
    packed = scene if isinstance(scene, PackedScene) else pack_scene(scene)
    views = []
    for viewmat, k in zip(viewmats, Ks):
        views.append(render_view(packed, viewmat, k, width, height, samples_per_side, seed))
        if progress is not None:
            progress(len(views))
    return views
