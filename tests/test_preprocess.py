"""Tests for lrpcli.io.preprocess: torchvision-equal preprocessing and pixel bounds."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from conftest import noise
from lrpcli.io.preprocess import Preprocess, pixel_bounds, preprocess, upscale_warning

IMAGENET = Preprocess(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.mark.parametrize(
    ("size", "pp"),
    [
        ((300, 200), IMAGENET),
        ((211, 389), IMAGENET),
        ((256, 256), IMAGENET),
        ((50, 40), Preprocess(resize=32, crop=40, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.125))),
    ],
)
def test_preprocess_matches_torchvision(size: tuple[int, int], pp: Preprocess) -> None:
    from torchvision import transforms  # type: ignore[import-untyped]

    image = noise(*size, seed=size[0])
    reference = transforms.Compose(
        [
            transforms.Resize(pp.resize),
            transforms.CenterCrop(pp.crop),
            transforms.ToTensor(),
            transforms.Normalize(pp.mean, pp.std),
        ]
    )(image)
    tensor, crop = preprocess(image, pp)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, pp.crop, pp.crop)
    assert torch.allclose(tensor, reference, atol=1e-6, rtol=0)
    assert crop.dtype == np.uint8 and crop.shape == (pp.crop, pp.crop, 3)
    mean = np.array(pp.mean, dtype=np.float32)
    std = np.array(pp.std, dtype=np.float32)
    back = ((tensor.permute(1, 2, 0).numpy() * std + mean) * 255).round()
    np.testing.assert_array_equal(back.astype(np.uint8), crop)


def test_preprocess_converts_non_rgb() -> None:
    tensor, crop = preprocess(Image.new("L", (30, 20), 255), IMAGENET)
    assert crop.shape == (224, 224, 3) and (crop == 255).all()
    assert tensor.shape == (3, 224, 224)


def test_pixel_bounds() -> None:
    low, high = pixel_bounds(IMAGENET)
    assert low.shape == high.shape == (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    assert torch.allclose(low, -mean / std) and torch.allclose(high, (1 - mean) / std)
    assert low[0, 0, 0, 0].item() == pytest.approx(-0.485 / 0.229)
    assert high[0, 2, 0, 0].item() == pytest.approx((1 - 0.406) / 0.225)
    black, _ = preprocess(Image.new("RGB", (8, 8), (0, 0, 0)), IMAGENET)
    white, _ = preprocess(Image.new("RGB", (8, 8), (255, 255, 255)), IMAGENET)
    assert torch.allclose(black[:, :1, :1], low[0], atol=1e-6)
    assert torch.allclose(white[:, :1, :1], high[0], atol=1e-6)


def test_preprocess_validates() -> None:
    with pytest.raises(ValueError, match="std"):
        Preprocess(resize=8, crop=8, mean=(0, 0, 0), std=(1, 0, 1))


def test_preprocess_of_a_very_elongated_image_matches_torchvision_up_to_rounding() -> None:
    """The fast path for images far wider than tall resamples only the cropped box."""
    from torchvision import transforms  # type: ignore[import-untyped]

    image = noise(3000, 40, seed=7)  # resized to 19200x256: the box path
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])(image)
    tensor, crop = preprocess(image, IMAGENET)
    diff = np.abs(crop.astype(int) - reference.permute(1, 2, 0).numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05
    assert tensor.shape == (3, 224, 224)


def test_upscale_warning_for_images_much_smaller_than_the_crop() -> None:
    assert upscale_warning(1, 1, IMAGENET) == (
        "upscaled from 1x1 pixels (256x) to the model's 224x224 input: the map shows "
        "interpolated pixels, not detail of the image"
    )
    assert "from 300x100 pixels (2.56x)" in (upscale_warning(300, 100, IMAGENET) or "")
    assert upscale_warning(112, 500, IMAGENET) is None  # half the crop: upscaled, but not much
    assert upscale_warning(300, 200, IMAGENET) is None


@pytest.mark.parametrize(("size", "resize", "crop"), [((300, 200), 64, 56), ((90, 211), 48, 48), ((50, 40), 32, 40)])
def test_squash_matches_torchvision_and_its_crop_box(size: tuple[int, int], resize: int, crop: int) -> None:
    """``resize_mode="squash"`` (Hugging Face ViT processors): ``Resize((n, n))`` then the centre crop;
    the crop's box in the photo is the centre part of the whole image, not a square of it."""
    from torchvision import transforms  # type: ignore[import-untyped]

    from lrpcli.io.preprocess import crop_box

    pp = Preprocess(resize=resize, crop=crop, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1), resize_mode="squash")
    image = noise(*size, seed=size[1])
    reference = transforms.Compose(
        [transforms.Resize((resize, resize)), transforms.CenterCrop(crop), transforms.ToTensor(),
         transforms.Normalize(pp.mean, pp.std)]
    )(image)  # fmt: skip
    tensor, shown = preprocess(image, pp)
    assert tensor.shape == (3, crop, crop) and shown.shape == (crop, crop, 3)
    assert torch.allclose(tensor, reference, atol=1e-6, rtol=0)
    width, height = size
    left, top, right, bottom = crop_box(width, height, pp)
    margin = (resize - crop) // 2  # pixels of the resized image left out on each side (negative: padding)
    assert (left, top) == pytest.approx((margin * width / resize, margin * height / resize))
    assert (right, bottom) == pytest.approx(((margin + crop) * width / resize, (margin + crop) * height / resize))


def test_resize_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="resize_mode must be one of shorter, squash"):
        Preprocess(resize=8, crop=8, mean=(0, 0, 0), std=(1, 1, 1), resize_mode="stretch")
