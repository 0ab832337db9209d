"""`RGBGaussianPredictor` and the factory that assembles it from `PredictorParams`."""

from __future__ import annotations

from torch import Tensor, nn

from .alignment import DepthAlignment, LearnedAlignment
from .composer import GaussianComposer, SharpGaussians
from .gaussian_decoder import DirectPredictionHead, create_gaussian_decoder
from .initializer import MultiLayerInitializer
from .monodepth import MonodepthWithEncodingAdaptor, create_monodepth_dpt
from .params import PredictorParams


class RGBGaussianPredictor(nn.Module):
    """Image [B, 3, S, S] in [0, 1] (S = `internal_resolution()`) and disparity factor [B]
    (focal length in pixels / image width) -> `SharpGaussians` in normalized camera space,
    2 layers x (S/2)^2 Gaussians per image for the official network."""

    def __init__(self, params: PredictorParams) -> None:
        super().__init__()
        params.validate()
        self.params = params
        num_head_layers = params.num_monodepth_layers if params.num_monodepth_layers == 2 else 1
        monodepth = create_monodepth_dpt(params.monodepth, num_head_layers)
        adaptor = MonodepthWithEncodingAdaptor(
            monodepth, params.monodepth_adaptor, params.num_monodepth_layers,
            params.sorting_monodepth)
        # Attributes in ml-sharp's order, so state_dict() lists keys in the checkpoint's order.
        self.init_model = MultiLayerInitializer(params.initializer)
        self.feature_model = create_gaussian_decoder(params.gaussian_decoder,
                                                     adaptor.get_feature_dims())
        self.monodepth_model = adaptor
        self.prediction_head = DirectPredictionHead(self.feature_model.dim_out,
                                                    params.initializer.num_layers)
        self.gaussian_composer = GaussianComposer(
            params.delta_factor, params.min_scale, params.max_scale,
            params.color_activation_type, params.opacity_activation_type, params.color_space,
            params.base_scale_on_predicted_mean,
            scale_factor=params.gaussian_decoder.stride // params.initializer.stride)
        self.depth_alignment = DepthAlignment(LearnedAlignment(
            params.depth_alignment, depth_decoder_dim=monodepth.decoder.dims_decoder[-1]))

    def internal_resolution(self) -> int:
        return self.monodepth_model.internal_resolution()

    def forward(self, image: Tensor, disparity_factor: Tensor,
                depth: Tensor | None = None) -> SharpGaussians:
        mono = self.monodepth_model(image)
        monodepth = disparity_factor[:, None, None, None] / mono.disparity.clamp(min=1e-4, max=1e4)
        monodepth = self.depth_alignment(monodepth, depth, mono.decoder_features)
        init = self.init_model(image, monodepth)
        features = self.feature_model(init.feature_input, encodings=mono.output_features)
        delta = self.prediction_head(features)
        return self.gaussian_composer(delta, init.gaussian_base_values, init.global_scale)


def create_predictor(params: PredictorParams | None = None) -> RGBGaussianPredictor:
    return RGBGaussianPredictor(params if params is not None else PredictorParams())
