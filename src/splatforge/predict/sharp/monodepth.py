"""The monodepth network (sliding-pyramid encoder, DPT decoder, disparity head) and its adaptor,
which also hands the encoder's feature maps to the Gaussian decoder."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .decoders import MultiresConvDecoder
from .encoders import SlidingPyramidNetwork
from .params import MonodepthAdaptorParams, MonodepthParams
from .vit import VisionTransformer


class MonodepthDensePredictionTransformer(nn.Module):
    """Image in [0, 1] -> disparity [B, num_layers, 4s, 4s] (ReLU, so >= 0)."""

    def __init__(self, encoder: SlidingPyramidNetwork, decoder: MultiresConvDecoder,
                 last_dims: tuple[int, int], num_output_layers: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        dim = decoder.dim_out
        self.head = nn.Sequential(
            nn.Conv2d(dim, dim // 2, kernel_size=3, stride=1, padding=1),
            nn.ConvTranspose2d(dim // 2, dim // 2, kernel_size=2, stride=2, padding=0, bias=True),
            nn.Conv2d(dim // 2, last_dims[0], kernel_size=3, stride=1, padding=1),
            nn.ReLU(True),
            # ml-sharp builds this with last_dims[1] outputs and then repeats it once per
            # predicted depth layer ("replicate_head"); the checkpoint holds the repeated shape.
            nn.Conv2d(last_dims[0], last_dims[1] * num_output_layers, kernel_size=1),
            nn.ReLU(),
        )

    @staticmethod
    def normalize(image: Tensor) -> Tensor:
        """[0, 1] -> [-1, 1], the range the ViTs were trained on."""
        return image * 2.0 - 1.0

    def internal_resolution(self) -> int:
        return self.encoder.internal_resolution()


def create_monodepth_dpt(params: MonodepthParams,
                         num_output_layers: int) -> MonodepthDensePredictionTransformer:
    hooks = list(params.hook_block_ids)
    patch_encoder = VisionTransformer(params.patch_encoder, intermediate_features_ids=hooks)
    image_encoder = VisionTransformer(params.image_encoder, intermediate_features_ids=None)
    dims_encoder = [params.dims_decoder[0], *params.encoder_dims]
    encoder = SlidingPyramidNetwork(dims_encoder, patch_encoder, image_encoder,
                                    use_patch_overlap=params.use_patch_overlap)
    decoder = MultiresConvDecoder(dims_encoder, list(params.dims_decoder))
    return MonodepthDensePredictionTransformer(encoder, decoder, params.head_dims,
                                               num_output_layers)


class MonodepthOutput(NamedTuple):
    disparity: Tensor  # [B, layers, H, W]
    encoder_features: list[Tensor]
    decoder_features: Tensor
    output_features: list[Tensor]  # what the Gaussian decoder consumes


class MonodepthWithEncodingAdaptor(nn.Module):
    def __init__(self, monodepth_predictor: MonodepthDensePredictionTransformer,
                 params: MonodepthAdaptorParams, num_monodepth_layers: int,
                 sorting_monodepth: bool) -> None:
        super().__init__()
        self.monodepth_predictor = monodepth_predictor
        self.return_encoder_features = params.encoder_features
        self.return_decoder_features = params.decoder_features
        self.num_monodepth_layers = num_monodepth_layers
        self.sorting_monodepth = sorting_monodepth

    def forward(self, image: Tensor) -> MonodepthOutput:
        mp = self.monodepth_predictor
        encodings = mp.encoder(mp.normalize(image))
        encoder_features = encodings[: len(mp.encoder.dims_encoder)]
        decoder_features = mp.decoder(encoder_features)
        disparity = mp.head(decoder_features)
        if self.num_monodepth_layers == 2 and self.sorting_monodepth:
            disparity = torch.cat([disparity.max(dim=1, keepdim=True).values,
                                   disparity.min(dim=1, keepdim=True).values], dim=1)
        output_features: list[Tensor] = []
        if self.return_encoder_features:
            output_features.extend(encoder_features)
        if self.return_decoder_features:
            output_features.append(decoder_features)
        return MonodepthOutput(disparity, encoder_features, decoder_features, output_features)

    def get_feature_dims(self) -> list[int]:
        dims: list[int] = []
        if self.return_encoder_features:
            dims.extend(self.monodepth_predictor.encoder.dims_encoder)
        if self.return_decoder_features:
            dims.append(self.monodepth_predictor.decoder.dim_out)
        return dims

    def internal_resolution(self) -> int:
        return self.monodepth_predictor.internal_resolution()
