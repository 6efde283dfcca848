"""Camera image -> policy input: the one preprocessing shared by training and the ROS node.

Training renders the cameras at the policy's size (``PolicyConfig.image_width`` x
``image_height``, e.g. 160x96, aspect 5:3); a real camera delivers 640x480 (4:3) or 1280x720
(16:9). :func:`center_crop_to_aspect` first cuts the frame to the policy's aspect ratio (centre
crop, no stretching: objects keep their shape), then :func:`resize_bilinear` resizes it exactly as
:class:`safevla_core.policy.encoders.FrozenVisualEncoder` does (``torch.nn.functional.interpolate``,
bilinear, ``align_corners=False``, ``antialias=True``; PyTorch docs), so the robot's pixels go
through the same arithmetic as in training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention


def center_crop_to_aspect(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Largest centred crop of ``rgb`` with the aspect ratio ``width : height`` (a view).

    Args:
        rgb: ``(H, W, C)`` image.
        width: Target width, pixels (> 0).
        height: Target height, pixels (> 0).

    Returns:
        ``(H', W', C)`` with ``W' / H'`` as close to ``width / height`` as whole pixels allow
        (e.g. 640x480 -> 640x384 for 160x96; 1280x720 -> 1200x720).

    Raises:
        ValueError: On an empty image or a non-positive target size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    h, w = rgb.shape[:2]
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h}")
    if w * height > h * width:  # too wide: crop columns
        new_w = max(1, round(h * width / height))
        x0 = (w - new_w) // 2
        return rgb[:, x0 : x0 + new_w]
    new_h = max(1, round(w * height / width))
    y0 = (h - new_h) // 2
    return rgb[y0 : y0 + new_h]


def resize_bilinear(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``(B, C, H, W)`` float batch to ``(B, C, height, width)`` (bilinear, antialiased).

    The exact call of the visual encoder; returns ``x`` itself when it already has that size.
    """
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(
        x, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
