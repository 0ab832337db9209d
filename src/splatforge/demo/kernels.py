"""Numba kernels of the demo ray caster: per-ray intersection, normals, solid textures, shading.

The scene arrives packed (see `raycast.PackedScene`): shape kinds [S] and parameters [S, 8],
texture kinds [S], parameters [S, 13] and seeds [S], lighting [5] = (light direction towards
the light, intensity, ambient), and a sky [SKY_PARAMS] (all zero: none, rays that miss see the
background colour; see `sky_radiance`). Each ray or pixel is computed independently by one thread, so
results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..core.parallel import serialized

GROUND, SPHERE, BOX, CYLINDER = 0, 1, 2, 3
CHECKER, STRIPES, NOISE, GRADIENT = 0, 1, 2, 3
T_MIN = 1e-6  # rays start this far from their origin (scene units)
SHADOW_OFFSET = 1e-4  # shadow rays leave the surface along its normal by this much
INF = np.inf
SKY_PARAMS = 20


@numba.njit(cache=True)
def hit_shape(kind, p, ox, oy, oz, dx, dy, dz):
    """Distance along the unit ray (o, d) to its first hit with one shape beyond T_MIN, or inf."""
    if kind == SPHERE:
        cx, cy, cz = ox - p[0], oy - p[1], oz - p[2]
        b = cx * dx + cy * dy + cz * dz
        disc = b * b - (cx * cx + cy * cy + cz * cz - p[3] * p[3])
        if disc < 0.0:
            return INF
        root = math.sqrt(disc)
        if -b - root > T_MIN:
            return -b - root
        return -b + root if -b + root > T_MIN else INF
    if kind == BOX:
        co, si = p[6], p[7]
        wx, wy = ox - p[0], oy - p[1]
        lo = (co * wx + si * wy, -si * wx + co * wy, oz - p[2])
        ld = (co * dx + si * dy, -si * dx + co * dy, dz)
        near, far = -INF, INF
        for a in range(3):
            h = p[3 + a]
            if abs(ld[a]) < 1e-15:
                if lo[a] < -h or lo[a] > h:
                    return INF
                continue
            ta, tb = (-h - lo[a]) / ld[a], (h - lo[a]) / ld[a]
            near = max(near, min(ta, tb))
            far = min(far, max(ta, tb))
        if near > far:
            return INF
        if near > T_MIN:
            return near
        return far if far > T_MIN else INF
    if kind == CYLINDER:
        wx, wy = ox - p[0], oy - p[1]
        r2 = p[2] * p[2]
        best = INF
        a = dx * dx + dy * dy
        if a > 1e-15:
            b = wx * dx + wy * dy
            disc = b * b - a * (wx * wx + wy * wy - r2)
            if disc >= 0.0:
                root = math.sqrt(disc)
                for t in ((-b - root) / a, (-b + root) / a):
                    z = oz + t * dz
                    if T_MIN < t < best and p[3] <= z <= p[4]:
                        best = t
        if abs(dz) > 1e-15:
            for cap in (p[3], p[4]):
                t = (cap - oz) / dz
                qx, qy = wx + t * dx, wy + t * dy
                if T_MIN < t < best and qx * qx + qy * qy <= r2:
                    best = t
        return best
    # GROUND: the disk z = 0 of radius p[0]
    if abs(dz) < 1e-15:
        return INF
    t = -oz / dz
    if t <= T_MIN:
        return INF
    x, y = ox + t * dx, oy + t * dy
    return t if x * x + y * y <= p[0] * p[0] else INF


@numba.njit(cache=True)
def hit_scene(kinds, params, ox, oy, oz, dx, dy, dz):
    """(distance, shape index) of the first hit; (inf, -1) for a miss."""
    best, index = INF, -1
    for s in range(kinds.shape[0]):
        t = hit_shape(kinds[s], params[s], ox, oy, oz, dx, dy, dz)
        if t < best:
            best, index = t, s
    return best, index


@numba.njit(cache=True)
def blocked(kinds, params, ox, oy, oz, dx, dy, dz, max_dist):
    for s in range(kinds.shape[0]):
        if hit_shape(kinds[s], params[s], ox, oy, oz, dx, dy, dz) < max_dist:
            return True
    return False


@numba.njit(cache=True)
def shape_normal(kind, p, x, y, z):
    """Outward unit normal at a surface point."""
    if kind == SPHERE:
        nx, ny, nz = x - p[0], y - p[1], z - p[2]
    elif kind == BOX:
        co, si = p[6], p[7]
        wx, wy = x - p[0], y - p[1]
        lx, ly, lz = (co * wx + si * wy) / p[3], (-si * wx + co * wy) / p[4], (z - p[2]) / p[5]
        ax, ay, az = abs(lx), abs(ly), abs(lz)
        mx = my = mz = 0.0
        if ax >= ay and ax >= az:
            mx = 1.0 if lx > 0 else -1.0
        elif ay >= az:
            my = 1.0 if ly > 0 else -1.0
        else:
            mz = 1.0 if lz > 0 else -1.0
        nx, ny, nz = co * mx - si * my, si * mx + co * my, mz
    elif kind == CYLINDER:
        rx, ry = x - p[0], y - p[1]
        side_gap = abs(math.sqrt(rx * rx + ry * ry) - p[2])
        if abs(z - p[4]) < side_gap:
            nx, ny, nz = 0.0, 0.0, 1.0
        elif abs(z - p[3]) < side_gap:
            nx, ny, nz = 0.0, 0.0, -1.0
        else:
            nx, ny, nz = rx, ry, 0.0
    else:
        nx, ny, nz = 0.0, 0.0, 1.0
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    return nx / norm, ny / norm, nz / norm


@numba.njit(cache=True)
def shape_local(kind, p, x, y, z):
    """A surface point in the shape's own frame, where its solid texture is defined."""
    if kind == SPHERE:
        return x - p[0], y - p[1], z - p[2]
    if kind == BOX:
        co, si = p[6], p[7]
        wx, wy = x - p[0], y - p[1]
        return co * wx + si * wy, -si * wx + co * wy, z - p[2]
    if kind == CYLINDER:
        return x - p[0], y - p[1], z - p[3]
    return x, y, z


