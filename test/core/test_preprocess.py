"""The shared image preprocessing (safevla_core.policy.preprocess), hand-worked sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from safevla_core.policy.preprocess import center_crop_to_aspect, resize_bilinear


@pytest.mark.parametrize(
    "h, w, out",
    [
        (480, 640, (384, 640)),  # 4:3 -> 5:3: 640 * 96 / 160 = 384 rows, 48 cut top and bottom
        (720, 1280, (720, 1200)),  # 16:9 -> 5:3: 720 * 160 / 96 = 1200 columns, 40 cut each side
        (96, 160, (96, 160)),  # already 5:3: unchanged
    ],
)
def test_center_crop_keeps_the_policy_aspect(h, w, out):
    img = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3)
    crop = center_crop_to_aspect(img, 160, 96)
    assert crop.shape[:2] == out
    y0, x0 = (h - out[0]) // 2, (w - out[1]) // 2
    assert (crop[0, 0] == img[y0, x0]).all()  # centred


def test_resize_is_the_encoders_call():
    x = torch.rand(2, 3, 384, 640) * 255
    ref = F.interpolate(x, size=(96, 160), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(resize_bilinear(x, 96, 160), ref)
    assert resize_bilinear(ref, 96, 160) is ref
    with pytest.raises(ValueError):
        center_crop_to_aspect(np.zeros((0, 4, 3)), 160, 96)
