"""Models bundled with lrpcli and their ImageNet metadata."""

from lrpcli.models.efficientnet_lite import (
    WEIGHTS_SOURCE,
    EfficientNetLite,
    convert_reference_state_dict,
    efficientnet_lite0,
    lite0_state_dict,
    lite0_weights_path,
)
from lrpcli.models.imagenet import (
    EFFICIENTNET_LITE_PREPROCESS,
    IMAGENET_PREPROCESS,
    Preprocess,
    imagenet_categories,
)
from lrpcli.models.registry import EMBEDDED_MODELS
from lrpcli.models.sources import SOURCES, load_model
from lrpcli.models.spec import LoadedModel, ModelLoadError, ModelSpec

__all__ = [
    "EFFICIENTNET_LITE_PREPROCESS",
    "EMBEDDED_MODELS",
    "IMAGENET_PREPROCESS",
    "SOURCES",
    "WEIGHTS_SOURCE",
    "EfficientNetLite",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "Preprocess",
    "convert_reference_state_dict",
    "efficientnet_lite0",
    "imagenet_categories",
    "load_model",
    "lite0_state_dict",
    "lite0_weights_path",
]