@numba.njit(cache=True)
def _hash01(ix, iy, iz, seed):
    """A pseudo-random value in [0, 1) per integer lattice point (64-bit integer mixing; the
    masked shifts are logical shifts on int64)."""
    h = ix * 0x1E3779B97F4A7C15 ^ iy * 0x42B2AE3D27D4EB4F ^ iz * 0x165667B19E3779F9 ^ seed * 0x27D4EB2F165667C5
    h ^= (h >> 31) & 0x1FFFFFFFF
    h *= 0x3F58476D1CE4E5B9
    h ^= (h >> 29) & 0x7FFFFFFFF
    h *= 0x14C4F4EC5F3F5A3B
    h ^= (h >> 32) & 0xFFFFFFFF
    return ((h >> 11) & 0x1FFFFFFFFFFFFF) / 9007199254740992.0


@numba.njit(cache=True)
def _fade(t):
    return t * t * (3.0 - 2.0 * t)


@numba.njit(cache=True)
def value_noise(x, y, z, seed):
    """Smooth 3D value noise in [0, 1] with unit lattice spacing (trilinear, smoothstep fade)."""
    fx, fy, fz = math.floor(x), math.floor(y), math.floor(z)
    ix, iy, iz = np.int64(fx), np.int64(fy), np.int64(fz)
    u, v, w = _fade(x - fx), _fade(y - fy), _fade(z - fz)
    total = 0.0
    for cx in range(2):
        wx = u if cx else 1.0 - u
        for cy in range(2):
            wy = v if cy else 1.0 - v
            for cz in range(2):
                wz = w if cz else 1.0 - w
                total += wx * wy * wz * _hash01(ix + cx, iy + cy, iz + cz, seed)
    return total


@numba.njit(cache=True)
def _clip(x, lo, hi):
    return min(max(x, lo), hi)


@numba.njit(cache=True)
def texture_albedo(kind, tp, seed, lx, ly, lz):
    """Linear RGB albedo of a solid texture at a local point. tp: colour a (3), colour b (3),
    scale, axis (3, unit), offset, softness, tint; see `scene.Texture`."""
    scale, soft = tp[6], max(tp[11], 1e-6)
    along = lx * tp[7] + ly * tp[8] + lz * tp[9]
    if kind == CHECKER:
        # soft square waves multiplied: +1 / -1 cells; cosines, so planes through the local
        # origin lie mid-cell (never on a border, where the product would fade to grey)
        k = soft * math.pi / 2.0
        wave = (_clip(math.cos(math.pi * lx / scale) / k, -1.0, 1.0)
                * _clip(math.cos(math.pi * ly / scale) / k, -1.0, 1.0)
                * _clip(math.cos(math.pi * lz / scale) / k, -1.0, 1.0))
        mix = 0.5 + 0.5 * wave
    elif kind == STRIPES:
        mix = 0.5 + 0.5 * _clip(math.sin(2.0 * math.pi * along / scale) / (soft * math.pi), -1.0, 1.0)
    elif kind == NOISE:
        n = 0.0
        weight, norm, freq = 1.0, 0.0, 1.0 / scale
        for octave in range(2):
            n += weight * value_noise(lx * freq, ly * freq, lz * freq, seed + 101 * octave)
            norm += weight
            weight *= 0.5
            freq *= 2.0
        mix = _fade(_clip((n / norm - 0.25) / 0.5, 0.0, 1.0))
    else:
        mix = _clip((along - tp[10]) / scale, 0.0, 1.0)
    gain = 1.0
    if tp[12] != 0.0:
        gain = 1.0 + tp[12] * (2.0 * value_noise(lx / 0.9, ly / 0.9, lz / 0.9, seed + 7) - 1.0)
    r = _clip((tp[0] + mix * (tp[3] - tp[0])) * gain, 0.0, 1.0)
    g = _clip((tp[1] + mix * (tp[4] - tp[1])) * gain, 0.0, 1.0)
    b = _clip((tp[2] + mix * (tp[5] - tp[2])) * gain, 0.0, 1.0)
    return r, g, b


