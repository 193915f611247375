"""Image datasets for supernet training and subnet scoring, all available offline.

One-shot NAS needs labelled images twice: to train the supernet, and to score each
candidate subnet (recompute its BatchNorm statistics on training batches, then measure
top-1 accuracy on held-out images). ImageNet is out of reach on two CPU cores and
without a network, so the built-in dataset is scikit-learn's 8x8 handwritten digits
(1797 images, 10 classes, shipped with scikit-learn): each image is scaled to [0, 1],
standardised with the dataset's mean and standard deviation, upsampled bilinearly to
the supernet's input size (a multiple of 32) and replicated to the 3 input channels that
the SPOS and FairNAS stems (and the ONNX exporter) expect.

The second built-in set, ``shapes10`` (:mod:`.synthetic`), is drawn from a seed: ten
classes of shape and fill compositions in random colours, places, sizes and noise, hard
enough that logistic regression on the raw pixels stays below 50% while a CNN learns it,
so that it takes the depth of the full supernets to do well. :func:`load_builtin` loads
either by name.

User data comes as a ``.npz`` file (``numpy.savez``) with exactly these arrays:

- ``images``: float32, shape (N, C, H, W) with C = 1 or 3 (one channel is replicated to
  three) and H = W, a positive multiple of 32; already normalised as the user wants.
- ``labels``: int64, shape (N,), class indices >= 0.

:func:`load_npz` refuses pickled (object) arrays, so loading a file never runs code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.inputs import read_npz

from .synthetic import SHAPES10_CLASSES, draw_shapes10

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_CHANNELS",
    "BUILTIN_DATASETS",
    "SHAPES10_IMAGES",
    "ImageDataset",
    "load_builtin",
    "load_digits_dataset",
    "load_npz",
    "load_shapes10_dataset",
    "train_val_split",
]

IMAGE_CHANNELS = 3
"""Input channels of every supernet stem; one-channel data is replicated to three."""
_INPUT_STRIDE = 32  # both supernets stride by 32, so the image side must divide by it
_DIGITS_MAX_VALUE = 16.0  # sklearn digits pixels are integers 0..16
BUILTIN_DATASETS = ("digits", "shapes10")
"""Names :func:`load_builtin` (and ``enasa train-supernet --data``) accept."""
SHAPES10_IMAGES = 6000
"""Images of the built-in shapes10 set: 600 per class."""


@dataclass(frozen=True)
class ImageDataset:
    """Labelled images as tensors ready for a supernet.

    Attributes:
        images: float32, shape (N, 3, S, S).
        labels: int64, shape (N,).
        num_classes: Number of classes; every label is below it.

    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_size(self) -> int:
        """Image side in pixels."""
        return int(self.images.shape[-1])

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageDataset:
        """Return the images at ``indices``, in that order, with the same class count."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageDataset(self.images[index], self.labels[index], self.num_classes)

    def batches(
        self, batch_size: int, *, shuffle_seed: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)`` batches; the last one may be smaller.

        Args:
            batch_size: Images per batch.
            shuffle_seed: Shuffle with this seed; ``None`` keeps the stored order, which
                makes BN recalibration see the same batches for every subnet.

        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = torch.arange(len(self))
        if shuffle_seed is not None:
            generator = torch.Generator().manual_seed(shuffle_seed)
            order = torch.randperm(len(self), generator=generator)
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            yield self.images[index], self.labels[index]


def _resize(images: torch.Tensor, input_size: int) -> torch.Tensor:
    if images.shape[-1] == input_size and images.shape[-2] == input_size:
        return images
    return torch.nn.functional.interpolate(
        images, size=(input_size, input_size), mode="bilinear", align_corners=False
    )


def _check_input_size(input_size: int) -> None:
    if input_size <= 0 or input_size % _INPUT_STRIDE != 0:
        raise InputError(f"input size must be a positive multiple of 32, got {input_size}")


def load_digits_dataset(input_size: int = 32) -> ImageDataset:
    """Load scikit-learn's 8x8 digits as a 10-class dataset of 3 x S x S images.

    Pixels are scaled to [0, 1], standardised with the whole dataset's mean and standard
    deviation (one pair of numbers, so no split leaks into another beyond that), upsampled
    bilinearly to ``input_size`` and replicated to three channels.

    Raises:
        InputError: ``input_size`` is not a positive multiple of 32.

    """
    from sklearn.datasets import load_digits

    _check_input_size(input_size)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    images = images / _DIGITS_MAX_VALUE
    images = (images - images.mean()) / images.std()
    images = _resize(images, input_size).repeat(1, IMAGE_CHANNELS, 1, 1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.int64)
    logger.debug("digits: %d images upsampled to %d", len(labels), input_size)
    return ImageDataset(images, labels, int(labels.max()) + 1)


def load_shapes10_dataset(
    input_size: int = 32, count: int = SHAPES10_IMAGES, seed: int = 0
) -> ImageDataset:
    """Draw the procedurally generated shapes10 set (:mod:`.synthetic`), 3 x S x S images.

    The same arguments give bitwise the same images; nothing is downloaded.

    Raises:
        InputError: ``input_size`` is not a positive multiple of 32, or ``count`` < 10.

    """
    _check_input_size(input_size)
    if count < len(SHAPES10_CLASSES):
        raise InputError(f"shapes10 needs at least {len(SHAPES10_CLASSES)} images, "
                         f"got {count}")
    images, labels = draw_shapes10(count, input_size, seed)
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels),
                        len(SHAPES10_CLASSES))


def load_builtin(name: str, input_size: int = 32) -> ImageDataset:
    """Load a built-in dataset by name, one of :data:`BUILTIN_DATASETS`.

    Raises:
        InputError: An unknown name or a bad ``input_size``.

    """
    if name == "digits":
        return load_digits_dataset(input_size)
    if name == "shapes10":
        return load_shapes10_dataset(input_size)
    raise InputError(f"unknown built-in dataset '{name}' (choose from "
                     f"{', '.join(BUILTIN_DATASETS)})")


def _check_image_geometry(images: np.ndarray, origin: str) -> None:
    _, channels, height, width = images.shape
    if channels not in (1, IMAGE_CHANNELS):
        raise InputError(f"{origin}: array 'images' must have 1 or 3 channels, got {channels}")
    if height != width or height <= 0 or height % _INPUT_STRIDE != 0:
        raise InputError(
            f"{origin}: array 'images' must be square with a side that is a multiple of 32, "
            f"got {height}x{width}"
        )


def load_npz(path: str | os.PathLike[str]) -> ImageDataset:
    """Load a user dataset from a ``.npz`` file with arrays ``images`` and ``labels``.

    The file is read by :func:`enasa_compiler.inputs.read_npz` (the format every command
    shares); training also needs 1 or 3 channels and a square side that is a multiple
    of 32. One-channel images are replicated to three; the class count is the largest
    label plus one.

    Raises:
        InputError: The file is unreadable or not a ``.npz`` archive, an array is missing,
            pickled, of the wrong dtype or shape, the lengths differ, or it is empty.

    """
    origin = os.fspath(path)
    images, labels = read_npz(path)
    assert labels is not None  # read_npz requires them by default
    _check_image_geometry(images, origin)
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.shape[1] == 1:
        tensor = tensor.repeat(1, IMAGE_CHANNELS, 1, 1)
    label_tensor = torch.from_numpy(np.ascontiguousarray(labels))
    logger.debug("%s: %d images of %s", origin, len(label_tensor), tuple(tensor.shape[1:]))
    return ImageDataset(tensor.contiguous(), label_tensor, int(label_tensor.max()) + 1)


def train_val_split(
    dataset: ImageDataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageDataset, ImageDataset]:
    """Split a dataset into training and validation parts, the same way for the same seed.

    The order is a seeded permutation (NumPy ``default_rng``); the validation part takes
    ``round(val_fraction * N)`` images, at least one, and the training part the rest.

    Raises:
        InputError: ``val_fraction`` is outside (0, 1) or either part would be empty.

    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"validation fraction must be in (0, 1), got {val_fraction}")
    count = len(dataset)
    val_count = max(1, round(val_fraction * count))
    if val_count >= count:
        raise InputError(f"cannot split {plural(count, 'image')} into training and "
                         "validation parts")
    order = np.random.default_rng(seed).permutation(count)
    return dataset.subset(order[val_count:]), dataset.subset(order[:val_count])
