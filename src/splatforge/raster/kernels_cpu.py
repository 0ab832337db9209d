"""Numba kernels for front-to-back alpha compositing of 2D Gaussians, forward and backward.

One parallel task per (image, tile). Within a tile, each Gaussian visits only the pixels of its own
bounding box (where its alpha can reach 1/255), not the whole tile: the box comes from the conic
and the opacity alone, so these kernels serve any caller of `rasterize_to_pixels` (3D scenes and
2D image fits alike). The compositing rules are gsplat's: alpha = min(0.999, o * exp(-sigma)),
contributions below 1/255 are skipped, and a pixel stops before the Gaussian that would take its
transmittance to 1e-4 or below.

Two implementations share these rules:
- lane kernels (three channels, both blend modes; any channel count in summed mode): a Gaussian's
  box row is processed 16 pixels at a time as SIMD code, and the forward pass logs which pixels of
  each chunk took the Gaussian (16 bits), so the backward pass tests no threshold (see LANES);
- per-pixel kernels (alpha compositing with other channel counts: feature and depth renders),
  which log nothing and recompute the alphas backward.

The backward pass writes one gradient slot per intersection (each belongs to exactly one tile) and
then sums the slots per Gaussian in a fixed order, so gradients are identical from run to run.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..core.parallel import serialized

ALPHA_MIN = np.float32(1.0 / 255.0)
ALPHA_MAX = np.float32(0.999)
T_MIN = np.float32(1e-4)
HALF = np.float32(0.5)
ONE = np.float32(1.0)
# The exact box is widened a hair so float rounding never drops a pixel the per-pixel test keeps.
BOX_SLACK_REL = np.float32(1e-4)
BOX_SLACK_ABS = np.float32(1e-3)
COORD_LIMIT = np.float32(1e7)
# columns of the backward pass's gradient slots
SLOT_MEAN2D, SLOT_CONIC, SLOT_OPACITY, SLOT_ABS_MEAN2D, SLOT_COLOR = 0, 2, 5, 6, 8


# Per-Gaussian records: what the tile passes read of a Gaussian, packed into one 64-byte row by
# `pack_gaussians` (one cache line per intersection instead of four, and the ellipse's extent
# computed once per Gaussian instead of once per intersection and pass).
RECORD = 16
R_MX, R_MY, R_A, R_B, R_C, R_OPACITY, R_EX, R_EY, R_SIGMA_MAX, R_COLOR = range(10)
FULL_EXTENT = np.float32(1e9)  # a degenerate conic: the box is the whole tile


@numba.njit(cache=True, inline="always")
def _extent(mx, my, a, b, c, opacity):
    """Half-widths (ex, ey) of the ellipse where alpha >= 1/255 is possible (ex < 0: nowhere), and
    sigma_max: pixels with a larger sigma are below 1/255."""
    if not (abs(mx) < COORD_LIMIT and abs(my) < COORD_LIMIT) or opacity * np.float32(255.0) < ONE:
        return -ONE, -ONE, ONE
    # alpha >= 1/255  <=>  sigma <= ln(255 o)  <=>  d^T Q d <= r2 with r2 = 2 ln(255 o); the
    # ellipse's half-widths are sqrt(r2 * Sigma_xx) and sqrt(r2 * Sigma_yy), with Sigma = Q^-1.
    half_r2 = math.log(opacity * np.float32(255.0))
    sigma_max = half_r2 * (ONE + BOX_SLACK_REL) + BOX_SLACK_REL
    det = a * c - b * b
    if not det > 0:
        return FULL_EXTENT, FULL_EXTENT, sigma_max
    r2 = np.float32(2.0) * half_r2
    ex = math.sqrt(r2 * c / det) * (ONE + BOX_SLACK_REL) + BOX_SLACK_ABS
    ey = math.sqrt(r2 * a / det) * (ONE + BOX_SLACK_REL) + BOX_SLACK_ABS
    return ex, ey, sigma_max


@serialized
@numba.njit(cache=True, parallel=True, error_model="numpy")
def pack_gaussians(means2d, conics, colors, opacities, records):
    """records[g] = Gaussian g's mean, conic, opacity, extent (see `_extent`) and, with three
    channels, its colour, at the R_* columns."""
    for g in numba.prange(means2d.shape[0]):
        mx, my = means2d[g, 0], means2d[g, 1]
        a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
        op = opacities[g]
        ex, ey, sigma_max = _extent(mx, my, a, b, c, op)
        records[g, R_MX], records[g, R_MY], records[g, R_OPACITY] = mx, my, op
        records[g, R_A], records[g, R_B], records[g, R_C] = a, b, c
        records[g, R_EX], records[g, R_EY], records[g, R_SIGMA_MAX] = ex, ey, sigma_max
        if colors.shape[1] == 3:
            for k in range(3):
                records[g, R_COLOR + k] = colors[g, k]


@intrinsic
def _prefetch_row(typingctx, array, row):
    """Ask the CPU to fetch row `row` of a 2D array into cache (LLVM's prefetch: a hint, no fault)."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        row_index = context.cast(builder, args[1], signature.args[1], types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [row_index, zero], wraparound=False)
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(prefetch, [pointer, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()
    return types.none(array, row), codegen


PREFETCH_AHEAD = 4  # intersections: the records of a tile's Gaussians lie all over memory


@numba.njit(cache=True, inline="always")
def _prefetch_record(records, flatten_ids, e, start, end):
    """Start fetching intersection e's record (if e is in [start, end)) while earlier ones are processed."""
    if e >= start and e < end:
        _prefetch_row(records, flatten_ids[e])


@numba.njit(cache=True, inline="always")
def _intersection(e, ahead, records, flatten_ids, start, end, x_lo, x_hi, y_lo, y_hi):
    """Intersection e's Gaussian g and what `_gaussian_in_tile` gives of it, having asked for the
    record of intersection `ahead` (the lane passes' next intersections but PREFETCH_AHEAD)."""
    _prefetch_record(records, flatten_ids, ahead, start, end)
    g = flatten_ids[e]
    return (g,) + _gaussian_in_tile(g, records, x_lo, x_hi, y_lo, y_hi)


@numba.njit(cache=True, inline="always")
def _gaussian_in_tile(g, records, x_lo, x_hi, y_lo, y_hi):
    """Gaussian g's mean, conic and opacity, its pixel index range [x0, x1) x [y0, y1) inside the
    tile where alpha >= 1/255 is possible, and its sigma_max (see `_extent`)."""
    mx, my = records[g, R_MX], records[g, R_MY]
    a, b, c = records[g, R_A], records[g, R_B], records[g, R_C]
    op, ex, ey = records[g, R_OPACITY], records[g, R_EX], records[g, R_EY]
    if ex < 0:
        return mx, my, a, b, c, op, x_lo, x_lo, y_lo, y_lo, ONE
    x0 = max(x_lo, min(x_hi, int(math.ceil(mx - ex - HALF))))
    x1 = max(x_lo, min(x_hi, int(math.floor(mx + ex - HALF)) + 1))
    y0 = max(y_lo, min(y_hi, int(math.ceil(my - ey - HALF))))
    y1 = max(y_lo, min(y_hi, int(math.floor(my + ey - HALF)) + 1))
    return mx, my, a, b, c, op, x0, x1, y0, y1, records[g, R_SIGMA_MAX]


@numba.njit(cache=True, inline="always")
def _row_terms(my, py, b, c):
    """Per-row parts of sigma = a/2 dx^2 + b dx dy + c/2 dy^2 (dx, dy: mean minus pixel centre)."""
    dy = my - (np.float32(py) + HALF)
    return dy, HALF * c * dy * dy, b * dy


@numba.njit(cache=True, inline="always")
def _sigma_grads(v_sigma, dx, dy, a, b, c):
    """d loss / d (mean x, mean y, conic a, b, c) of one pixel, given d loss / d sigma."""
    return (v_sigma * (a * dx + b * dy), v_sigma * (b * dx + c * dy),
            HALF * dx * dx * v_sigma, dx * dy * v_sigma, HALF * dy * dy * v_sigma)


@numba.njit(cache=True, inline="always")
def _store_geometry(slots, e, g_mx, g_my, g_a, g_b, g_c, g_op, g_absx, g_absy):
    """Intersection e's sums of d loss / d (mean2d, conic, opacity) and of |d loss / d mean2d|
    (gsplat's absgrad) into its gradient slot."""
    slots[e, SLOT_MEAN2D] = g_mx
    slots[e, SLOT_MEAN2D + 1] = g_my
    slots[e, SLOT_CONIC] = g_a
    slots[e, SLOT_CONIC + 1] = g_b
    slots[e, SLOT_CONIC + 2] = g_c
    slots[e, SLOT_OPACITY] = g_op
    slots[e, SLOT_ABS_MEAN2D] = g_absx
    slots[e, SLOT_ABS_MEAN2D + 1] = g_absy


@numba.njit(cache=True, inline="always")
def _tile_bounds(run, tile_size, tile_width, tile_height, width, height):
    n_tiles = tile_width * tile_height
    image = run // n_tiles
    tile = run - image * n_tiles
    ty = tile // tile_width
    tx = tile - ty * tile_width
    x_lo = tx * tile_size
    y_lo = ty * tile_size
    return image, x_lo, min(x_lo + tile_size, width), y_lo, min(y_lo + tile_size, height)


# ---- lanes -----------------------------------------------------------------------------------------
# A Gaussian's box row is processed a whole chunk of LANES pixels at a time: straight-line code over
# a fixed count of lanes, with the box, the ellipse and the thresholds as masks (front-to-back
# state is per pixel, so lanes are independent), which LLVM turns into SIMD instructions. Measured
# single-threaded at 50k Gaussians, 256x256 (a training step's inputs): forward 44 ms and backward
# 72 ms for the per-pixel kernels; 15 and 15 ms for these, with 512-bit vectors, the lane-mask log,
# per-lane gradient sums and packed records. Per-pixel state lives in one flat float32 array per tile,
#     state[((row * n_chunks + chunk) * n_quantities + quantity) * LANES + lane],
# indexed with unsigned integers: a signed index makes Numba add a wrap-around test for negative
# values, which hides the access pattern from the vectorizer.
LANES = 16
U = np.uint64
ZERO = np.float32(0.0)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 `bits` (an LLVM bitcast: free, and vectorizable)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _wide_vectors(typingctx):
    """Let LLVM vectorize the calling function with the widest vectors the CPU has. On AVX-512 CPUs
    LLVM's default stops at 256 bits; one 512-bit vector holds a whole chunk of 16 lanes, which took
    the alpha compositing forward pass from 28 to 20 ms (single thread, 50k Gaussians, 256x256).
    CPUs without AVX-512 are unaffected. (LLVM's own string attribute, which llvmlite's attribute
    set does not list, so it is added to the set directly.)"""
    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        if isinstance(attributes, set):  # (a hint: any other llvmlite keeps its default width)
            set.add(attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return types.none(), codegen


# exp(-s) by Cody-Waite reduction (s = n ln2 - r, |r| <= ln2 / 2) and a degree-7 Taylor polynomial
# of e^r, scaled by 2^-n built from its exponent bits: within 1.5 ulp of the exact value on [0, 87]
# (tested), branch-free and inlined, so the lane loops vectorize (a call to libm's expf does not).
# Only the lane forward passes use it; their backward passes read the logged values.
LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693145751953125)  # ln 2 in 16 bits: n * LN2_HI is exact
LN2_LO = np.float32(1.428606765330187e-06)
E2, E3, E4, E5, E6, E7 = (np.float32(1.0 / math.factorial(k)) for k in range(2, 8))
EXP_CLAMP = np.float32(87.0)  # exp(-87) is still a normal float32


@numba.njit(cache=True, inline="always")
def exp_neg(s):
    """exp(-s) in float32, s clamped to [0, 87] (callers use s in [0, ln(255 o)])."""
    s = min(max(s, ZERO), EXP_CLAMP)
    n = np.int32(s * LOG2E + HALF)  # s >= 0: truncation rounds to nearest here
    fn = np.float32(n)
    r = (fn * LN2_HI - s) + fn * LN2_LO
    p = (((((((E7 * r + E6) * r + E5) * r + E4) * r + E3) * r + E2) * r + ONE) * r + ONE)
    return p * _float32_from_bits((np.int32(127) - n) << 23)


@numba.njit(cache=True, inline="always")
def _box_chunks(x0, x1, x_lo):
    """The lane chunks [ch0, ch1) of a tile row that a box's columns [x0, x1) touch."""
    return (x0 - x_lo) // LANES, (x1 - x_lo + LANES - 1) // LANES


@numba.njit(cache=True, inline="always")
def _log_start(log_stride, e, py, y0, ch, ch0, ch1):
    """Where intersection e's log holds the lane mask of chunk ch in box row py. Each intersection
    owns `log_stride` masks (a tile's rows times its chunks: room for any box, so no pass has to
    size the boxes first), filled row by row with the chunks [ch0, ch1) the box touches."""
    return e * log_stride + (py - y0) * (ch1 - ch0) + ch - ch0


@numba.njit(cache=True, inline="always")
def _lane_bit(counts, j):
    """Lane j's bit of a chunk's mask, set where the lane counts."""
    return np.uint16(counts) << np.uint16(j)


@numba.njit(cache=True, inline="always")
def _lane_taken(mask, j):
    return (mask >> np.uint16(j)) & np.uint16(1) != 0


# FMA contraction and reciprocal division: a few ulp of difference, same result on every run.
# (No 'nnan'/'ninf': the kernels rely on NaN comparisons being false.) error_model="numpy" drops
# Python's zero-division checks from the inner loops; no divisor there can be zero.
FASTMATH = {"contract", "arcp", "nsz"}


@numba.njit(cache=True, inline="always")
def _lane_sigma(j, px0, mx, half_a, row_term, b_dy):
    """sigma = a/2 dx^2 + b dx dy + c/2 dy^2 at lane j of a chunk starting at pixel column px0."""
    dx = mx - (np.float32(px0 + j) + HALF)
    return half_a * dx * dx + row_term + b_dy * dx


@numba.njit(cache=True, inline="always")
def _lane_alpha(j, px0, x0, x1, mx, half_a, row_term, b_dy, sigma_max, op):
    """Lane j's o * exp(-sigma), clamped alpha, and whether it counts (inside the box and the
    ellipse, alpha >= 1/255)."""
    px = px0 + j
    sigma = _lane_sigma(j, px0, mx, half_a, row_term, b_dy)
    raw = op * exp_neg(sigma)
    alpha = min(ALPHA_MAX, raw)
    return raw, alpha, (px >= x0) & (px < x1) & (sigma >= 0) & (sigma <= sigma_max) & (alpha >= ALPHA_MIN)


@numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _accumulate_tile(records, colors, flatten_ids, start, end, tile_size,
                     image, x_lo, x_hi, y_lo, y_hi, out_colors, out_alphas, last_ids, log_stride, lane_masks):
    """One tile of the summed blend with any channel count, a lane chunk at a time (see LANES; three
    channels take `_forward_tile_rgb`). Logs the lane mask of every chunk a box touches for the
    backward pass."""
    _wide_vectors()
    depth = colors.shape[1]
    nch = (tile_size + LANES - 1) // LANES
    nq = 2 + depth  # per lane: sum of alphas, this Gaussian's weight, colour sums
    st = np.zeros((y_hi - y_lo) * nch * nq * LANES, dtype=np.float32)
    for e in range(start, end):
        g, mx, my, a, b, c, op, x0, x1, y0, y1, sigma_max = _intersection(
            e, e + PREFETCH_AHEAD, records, flatten_ids, start, end, x_lo, x_hi, y_lo, y_hi)
        if x1 <= x0:
            continue
        half_a = HALF * a
        ch0, ch1 = _box_chunks(x0, x1, x_lo)
        for py in range(y0, y1):
            _, row_term, b_dy = _row_terms(my, py, b, c)
            for ch in range(ch0, ch1):
                base = U(((py - y_lo) * nch + ch) * nq * LANES)
                px0 = x_lo + ch * LANES
                mask = np.uint16(0)
                for j in range(LANES):
                    raw, alpha, counts = _lane_alpha(j, px0, x0, x1, mx, half_a, row_term, b_dy, sigma_max, op)
                    mask |= _lane_bit(counts, j)
                    w = alpha if counts else ZERO
                    st[base + U(j)] += w
                    st[base + U(LANES + j)] = w
                lane_masks[_log_start(log_stride, e, py, y0, ch, ch0, ch1)] = mask
                for k in range(depth):
                    ck = colors[g, k]
                    for j in range(LANES):
                        st[base + U((2 + k) * LANES + j)] += st[base + U(LANES + j)] * ck
    for py in range(y_lo, y_hi):
        for px in range(x_lo, x_hi):
            base = ((py - y_lo) * nch + (px - x_lo) // LANES) * nq * LANES + (px - x_lo) % LANES
            out_alphas[image, py, px] = st[base]
            last_ids[image, py, px] = end - 1  # the backward pass visits every intersection of the tile
            for k in range(depth):
                out_colors[image, py, px, k] = st[base + (2 + k) * LANES]


# ---- lanes, RGB ----------------------------------------------------------------------------------
# Three channels (every photo-trained scene and image fit) get lane kernels for both blend modes,
# each pass fused into one loop over the lanes with the channels unrolled. The forward pass logs
# which lanes of each chunk took the Gaussian as a 16-bit mask, and the backward pass recomputes
# the alphas of those lanes only: both passes agree exactly on which pixel takes which Gaussian,
# and the log is 2 bytes a chunk (a float per lane, 32 times as much, made both passes wait on
# memory: 38 MB at 50k Gaussians, 256x256). Other channel counts use the per-pixel kernels below.
RGB_FORWARD_Q = 5  # per lane: transmittance (summed mode: 1 - sum of alphas), live, 3 colour sums
BACKWARD_SUMS = SLOT_COLOR + 3  # the gradient slots of an RGB intersection
RGB_BACKWARD_Q = 8  # per lane: transmittance, final-transmittance term, 3 d loss / d colour, 3 behind


@numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _forward_tile_rgb(records, colors, backgrounds, flatten_ids, start, end, tile_size,
                      image, x_lo, x_hi, y_lo, y_hi, out_colors, out_alphas, last_ids, log_stride, lane_masks,
                      accumulate):
    _wide_vectors()
    nch = (tile_size + LANES - 1) // LANES
    th, tw = y_hi - y_lo, x_hi - x_lo
    nq = RGB_FORWARD_Q
    st = np.zeros(th * nch * nq * LANES, dtype=np.float32)
    last = np.full(th * nch * LANES, start - 1, dtype=np.int32)
    chunk_live = np.empty(th * nch, dtype=np.int32)  # live lanes per chunk: a finished chunk is skipped
    for chunk in range(th * nch):  # transmittance 1; lanes past the tile's edge are never live
        edge = (chunk % nch) * LANES
        chunk_live[chunk] = min(LANES, tw - edge)
        for j in range(LANES):
            st[chunk * nq * LANES + j] = ONE
            st[(chunk * nq + 1) * LANES + j] = ONE if edge + j < tw else ZERO
    n_live = tw * th
    for e in range(start, end):
        if n_live == 0:  # every later intersection lies past every pixel's last: never read back
            break
        g, mx, my, a, b, c, op, x0, x1, y0, y1, sigma_max = _intersection(
            e, e + PREFETCH_AHEAD, records, flatten_ids, start, end, x_lo, x_hi, y_lo, y_hi)
        if x1 <= x0:
            continue
        half_a = HALF * a
        fe = np.int32(e)
        c0, c1, c2 = records[g, R_COLOR], records[g, R_COLOR + 1], records[g, R_COLOR + 2]
        ch0, ch1 = _box_chunks(x0, x1, x_lo)
        for py in range(y0, y1):
            _, row_term, b_dy = _row_terms(my, py, b, c)
            for ch in range(ch0, ch1):
                chunk = (py - y_lo) * nch + ch
                base = U(chunk * nq * LANES)
                lbase = U(chunk * LANES)
                px0 = x_lo + ch * LANES
                finished = 0
                mask = np.uint16(0)
                if chunk_live[chunk] == 0:  # (alpha compositing only: summed blending never finishes)
                    lane_masks[_log_start(log_stride, e, py, y0, ch, ch0, ch1)] = mask
                    continue
                if accumulate:
                    for j in range(LANES):
                        raw, alpha, counts = _lane_alpha(j, px0, x0, x1, mx, half_a, row_term, b_dy, sigma_max, op)
                        u = base + U(j)
                        w = alpha if counts else ZERO
                        st[u] -= w
                        st[u + U(2 * LANES)] += w * c0
                        st[u + U(3 * LANES)] += w * c1
                        st[u + U(4 * LANES)] += w * c2
                        mask |= _lane_bit(counts, j)
                else:
                    for j in range(LANES):
                        raw, alpha, counts = _lane_alpha(j, px0, x0, x1, mx, half_a, row_term, b_dy, sigma_max, op)
                        u = base + U(j)
                        t = st[u]
                        next_t = t * (ONE - alpha)
                        counts = counts & (st[u + U(LANES)] > 0)
                        ends = counts & (next_t <= T_MIN)
                        counts = counts & (next_t > T_MIN)
                        w = alpha * t if counts else ZERO
                        st[u + U(2 * LANES)] += w * c0
                        st[u + U(3 * LANES)] += w * c1
                        st[u + U(4 * LANES)] += w * c2
                        st[u] = next_t if counts else t
                        last[lbase + U(j)] = fe if counts else last[lbase + U(j)]
                        st[u + U(LANES)] = ZERO if ends else st[u + U(LANES)]
                        finished += 1 if ends else 0
                        mask |= _lane_bit(counts, j)
                lane_masks[_log_start(log_stride, e, py, y0, ch, ch0, ch1)] = mask
                chunk_live[chunk] -= finished
                n_live -= finished
    has_bg = backgrounds.shape[0] > 0 and not accumulate
    for py in range(y_lo, y_hi):
        for px in range(x_lo, x_hi):
            chunk = (py - y_lo) * nch + (px - x_lo) // LANES
            j = (px - x_lo) % LANES
            t = st[chunk * nq * LANES + j]
            out_alphas[image, py, px] = ONE - t
            # with `accumulate` the backward pass visits every intersection of the tile
            last_ids[image, py, px] = end - 1 if accumulate else last[chunk * LANES + j]
            for k in range(3):
                v = st[(chunk * nq + 2 + k) * LANES + j]
                if has_bg:
                    v += t * backgrounds[image, k]
                out_colors[image, py, px, k] = v


# The sums over lanes may be reassociated (SIMD partial sums): that changes only the order of a
# per-Gaussian sum, fixed for a given build; this pass tests no threshold.
FASTMATH_SUMS = FASTMATH | {"reassoc"}


@numba.njit(cache=True, fastmath=FASTMATH_SUMS, error_model="numpy")
def _backward_tile_rgb(records, colors, backgrounds, flatten_ids, start, end, tile_size,
                       image, x_lo, x_hi, y_lo, y_hi, out_alphas, last_ids, v_colors, v_alphas, slots,
                       log_stride, lane_masks, accumulate):
    _wide_vectors()
    has_bg = backgrounds.shape[0] > 0 and not accumulate
    nch = (tile_size + LANES - 1) // LANES
    nq = RGB_BACKWARD_Q
    st = np.zeros((y_hi - y_lo) * nch * nq * LANES, dtype=np.float32)
    # per-lane partial sums of an intersection's gradients, in slot order (added across lanes once
    # per intersection: a horizontal sum per chunk would cost more than the chunk's own work)
    sums = np.empty(BACKWARD_SUMS * LANES, dtype=np.float32)
    e_max = start - 1
    for py in range(y_lo, y_hi):
        for px in range(x_lo, x_hi):
            chunk = (py - y_lo) * nch + (px - x_lo) // LANES
            base = chunk * nq * LANES + (px - x_lo) % LANES
            t_final = ONE - out_alphas[image, py, px]
            # with `accumulate` every weight is alpha itself: transmittance stays 1
            st[base] = ONE if accumulate else t_final
            e_max = max(e_max, last_ids[image, py, px])
            bg_dot = ZERO
            for k in range(3):
                st[base + (2 + k) * LANES] = v_colors[image, py, px, k]
                if has_bg:
                    bg_dot += v_colors[image, py, px, k] * backgrounds[image, k]
            v_alpha = v_alphas[image, py, px]
            st[base + LANES] = v_alpha if accumulate else t_final * (v_alpha - bg_dot)
    for e in range(e_max, start - 1, -1):
        g, mx, my, a, b, c, op, x0, x1, y0, y1, _ = _intersection(
            e, e - PREFETCH_AHEAD, records, flatten_ids, start, end, x_lo, x_hi, y_lo, y_hi)
        if x1 <= x0:
            continue
        half_a = HALF * a
        c0, c1, c2 = records[g, R_COLOR], records[g, R_COLOR + 1], records[g, R_COLOR + 2]
        ch0, ch1 = _box_chunks(x0, x1, x_lo)
        sums[:] = ZERO
        for py in range(y0, y1):
            dy, row_term, b_dy = _row_terms(my, py, b, c)
            for ch in range(ch0, ch1):
                mask = lane_masks[_log_start(log_stride, e, py, y0, ch, ch0, ch1)]
                if mask == 0:  # no pixel of the chunk took the Gaussian: nothing to undo or add
                    continue
                base = U(((py - y_lo) * nch + ch) * nq * LANES)
                px0 = x_lo + ch * LANES
                for j in range(LANES):
                    u = base + U(j)
                    # the forward pass's alpha, recomputed as it was computed
                    gauss = exp_neg(_lane_sigma(j, px0, mx, half_a, row_term, b_dy))
                    raw = op * gauss
                    alpha = min(ALPHA_MAX, raw)
                    takes = _lane_taken(mask, j)
                    v0, v1, v2 = st[u + U(2 * LANES)], st[u + U(3 * LANES)], st[u + U(4 * LANES)]
                    if accumulate:
                        w = alpha if takes else ZERO
                        v_alpha = st[u + U(LANES)] + v0 * c0 + v1 * c1 + v2 * c2 if takes else ZERO
                    else:
                        ra = ONE / (ONE - alpha) if takes else ZERO
                        t = st[u] * ra
                        st[u] = t if takes else st[u]
                        w = alpha * t
                        b0, b1, b2 = st[u + U(5 * LANES)], st[u + U(6 * LANES)], st[u + U(7 * LANES)]
                        v_alpha = (st[u + U(LANES)] * ra + v0 * (c0 * t - b0 * ra) + v1 * (c1 * t - b1 * ra)
                                   + v2 * (c2 * t - b2 * ra))
                        st[u + U(5 * LANES)] = b0 + c0 * w
                        st[u + U(6 * LANES)] = b1 + c1 * w
                        st[u + U(7 * LANES)] = b2 + c2 * w
                    # exp(-sigma) where the pixel passes gradient: the 0.999 clamp passes none
                    gauss = gauss if takes & (raw <= ALPHA_MAX) else ZERO
                    dx = mx - (np.float32(px0 + j) + HALF)
                    gx, gy, ga, gb, gc = _sigma_grads(-op * gauss * v_alpha, dx, dy, a, b, c)
                    k = U(j)
                    sums[k] += gx
                    sums[k + U(LANES)] += gy
                    sums[k + U(2 * LANES)] += ga
                    sums[k + U(3 * LANES)] += gb
                    sums[k + U(4 * LANES)] += gc
                    sums[k + U(5 * LANES)] += gauss * v_alpha
                    sums[k + U(6 * LANES)] += abs(gx)
                    sums[k + U(7 * LANES)] += abs(gy)
                    sums[k + U(8 * LANES)] += w * v0
                    sums[k + U(9 * LANES)] += w * v1
                    sums[k + U(10 * LANES)] += w * v2
        for q in range(BACKWARD_SUMS):
            total = ZERO
            for j in range(LANES):
                total += sums[q * LANES + j]
            slots[e, q] = total


@serialized
@numba.njit(cache=True, parallel=True, fastmath=FASTMATH, error_model="numpy")
def composite_forward(
    records,  # [M, RECORD] from pack_gaussians
    colors,  # [M, D]
    backgrounds,  # [I, D], or [0, D] for none
    width,
    height,
    tile_size,
    tile_width,
    tile_height,
    offsets,  # [I * tile_height * tile_width + 1] run starts, then n_isects
    flatten_ids,  # [n_isects]
    out_colors,  # [I, H, W, D]
    out_alphas,  # [I, H, W]
    last_ids,  # [I, H, W] int32: last intersection each pixel used (run start - 1 if none)
    accumulate,  # False: front-to-back alpha compositing; True: order-free sum of alpha * colour
    log_stride,  # lane kernels: masks per intersection in `lane_masks`, tile_size * ceil(tile_size / LANES)
    lane_masks,  # lane kernels: out, uint16 per chunk of each box row: bit j set if lane j took the Gaussian
):
    """With `accumulate`, colours are sum(alpha_i c_i) and alphas sum(alpha_i) (GaussianImage's
    accumulated blending): no transmittance, no early stop, no background.

    Three channels, or `accumulate`, run the lane kernels, which fill `lane_masks` ([n_isects *
    log_stride] uint16) for the backward pass; other calls take the per-pixel kernels and ignore it."""
    n_runs = offsets.shape[0] - 1
    depth = colors.shape[1]
    has_bg = backgrounds.shape[0] > 0
    for run in numba.prange(n_runs):
        image, x_lo, x_hi, y_lo, y_hi = _tile_bounds(run, tile_size, tile_width, tile_height, width, height)
        start, end = offsets[run], offsets[run + 1]
        if depth == 3:
            _forward_tile_rgb(records, colors, backgrounds, flatten_ids, start, end, tile_size,
                              image, x_lo, x_hi, y_lo, y_hi, out_colors, out_alphas, last_ids, log_stride,
                              lane_masks, accumulate)
            continue
        if accumulate:
            _accumulate_tile(records, colors, flatten_ids, start, end, tile_size,
                             image, x_lo, x_hi, y_lo, y_hi, out_colors, out_alphas, last_ids, log_stride, lane_masks)
            continue
        tw = x_hi - x_lo
        npix = tw * (y_hi - y_lo)
        trans = np.ones(npix, dtype=np.float32)
        acc = np.zeros((npix, depth), dtype=np.float32)
        last = np.full(npix, start - 1, dtype=np.int32)
        done = np.zeros(npix, dtype=np.bool_)
        n_done = 0
        for e in range(start, end):
            if n_done == npix:
                break
            g = flatten_ids[e]
            mx, my, a, b, c, op, x0, x1, y0, y1, sigma_max = _gaussian_in_tile(
                g, records, x_lo, x_hi, y_lo, y_hi)
            half_a = HALF * a
            for py in range(y0, y1):
                dy, row_term, b_dy = _row_terms(my, py, b, c)
                row = (py - y_lo) * tw - x_lo
                for px in range(x0, x1):
                    p = row + px
                    if done[p]:
                        continue
                    dx = mx - (np.float32(px) + HALF)
                    sigma = half_a * dx * dx + row_term + b_dy * dx
                    if sigma < 0 or sigma > sigma_max:
                        continue
                    alpha = min(ALPHA_MAX, op * math.exp(-sigma))
                    if alpha < ALPHA_MIN:
                        continue
                    next_t = trans[p] * (ONE - alpha)
                    if next_t <= T_MIN:
                        done[p] = True
                        n_done += 1
                        continue
                    w = alpha * trans[p]
                    for k in range(depth):
                        acc[p, k] += w * colors[g, k]
                    trans[p] = next_t
                    last[p] = e
        for py in range(y_lo, y_hi):
            for px in range(x_lo, x_hi):
                p = (py - y_lo) * tw + px - x_lo
                out_alphas[image, py, px] = ONE - trans[p]
                last_ids[image, py, px] = last[p]
                for k in range(depth):
                    v = acc[p, k]
                    if has_bg:
                        v += trans[p] * backgrounds[image, k]
                    out_colors[image, py, px, k] = v


@serialized
@numba.njit(cache=True, parallel=True, fastmath=FASTMATH, error_model="numpy")
def composite_backward(
    records,  # [M, RECORD] from pack_gaussians
    colors,  # [M, D]
    backgrounds,  # [I, D] or [0, D]
    width,
    height,
    tile_size,
    tile_width,
    tile_height,
    offsets,  # [n_runs + 1]
    flatten_ids,  # [n_isects]
    out_alphas,  # [I, H, W] from the forward pass
    last_ids,  # [I, H, W] from the forward pass
    v_colors,  # [I, H, W, D] gradient of the rendered colours
    v_alphas,  # [I, H, W] gradient of the rendered alphas
    slots,  # [n_isects, 8 + D] out, zeros: per-intersection gradients, columns SLOT_* below
    accumulate,  # as in composite_forward
    log_stride,  # as in composite_forward
    lane_masks,  # written by composite_forward
):
    n_runs = offsets.shape[0] - 1
    depth = colors.shape[1]
    has_bg = backgrounds.shape[0] > 0
    for run in numba.prange(n_runs):
        start, end = offsets[run], offsets[run + 1]
        if end == start:
            continue
        image, x_lo, x_hi, y_lo, y_hi = _tile_bounds(run, tile_size, tile_width, tile_height, width, height)
        if depth == 3:
            _backward_tile_rgb(records, colors, backgrounds, flatten_ids, start, end, tile_size,
                               image, x_lo, x_hi, y_lo, y_hi, out_alphas, last_ids, v_colors, v_alphas, slots,
                               log_stride, lane_masks, accumulate)
            continue
        tw = x_hi - x_lo
        npix = tw * (y_hi - y_lo)
        trans = np.empty(npix, dtype=np.float32)  # transmittance, restored back to front
        after = np.zeros((npix, depth), dtype=np.float32)  # colour added behind the current Gaussian
        vcol = np.empty((npix, depth), dtype=np.float32)
        q = np.empty(npix, dtype=np.float32)  # the final-transmittance term of d loss / d alpha
        last = np.empty(npix, dtype=np.int32)
        e_max = start - 1
        for py in range(y_lo, y_hi):
            for px in range(x_lo, x_hi):
                p = (py - y_lo) * tw + px - x_lo
                t_final = ONE - out_alphas[image, py, px]
                # with `accumulate` every weight is alpha itself: transmittance stays 1
                trans[p] = ONE if accumulate else t_final
                last[p] = last_ids[image, py, px]
                e_max = max(e_max, last[p])
                bg_dot = np.float32(0.0)
                for k in range(depth):
                    vcol[p, k] = v_colors[image, py, px, k]
                    if has_bg:
                        bg_dot += vcol[p, k] * backgrounds[image, k]
                q[p] = v_alphas[image, py, px] if accumulate else t_final * (v_alphas[image, py, px] - bg_dot)
        g_col = np.empty(depth, dtype=np.float32)
        for e in range(e_max, start - 1, -1):
            g = flatten_ids[e]
            mx, my, a, b, c, op, x0, x1, y0, y1, sigma_max = _gaussian_in_tile(
                g, records, x_lo, x_hi, y_lo, y_hi)
            half_a = HALF * a
            ch0, ch1 = _box_chunks(x0, x1, x_lo)
            g_mx = g_my = g_a = g_b = g_c = g_op = g_absx = g_absy = np.float32(0.0)
            g_col[:] = 0.0
            for py in range(y0, y1):
                dy, row_term, b_dy = _row_terms(my, py, b, c)
                row = (py - y_lo) * tw - x_lo
                if accumulate:  # the forward pass logged a lane mask per chunk of the box's rows
                    for px in range(x0, x1):
                        ch = (px - x_lo) // LANES
                        mask = lane_masks[_log_start(log_stride, e, py, y0, ch, ch0, ch1)]
                        j = px - x_lo - ch * LANES
                        if not _lane_taken(mask, j):
                            continue
                        px0 = x_lo + ch * LANES
                        raw = op * exp_neg(_lane_sigma(j, px0, mx, half_a, row_term, b_dy))
                        p = row + px
                        alpha = min(ALPHA_MAX, raw)
                        v_alpha = q[p]
                        for k in range(depth):
                            g_col[k] += alpha * vcol[p, k]
                            v_alpha += vcol[p, k] * colors[g, k]
                        if raw <= ALPHA_MAX:  # the 0.999 clamp passes no gradient
                            dx = mx - (np.float32(px) + HALF)
                            gx, gy, ga, gb, gc = _sigma_grads(-raw * v_alpha, dx, dy, a, b, c)
                            g_mx, g_my, g_absx, g_absy = g_mx + gx, g_my + gy, g_absx + abs(gx), g_absy + abs(gy)
                            g_a, g_b, g_c = g_a + ga, g_b + gb, g_c + gc
                            g_op += raw / op * v_alpha
                    continue
                for px in range(x0, x1):
                    p = row + px
                    if last[p] < e:
                        continue
                    dx = mx - (np.float32(px) + HALF)
                    sigma = half_a * dx * dx + row_term + b_dy * dx
                    if sigma < 0 or sigma > sigma_max:
                        continue
                    gauss = math.exp(-sigma)
                    raw = op * gauss
                    alpha = min(ALPHA_MAX, raw)
                    if alpha < ALPHA_MIN:
                        continue
                    ra = ONE / (ONE - alpha)
                    trans[p] *= ra
                    w = alpha * trans[p]
                    v_alpha = q[p] * ra
                    for k in range(depth):
                        ck = colors[g, k]
                        g_col[k] += w * vcol[p, k]
                        v_alpha += vcol[p, k] * (ck * trans[p] - after[p, k] * ra)
                        after[p, k] += ck * w
                    if raw <= ALPHA_MAX:  # the 0.999 clamp passes no gradient
                        gx, gy, ga, gb, gc = _sigma_grads(-raw * v_alpha, dx, dy, a, b, c)
                        g_mx, g_my, g_absx, g_absy = g_mx + gx, g_my + gy, g_absx + abs(gx), g_absy + abs(gy)
                        g_a, g_b, g_c = g_a + ga, g_b + gb, g_c + gc
                        g_op += gauss * v_alpha
            _store_geometry(slots, e, g_mx, g_my, g_a, g_b, g_c, g_op, g_absx, g_absy)
            for k in range(depth):
                slots[e, SLOT_COLOR + k] = g_col[k]


@numba.njit(cache=True)
def sum_slots(flatten_ids, slots, xy, conic, opacity, absxy, color):
    """Per-Gaussian sums of the intersections' gradient slots, in intersection order (deterministic),
    straight into the gradient arrays (zeros): xy [M, 2], conic [M, 3], opacity [M], absxy [M, 2],
    color [M, D]."""
    for e in range(flatten_ids.shape[0]):
        g = flatten_ids[e]
        for k in range(2):
            xy[g, k] += slots[e, SLOT_MEAN2D + k]
            absxy[g, k] += slots[e, SLOT_ABS_MEAN2D + k]
        for k in range(3):
            conic[g, k] += slots[e, SLOT_CONIC + k]
        opacity[g] += slots[e, SLOT_OPACITY]
        for k in range(color.shape[1]):
            color[g, k] += slots[e, SLOT_COLOR + k]
