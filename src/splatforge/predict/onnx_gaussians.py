"""The whole SHARP pipeline as one exportable module: photo + focal length in, metric Gaussians out.

`GaussiansPipeline` wraps the network with ml-sharp's pre- and post-processing written in plain
elementwise tensor ops, so that `torch.onnx.export` turns it into a graph that ONNX Runtime (Web,
Mobile, any language) runs with no Python around it:

1. the photo [1, 3, H, W] (any size) is resized bilinearly (align_corners) to the network's
   square input, and the disparity factor f_px / W is derived from the focal length;
2. the network predicts Gaussians in its normalized camera space;
3. means map to metric OpenCV camera coordinates by L = diag(W / 2f, H / 2f, 1), and each
   covariance L R S^2 R^T L^T is decomposed again into scales and a rotation by an unrolled
   cyclic Jacobi eigen-solver (`symmetric_eigen_jacobi`) in float32, which handles repeated and
   zero eigenvalues without special cases (ORT Web and Mobile lack float64 kernels for most ops,
   and the closed-form solver of `unproject.py` needs float64 to be accurate).
"""

from __future__ import annotations

import torch
import torch.onnx.operators  # shape_as_tensor: traced (dynamic) image sizes
from torch import Tensor, nn

from .sharp import RGBGaussianPredictor
from .unproject import matrices_to_quaternions, quaternions_to_matrices

GAUSSIAN_INPUTS = ("image", "focal_length_px")
GAUSSIAN_OUTPUTS = ("means", "scales", "quaternions", "colors", "opacities")
# Cyclic Jacobi converges quadratically; on 10^5 random, diagonal, repeated-eigenvalue and
# near-singular float32 matrices the off-diagonal mass after 4 sweeps is at rounding level.
JACOBI_SWEEPS = 4


def symmetric_eigen_jacobi(a00: Tensor, a01: Tensor, a02: Tensor, a11: Tensor, a12: Tensor,
                           a22: Tensor, sweeps: int = JACOBI_SWEEPS
                           ) -> tuple[tuple[Tensor, Tensor, Tensor], list[list[Tensor]]]:
    """Eigen-decomposition of symmetric 3x3 matrices given by their six distinct entries ([N]
    each): (eigenvalues descending, v) with v[i][j] the i-th component of the j-th eigenvector;
    the columns form a proper rotation (det +1). Only elementwise ops (exports to plain ONNX).
    """
    # Scale by the trace so the squares inside the rotation angle neither underflow nor overflow
    # in float32 (covariances of millimetre Gaussians are ~1e-6 m^2).
    norm = a00.abs() + a11.abs() + a22.abs()
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    a = [[a00 / norm, a01 / norm, a02 / norm], [None, a11 / norm, a12 / norm],
         [None, None, a22 / norm]]
    one, zero = torch.ones_like(a00), torch.zeros_like(a00)
    v = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]

    def get(i: int, j: int) -> Tensor:
        return a[min(i, j)][max(i, j)]

    def put(i: int, j: int, value: Tensor) -> None:
        a[min(i, j)][max(i, j)] = value

    for _ in range(sweeps):
        for p, q, r in ((0, 1, 2), (0, 2, 1), (1, 2, 0)):
            apq, app, aqq = get(p, q), get(p, p), get(q, q)
            d = aqq - app
            # t = tan of the rotation angle, the smaller root (|angle| <= 45 degrees): stable.
            den = d.abs() + torch.sqrt(d * d + 4 * apq * apq)
            sign = torch.where(d >= 0, one, -one)
            t = torch.where(den > 0, 2 * apq * sign / torch.where(den > 0, den, one), zero)
            c = torch.rsqrt(1 + t * t)
            s = t * c
            arp, arq = get(r, p), get(r, q)
            put(p, p, app - t * apq)
            put(q, q, aqq + t * apq)
            put(p, q, zero)
            put(r, p, c * arp - s * arq)
            put(r, q, s * arp + c * arq)
            for k in range(3):
                vkp, vkq = v[k][p], v[k][q]
                v[k][p] = c * vkp - s * vkq
                v[k][q] = s * vkp + c * vkq

    values = [a[i][i] * norm for i in range(3)]
    columns = [[v[k][j] for k in range(3)] for j in range(3)]
    # Sorting network (descending), swapping eigenvectors with their values.
    for i, j in ((0, 1), (1, 2), (0, 1)):
        swap = values[i] < values[j]
        values[i], values[j] = (torch.where(swap, values[j], values[i]),
                                torch.where(swap, values[i], values[j]))
        columns[i], columns[j] = ([torch.where(swap, y, x) for x, y in zip(columns[i], columns[j])],
                                  [torch.where(swap, x, y) for x, y in zip(columns[i], columns[j])])
    e0, e1 = columns[0], columns[1]
    # The third axis as e0 x e1 makes the rotation proper (Jacobi's product may have det -1).
    columns[2] = [e0[1] * e1[2] - e0[2] * e1[1], e0[2] * e1[0] - e0[0] * e1[2],
                  e0[0] * e1[1] - e0[1] * e1[0]]
    vectors = [[columns[j][i] for j in range(3)] for i in range(3)]
    return (values[0], values[1], values[2]), vectors


class GaussiansPipeline(nn.Module):
    """image [1, 3, H, W] (RGB in [0, 1], any H, W), focal_length_px [1] (of that image) ->
    means [N, 3] (metres, OpenCV camera frame: x right, y down, z forward), scales [N, 3]
    (standard deviations in metres, largest first), quaternions [N, 4] (w, x, y, z, unit, w >= 0;
    the rotation whose columns are the scales' axes), colors [N, 3] (the network's colour space,
    linear RGB for SHARP), opacities [N] (in [0, 1])."""

    def __init__(self, model: RGBGaussianPredictor) -> None:
        super().__init__()
        self.model = model
        self.size = model.internal_resolution()

    def forward(self, image: Tensor, focal_length_px: Tensor):
        shape = torch.onnx.operators.shape_as_tensor(image).to(torch.float32)
        height, width = shape[2], shape[3]
        resized = nn.functional.interpolate(image, size=(self.size, self.size), mode="bilinear",
                                            align_corners=True)
        raw = self.model(resized, (focal_length_px / width).reshape(1))
        # ml-sharp's inverse(NDC @ K) with the principal point at the image centre.
        lx = width / (2 * focal_length_px[0])
        ly = height / (2 * focal_length_px[0])
        mean = raw.mean_vectors[0]
        means = torch.stack([mean[:, 0] * lx, mean[:, 1] * ly, mean[:, 2]], -1)

        rot = quaternions_to_matrices(raw.quaternions[0])
        var = raw.singular_values[0].square()
        scale = (lx, ly, None)

        def m(i: int, j: int) -> Tensor:  # (L R)[i, j]
            return rot[:, i, j] if scale[i] is None else rot[:, i, j] * scale[i]

        def cov(i: int, j: int) -> Tensor:
            return sum(m(i, k) * m(j, k) * var[:, k] for k in range(3))

        values, vectors = symmetric_eigen_jacobi(cov(0, 0), cov(0, 1), cov(0, 2), cov(1, 1),
                                                 cov(1, 2), cov(2, 2))
        scales = torch.sqrt(torch.stack(values, -1).clamp_min(0))
        quats = matrices_to_quaternions(torch.stack([torch.stack(row, -1) for row in vectors], -2))
        return means, scales, quats, raw.colors[0], raw.opacities[0]