@numba.njit(cache=True)
def shade(kinds, params, tex_kinds, tex_params, tex_seeds, lighting, s, x, y, z, dx, dy, dz):
    """Linear RGB radiance of shape s's surface point (x, y, z) seen along the ray direction d:
    albedo * (ambient + intensity * max(0, n . l) * unshadowed), n turned towards the viewer."""
    nx, ny, nz = shape_normal(kinds[s], params[s], x, y, z)
    if nx * dx + ny * dy + nz * dz > 0.0:
        nx, ny, nz = -nx, -ny, -nz
    lx, ly, lz = shape_local(kinds[s], params[s], x, y, z)
    r, g, b = texture_albedo(tex_kinds[s], tex_params[s], tex_seeds[s], lx, ly, lz)
    lam = nx * lighting[0] + ny * lighting[1] + nz * lighting[2]
    if lam > 0.0 and blocked(kinds, params, x + SHADOW_OFFSET * nx, y + SHADOW_OFFSET * ny, z + SHADOW_OFFSET * nz,
                             lighting[0], lighting[1], lighting[2], INF):
        lam = 0.0
    light = lighting[4] + lighting[3] * max(lam, 0.0)
    return r * light, g * light, b * light


@numba.njit(cache=True)
def encode_srgb(x):
    """Linear -> sRGB transfer function, clipped to [0, 1]."""
    x = _clip(x, 0.0, 1.0)
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1.0 / 2.4) - 0.055


@numba.njit(cache=True)
def sky_radiance(sky, dx, dy, dz):
    """Linear RGB seen along the unit direction d from anywhere (an environment at infinity).

    sky: [0] 1 when there is a sky, zenith colour [1:4], horizon colour [4:7], direction towards
    the sun [7:10], sun glow strength [10], cloud cover in [0, 1] [11], cloud cell size (on the
    plane one unit up) [12], noise seed [13], hill colour [14:17], hill height and its variation
    (radians of elevation) [17:19]. Below the hills' ridge (which varies smoothly with azimuth)
    the ray sees far hills, darker towards the ground; above it the sky: a gradient from the
    horizon colour to the zenith colour, a glow around the sun and soft value-noise clouds."""
    seed = np.int64(sky[13])
    elevation = math.asin(_clip(dz, -1.0, 1.0))
    azimuth = math.atan2(dy, dx)
    ridge = sky[17] + sky[18] * (value_noise(2.5 * math.cos(azimuth) + 7.0, 2.5 * math.sin(azimuth) + 7.0, 0.5,
                                             seed + 11) * 0.7
                                 + value_noise(7.0 * math.cos(azimuth), 7.0 * math.sin(azimuth), 3.5, seed + 12) * 0.3)
    if elevation < ridge:
        depth = _clip((ridge - elevation) / max(sky[17] + sky[18], 1e-6), 0.0, 1.0)
        shade = 0.75 + 0.5 * value_noise(12.0 * math.cos(azimuth), 12.0 * math.sin(azimuth), 40.0 * elevation,
                                         seed + 13)
        gain = shade * (1.0 - 0.45 * depth)
        return sky[14] * gain, sky[15] * gain, sky[16] * gain
    t = math.sqrt(_clip(elevation / (0.5 * math.pi), 0.0, 1.0))
    r = sky[4] + t * (sky[1] - sky[4])
    g = sky[5] + t * (sky[2] - sky[5])
    b = sky[6] + t * (sky[3] - sky[6])
    cos_sun = dx * sky[7] + dy * sky[8] + dz * sky[9]
    if cos_sun > 0.0:
        glow = sky[10] * (cos_sun ** 24 + 0.25 * cos_sun ** 4)
        r, g, b = r + glow, g + 0.85 * glow, b + 0.6 * glow
    if dz > 0.02 and sky[11] > 0.0:
        px, py = dx / dz / sky[12], dy / dz / sky[12]
        n = (value_noise(px, py, 0.0, seed) + 0.5 * value_noise(2.0 * px, 2.0 * py, 1.0, seed + 1)) / 1.5
        cover = _fade(_clip((n - (1.0 - sky[11])) / 0.2, 0.0, 1.0)) * _clip((dz - 0.02) / 0.15, 0.0, 1.0)
        white = 0.8 + 0.2 * value_noise(3.0 * px, 3.0 * py, 2.0, seed + 2)
        r, g, b = r + cover * (white - r), g + cover * (white - g), b + cover * (white * 1.02 - b)
    return r, g, b


