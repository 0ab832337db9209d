"""Compression of Gaussian scenes on the CPU: PLAS layout, k-means codebooks, SOG encoding, and
the quality check (PSNR / SSIM of orbit renders) that says what compression cost."""

from splatforge.compress.kmeans import kmeans, palette_kmeans, quantize_1d
from splatforge.compress.plas import PlasConfig, neighbour_distance, plas_order
from splatforge.compress.sog import SogConfig, compress_scene, encode_sog

__all__ = ["kmeans", "palette_kmeans", "quantize_1d", "PlasConfig", "plas_order", "neighbour_distance",
           "SogConfig", "encode_sog", "compress_scene"]
