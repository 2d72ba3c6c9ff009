"""Input validation and the preprocessing a fitted classifier owns.

A :class:`Preprocessor` is fitted on the first task a classifier sees and saved with it, so
raw images (any size, either polarity, uint8 or float) given to a loaded classifier are turned
into the tensors its encoder was trained on: channels first, resized, strokes bright on a dark
background, standardised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from siamcl._checks import check_size

__all__ = ["Preprocessor", "as_array", "as_labels"]

ArrayLike = Any  # numpy array or torch tensor
CHUNK_ROWS = 4096  # rows converted at a time, so memory does not grow with the input
PIXEL_MAX = 255  # integer images are 8-bit pixel values, whatever their dtype


def as_array(X: ArrayLike, name: str = "X") -> np.ndarray:
    """Return ``X`` as a numpy array after checking type, dtype, emptiness and finiteness."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(X).__name__}")
    if X.dtype == np.bool_ or not (
        np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold integers or floats, got dtype {X.dtype}")
    if X.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must be [N, D] vectors, [N, H, W] images or [N, C, H, W] images; "
            f"got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if min(X.shape[1:]) == 0:
        raise ValueError(f"{name} has a zero-size dimension (shape {X.shape})")
    if np.issubdtype(X.dtype, np.floating):
        _check_finite(X, name)
    return X


def _check_finite(X: np.ndarray, name: str) -> None:
    """NaN, infinities and values float32 cannot hold are refused (checked in row blocks, so
    a large input needs no second copy of itself)."""
    limit = np.finfo(np.float32).max
    for start in range(0, len(X), CHUNK_ROWS):
        block = X[start : start + CHUNK_ROWS]
        if not np.isfinite(block).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if X.dtype.itemsize > 4 and np.abs(block).max() > limit:
            raise ValueError(f"{name} holds values beyond float32's range (about 3.4e38)")


def as_labels(y: ArrayLike, n: int, name: str = "y") -> np.ndarray:
    """Return integer labels as int64, checking they are integral and match ``n`` samples."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.dtype == np.bool_ or y.dtype == object:
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.equal(np.mod(y, 1), 0).all():
            raise TypeError(f"{name} must hold integer class labels, got non-integral floats")
        if np.abs(y).max(initial=0) >= 2**63:
            raise ValueError(f"{name} has labels outside the int64 range")
    elif not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.dtype == np.uint64 and y.size and y.max() >= 2**63:
        raise ValueError(f"{name} has labels outside the int64 range")
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"X has {n} samples but {name} has {len(y)} labels")
    return y.astype(np.int64)


@dataclass
class Preprocessor:
    """Maps raw inputs to standardised float tensors; fitted once, then frozen and saved.

    ``input_size`` (H, W) is the size images are resized to (None: the first task's size);
    ``invert`` is ``"auto"`` (invert when the first task is mostly bright, as with dark strokes
    on white paper), ``True`` or ``False``.
    """

    input_size: tuple[int, int] | None = None
    invert: bool | str = "auto"
    kind: str | None = None  # "image" or "vector", set by fit
    channels: int | None = None
    features: int | None = None
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    value_range: list[float] | None = None  # images: the [min, max] of the fitted pixels

    @property
    def fitted(self) -> bool:
        return self.kind is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed sample, as the encoder sees it."""
        self._require_fitted()
        if self.kind == "vector":
            return (self.features,)
        return (self.channels, *self.input_size)

    def fit(self, X: ArrayLike) -> Preprocessor:
        """Learn the input layout, polarity and standardisation from the first task."""
        X = as_array(X)
        fitted = Preprocessor(input_size=self.input_size, invert=self.invert)
        if X.ndim == 2:
            fitted.kind, fitted.features = "vector", int(X.shape[1])
        else:
            fitted.kind = "image"
            fitted.channels = 1 if X.ndim == 3 else int(X.shape[1])
            if fitted.input_size is None:
                fitted.input_size = tuple(int(s) for s in X.shape[-2:])
            else:  # an int means a square image; anything else fails with what it should be
                fitted.input_size = check_size(fitted.input_size)
        if fitted.invert == "auto":
            fitted.invert = False
            if fitted.kind == "image":
                scaled = _to_float(X[: min(len(X), 512)])
                fitted.invert = bool(scaled.mean() > 0.5)
        values = fitted._canonical(X)
        if fitted.kind == "image":  # one mean and std per channel
            fitted.value_range = [float(values.min()), float(values.max())]
            fitted.mean = values.mean(dim=(0, 2, 3)).tolist()
            fitted.std = values.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()
        else:  # one mean and std per feature
            fitted.mean = values.mean(dim=0).tolist()
            spread = values.std(dim=0) if len(values) > 1 else torch.ones(fitted.features)
            fitted.std = spread.clamp_min(_std_floor(spread)).tolist()
        return fitted

    def canonical(self, X: ArrayLike) -> torch.Tensor:
        """Validated inputs as float32 in the fitted layout and size, before standardising."""
        self._require_fitted()
        return self._canonical(as_array(X))

    def standardise(self, canonical: torch.Tensor) -> torch.Tensor:
        """Subtract the fitted mean and divide by the fitted standard deviation."""
        mean = torch.tensor(self.mean, dtype=canonical.dtype, device=canonical.device)
        std = torch.tensor(self.std, dtype=canonical.dtype, device=canonical.device)
        if self.kind == "image":
            mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        return (canonical - mean) / std

    def __call__(self, X: ArrayLike) -> torch.Tensor:
        return self.standardise(self.canonical(X))

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["input_size"] = list(self.input_size) if self.input_size else None
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Preprocessor:
        state = dict(state)
        if state.get("input_size") is not None:
            state["input_size"] = tuple(state["input_size"])
        return cls(**state)

    def _canonical(self, X: np.ndarray) -> torch.Tensor:
        if self.kind == "vector":
            if X.ndim != 2 or X.shape[1] != self.features:
                raise ValueError(
                    f"expected vectors of shape [N, {self.features}], got shape {X.shape}"
                )
            return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if X.ndim == 2:
            raise ValueError(f"expected images [N, H, W] or [N, C, H, W], got vectors {X.shape}")
        images = torch.from_numpy(self._pixels(X))
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if images.shape[1] != self.channels:
            raise ValueError(
                f"expected images with {self.channels} channel(s) [N, {self.channels}, H, W], "
                f"got shape {tuple(X.shape)}"
            )
        if tuple(images.shape[-2:]) != tuple(self.input_size):
            images = F.interpolate(
                images,
                size=tuple(self.input_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        if self.invert:
            images = 1.0 - images
        return images

    def _pixels(self, X: np.ndarray) -> np.ndarray:
        """Images as float32 in [0, 1]: integer pixels of any dtype scaled as uint8 ones;
        float images far outside the range the model was fitted on are refused."""
        scaled = _to_float(X)
        if self.value_range is None or np.issubdtype(X.dtype, np.integer):
            return scaled
        low, high = self.value_range
        margin = max(high - low, 1.0)
        found_low, found_high = float(scaled.min()), float(scaled.max())
        if found_low < low - margin or found_high > high + margin:
            raise ValueError(
                f"X holds pixel values in [{found_low:g}, {found_high:g}], but this model was "
                f"fitted on images in [{low:g}, {high:g}]: pass uint8 images, or floats scaled "
                f"as the training images were (0..255 integers become [0, 1])"
            )
        return scaled

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("preprocessor is not fitted: fit a task first")


def _std_floor(spread: torch.Tensor) -> float:
    """The smallest per-feature spread used to standardise vectors: half the median spread of
    the features that vary. A feature nearly constant in the first task would otherwise be
    divided by almost nothing and dwarf every other feature in later tasks."""
    varying = spread[spread > 1e-12]
    return max(1e-6, 0.5 * float(varying.median())) if len(varying) else 1.0


def _to_float(X: np.ndarray) -> np.ndarray:
    """Integer pixels (any integer dtype, 0..255) scaled to [0, 1]; floats as given."""
    if np.issubdtype(X.dtype, np.integer):
        if X.dtype != np.uint8 and (X.min() < 0 or X.max() > PIXEL_MAX):
            raise ValueError(
                f"X holds integer pixel values in [{X.min()}, {X.max()}]; integer images must "
                f"be 0..{PIXEL_MAX} (8-bit), or pass floats"
            )
        return X.astype(np.float32) / PIXEL_MAX
    return np.ascontiguousarray(X, dtype=np.float32)