@serialized
@numba.njit(cache=True, parallel=True)
def render_kernel(kinds, params, tex_kinds, tex_params, tex_seeds, lighting, background, sky,
                  rot, origin, fx, fy, cx, cy, offsets, image, depth, index):
    """Fill image [H, W, 3] (sRGB of the linear mean over `offsets` [S, 2] sub-pixel samples), depth and
    index [H, W] (camera z and shape index of the ray through each pixel centre).
    rot [3, 3] is the world-to-camera rotation, origin [3] the camera centre."""
    height, width = depth.shape
    ox, oy, oz = origin[0], origin[1], origin[2]
    for j in numba.prange(height):
        for i in range(width):
            acc_r = acc_g = acc_b = 0.0
            for k in range(offsets.shape[0] + 1):
                su, sv = (offsets[k, 0], offsets[k, 1]) if k < offsets.shape[0] else (0.5, 0.5)
                ux, uy = (i + su - cx) / fx, (j + sv - cy) / fy
                # camera -> world direction: rot^T (ux, uy, 1)
                dx = rot[0, 0] * ux + rot[1, 0] * uy + rot[2, 0]
                dy = rot[0, 1] * ux + rot[1, 1] * uy + rot[2, 1]
                dz = rot[0, 2] * ux + rot[1, 2] * uy + rot[2, 2]
                norm = math.sqrt(dx * dx + dy * dy + dz * dz)
                dx, dy, dz = dx / norm, dy / norm, dz / norm
                t, s = hit_scene(kinds, params, ox, oy, oz, dx, dy, dz)
                if k == offsets.shape[0]:
                    index[j, i] = s
                    depth[j, i] = t / norm if s >= 0 else INF  # camera z = t * (d . forward) = t / norm
                    continue
                if s < 0:
                    if sky[0] > 0.0:
                        r, g, b = sky_radiance(sky, dx, dy, dz)
                        acc_r += r
                        acc_g += g
                        acc_b += b
                    else:
                        acc_r += background[0]
                        acc_g += background[1]
                        acc_b += background[2]
                    continue
                r, g, b = shade(kinds, params, tex_kinds, tex_params, tex_seeds, lighting, s,
                                ox + t * dx, oy + t * dy, oz + t * dz, dx, dy, dz)
                acc_r += r
                acc_g += g
                acc_b += b
            n = offsets.shape[0]
            image[j, i, 0] = encode_srgb(acc_r / n)
            image[j, i, 1] = encode_srgb(acc_g / n)
            image[j, i, 2] = encode_srgb(acc_b / n)


@serialized
@numba.njit(cache=True, parallel=True)
def cast_kernel(kinds, params, origins, dirs, dist, index):
    for r in numba.prange(origins.shape[0]):
        dist[r], index[r] = hit_scene(kinds, params, origins[r, 0], origins[r, 1], origins[r, 2],
                                      dirs[r, 0], dirs[r, 1], dirs[r, 2])


@serialized
@numba.njit(cache=True, parallel=True)
def occluded_kernel(kinds, params, origins, dirs, max_dist, out):
    for r in numba.prange(origins.shape[0]):
        out[r] = blocked(kinds, params, origins[r, 0], origins[r, 1], origins[r, 2],
                         dirs[r, 0], dirs[r, 1], dirs[r, 2], max_dist[r])


@serialized
@numba.njit(cache=True, parallel=True)
def shade_kernel(kinds, params, tex_kinds, tex_params, tex_seeds, lighting, points, index, view_dirs, out):
    for r in numba.prange(points.shape[0]):
        out[r, 0], out[r, 1], out[r, 2] = shade(
            kinds, params, tex_kinds, tex_params, tex_seeds, lighting, index[r],
            points[r, 0], points[r, 1], points[r, 2], view_dirs[r, 0], view_dirs[r, 1], view_dirs[r, 2])


@serialized
@numba.njit(cache=True, parallel=True)
def albedo_kernel(kind, tp, seed, local, out):
    for r in numba.prange(local.shape[0]):
        out[r, 0], out[r, 1], out[r, 2] = texture_albedo(kind, tp, seed, local[r, 0], local[r, 1], local[r, 2])


@serialized
@numba.njit(cache=True, parallel=True)
def normals_kernel(kinds, params, points, index, out):
    for r in numba.prange(points.shape[0]):
        out[r, 0], out[r, 1], out[r, 2] = shape_normal(kinds[index[r]], params[index[r]],
                                                       points[r, 0], points[r, 1], points[r, 2])
