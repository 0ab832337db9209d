"""Configuration of the SHARP network: the knobs of ml-sharp's `PredictorParams` and ViT presets.

ml-sharp names its ViTs by preset ("dinov2l16_384") and looks the numbers up in module-level
tables; here the numbers live in the config itself (`ViTConfig` in `MonodepthParams`), so a model
of any size is one dataclass. Every default equals ml-sharp's, so `PredictorParams()` is the
official network (the one `sharp_2572gikvuh.pt` was trained as).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

NormLayerName = Literal["noop", "batch_norm", "group_norm", "instance_norm"]
UpsamplingMode = Literal["transposed_conv", "nearest", "bilinear"]
ActivationType = Literal["linear", "exp", "sigmoid", "softplus"]
ColorSpace = Literal["sRGB", "linearRGB"]
DepthInitOption = Literal["surface_min", "surface_max", "base_depth", "linear_disparity"]
ColorInitOption = Literal["none", "first_layer", "all_layers"]
ImageEncoderType = Literal["skip_conv", "skip_conv_kernel2"]


@dataclasses.dataclass
class ViTConfig:
    """A timm-style VisionTransformer (class token, LayerScale, absolute position embedding).

    `img_size` is the side of the square patch the ViT sees; the encoder's full input is 4x that.
    With the sliding-pyramid merge, `img_size // patch_size` must be 24 (ml-sharp trims a fixed
    3 tokens of overlap per side), which `PredictorParams.validate` checks.
    """

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    init_values: float = 1e-5  # LayerScale start value; 0 disables LayerScale (no ls1/ls2)
    img_size: int = 384
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 21841  # the unused classifier head is part of the checkpoint
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    mlp_mode: Literal["vanilla", "glu"] = "vanilla"

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size


@dataclasses.dataclass
class MonodepthParams:
    """The Depth Pro-style monodepth network: sliding-pyramid encoder, decoder, disparity head."""

    patch_encoder: ViTConfig = dataclasses.field(default_factory=ViTConfig)
    image_encoder: ViTConfig = dataclasses.field(default_factory=ViTConfig)
    # Channels of the four patch-encoder feature maps after projection/upsampling
    # (ml-sharp's MONODEPTH_ENCODER_DIMS_MAP) and the ViT blocks they are taken from
    # (MONODEPTH_HOOK_IDS_MAP); only the first two hooks are used.
    encoder_dims: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    hook_block_ids: tuple[int, int, int, int] = (5, 11, 17, 23)
    use_patch_overlap: bool = True
    dims_decoder: tuple[int, int, int, int, int] = (256, 256, 256, 256, 256)
    head_dims: tuple[int, int] = (32, 1)  # ml-sharp's fixed `last_dims`


@dataclasses.dataclass
class MonodepthAdaptorParams:
    encoder_features: bool = True
    decoder_features: bool = False


@dataclasses.dataclass
class InitializerParams:
    scale_factor: float = 1.0
    disparity_factor: float = 1.0
    stride: int = 2
    num_layers: int = 2
    first_layer_depth_option: DepthInitOption = "surface_min"
    rest_layer_depth_option: DepthInitOption = "surface_min"
    color_option: ColorInitOption = "all_layers"
    base_depth: float = 10.0
    normalize_depth: bool = True


@dataclasses.dataclass
class GaussianDecoderParams:
    dim_in: int = 5
    dim_out: int = 32
    norm_type: NormLayerName = "group_norm"
    norm_num_groups: int = 8
    stride: int = 2
    dims_decoder: tuple[int, int, int, int, int] = (128, 128, 128, 128, 128)
    use_depth_input: bool = True
    upsampling_mode: UpsamplingMode = "transposed_conv"
    image_encoder_type: ImageEncoderType = "skip_conv_kernel2"


@dataclasses.dataclass
class AlignmentParams:
    """The learned depth-alignment UNet (trained with ground-truth depth; idle at inference)."""

    kernel_size: int = 16
    stride: int = 1
    steps: int = 4
    activation_type: ActivationType = "exp"
    depth_decoder_features: bool = False
    base_width: int = 16


@dataclasses.dataclass
class DeltaFactor:
    """Factors the predicted deltas are multiplied by before activation."""

    xy: float = 0.001
    z: float = 0.001
    color: float = 0.1
    opacity: float = 1.0
    scale: float = 1.0
    quaternion: float = 1.0


@dataclasses.dataclass
class PredictorParams:
    """The whole predictor; the defaults are the official SHARP network."""

    initializer: InitializerParams = dataclasses.field(default_factory=InitializerParams)
    monodepth: MonodepthParams = dataclasses.field(default_factory=MonodepthParams)
    monodepth_adaptor: MonodepthAdaptorParams = dataclasses.field(
        default_factory=MonodepthAdaptorParams)
    gaussian_decoder: GaussianDecoderParams = dataclasses.field(
        default_factory=GaussianDecoderParams)
    depth_alignment: AlignmentParams = dataclasses.field(default_factory=AlignmentParams)
    delta_factor: DeltaFactor = dataclasses.field(default_factory=DeltaFactor)
    max_scale: float = 10.0
    min_scale: float = 0.0
    color_activation_type: ActivationType = "sigmoid"
    opacity_activation_type: ActivationType = "sigmoid"
    color_space: ColorSpace = "linearRGB"
    num_monodepth_layers: int = 2
    sorting_monodepth: bool = False
    base_scale_on_predicted_mean: bool = True

    def validate(self) -> None:
        """Raise ValueError for combinations the network cannot be built with."""
        md = self.monodepth
        for name, vit in (("patch_encoder", md.patch_encoder), ("image_encoder", md.image_encoder)):
            if vit.img_size % vit.patch_size:
                raise ValueError(f"monodepth.{name}: img_size {vit.img_size} is not a multiple "
                                 f"of patch_size {vit.patch_size}")
            if vit.embed_dim % vit.num_heads:
                raise ValueError(f"monodepth.{name}: embed_dim {vit.embed_dim} is not divisible "
                                 f"by num_heads {vit.num_heads}")
        if md.patch_encoder.patch_size != 16:
            raise ValueError("the decoders upsample the token grid 64x to the input size, which "
                             "is 4x the ViT's crop: monodepth.patch_encoder.patch_size must be "
                             f"16, got {md.patch_encoder.patch_size}")
        if md.use_patch_overlap and md.patch_encoder.grid_size != 24:
            raise ValueError("the overlapping sliding pyramid merges 24x24-token patches: "
                             "monodepth.patch_encoder.img_size // patch_size must be 24, got "
                             f"{md.patch_encoder.grid_size}")
        pe, ie = md.patch_encoder, md.image_encoder
        if (ie.img_size, ie.patch_size) != (pe.img_size, pe.patch_size):
            raise ValueError("image_encoder sees the whole image at the patch encoder's crop "
                             "size: both need the same img_size and patch_size")
        if len(md.hook_block_ids) != 4 or max(md.hook_block_ids[:2]) >= md.patch_encoder.depth:
            raise ValueError(f"monodepth.hook_block_ids {md.hook_block_ids} must be 4 block "
                             f"indices below depth {md.patch_encoder.depth}")
        if self.gaussian_decoder.stride < self.initializer.stride:
            raise ValueError("gaussian_decoder.stride must be >= initializer.stride")
        if self.num_monodepth_layers > 1 and self.initializer.num_layers != 2:
            raise ValueError("num_monodepth_layers > 1 needs initializer.num_layers == 2")
