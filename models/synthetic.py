"""A seeded, procedurally generated 10-class image set that needs a convolutional network.

The digits set is too easy to tell a deep supernet from a shallow one (a linear model
on its pixels reaches about 95%), and nothing may be downloaded here. This module draws
"shapes10", made offline from a seed, in which the class is a composition that no fixed
pixel template captures:

- five shapes (disk, square, triangle, ring, cross) times two fills (solid, striped)
  give the ten classes: ``label = 2 * shape + fill``;
- every image takes a random dark background colour and a random brighter foreground
  colour (any hue), a random linear background shading, a random centre, size and tilt,
  stripes of random period, orientation and phase, and Gaussian pixel noise; a solid
  shape takes the mean colour of the stripes it would have, so brightness alone does
  not tell solid from striped.

A shape's position and colour change every pixel a linear classifier could read, while
its edges, corners and stripes are local patterns that convolutions pick up anywhere:
logistic regression on the raw pixels stays well below 50% on it (about 37% on 2400
training images; ``bench/nas_statistics.py`` measures it) and a small CNN learns it.
Images are standardised per channel with the set's own mean and standard deviation.

Why the contrast has a fixed sign: with random signs too, logistic regression falls to
about 18%, but the deep, narrow supernets trained here barely move in the minutes a CPU
run affords (one fixed 20-layer path: 17% after 3 epochs, against 45% with the sign
fixed).
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["SHAPES10_CLASSES", "SHAPES10_FILLS", "SHAPES10_SHAPES", "draw_shapes10"]

SHAPES10_SHAPES = ("disk", "square", "triangle", "ring", "cross")
SHAPES10_FILLS = ("solid", "striped")
SHAPES10_CLASSES = tuple(f"{fill} {shape}" for shape in SHAPES10_SHAPES
                         for fill in SHAPES10_FILLS)
"""Class names in label order: ``label = 2 * shape index + fill index``."""

# Geometry as fractions of the image side, so any input size draws the same scenes.
_RADIUS_RANGE = (0.24, 0.4)  # size parameter r of a shape (see _mask)
_STRIPE_PERIOD_RANGE = (0.12, 0.2)
_SHADING_AMPLITUDE = 0.25  # peak-to-peak of the background's linear shading
_NOISE_STD = 0.05
_DARK = (0.0, 0.45)  # each channel of the background colour
_BRIGHT = (0.55, 1.0)  # each channel of the foreground colour
_STRIPE_DIM = 0.45  # striped shapes alternate the foreground and this fraction of it
_RING_INNER = 0.55  # inner radius of a ring, as a fraction of its outer radius
_CROSS_ARM = 0.33  # half-width of a cross's arms, as a fraction of its radius
_MAX_TILT = math.pi / 12  # shapes turn by up to 15 degrees either way


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Any hue, but the shape is brighter than the ground in every channel (module doc).
    return rng.uniform(*_DARK, 3), rng.uniform(*_BRIGHT, 3)


def _mask(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Coverage in [0, 1] of ``shape`` at rotated, centred coordinates (u, v) in pixels.

    Each shape is a signed distance (negative inside), turned into coverage with a
    one-pixel ramp, which antialiases the edge.
    """
    if shape == "disk":
        distance = np.hypot(u, v) - radius
    elif shape == "square":
        distance = np.maximum(np.abs(u), np.abs(v)) - radius * 0.85
    elif shape == "triangle":
        # Equilateral, pointing up in its own frame: the largest of three edge distances.
        edges = [u * math.cos(a) + v * math.sin(a) for a in
                 (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)]
        distance = np.maximum.reduce(edges) - radius * 0.6
    elif shape == "ring":
        middle = radius * (1 + _RING_INNER) / 2
        distance = np.abs(np.hypot(u, v) - middle) - radius * (1 - _RING_INNER) / 2
    elif shape == "cross":
        arm = radius * _CROSS_ARM
        horizontal = np.maximum(np.abs(u) - radius, np.abs(v) - arm)
        vertical = np.maximum(np.abs(v) - radius, np.abs(u) - arm)
        distance = np.minimum(horizontal, vertical)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - distance, 0.0, 1.0)


def _draw_one(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    shape = SHAPES10_SHAPES[label // 2]
    striped = label % 2 == 1
    background, foreground = _colours(rng)
    radius = rng.uniform(*_RADIUS_RANGE) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(-_MAX_TILT, _MAX_TILT)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = x - cx, y - cy
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    coverage = _mask(shape, u, v, radius)[None]
    shade_angle = rng.uniform(0, 2 * math.pi)
    shading = ((x * math.cos(shade_angle) + y * math.sin(shade_angle)) / size - 0.5)
    image = background[:, None, None] + _SHADING_AMPLITUDE * shading[None]
    bright = np.broadcast_to(foreground[:, None, None], (3, size, size))
    # A solid shape takes the stripes' mean colour, so brightness says nothing either.
    fill = bright * (1 + _STRIPE_DIM) / 2
    if striped:
        period = rng.uniform(*_STRIPE_PERIOD_RANGE) * size
        stripe_angle = rng.uniform(0, math.pi)
        phase = rng.uniform(0, period)
        along = x * math.cos(stripe_angle) + y * math.sin(stripe_angle) + phase
        on = (np.mod(along, period) < period / 2)[None]
        fill = np.where(on, bright, bright * _STRIPE_DIM)
    image = image * (1 - coverage) + fill * coverage
    image = image + rng.normal(0.0, _NOISE_STD, image.shape)
    return image.astype(np.float32)


def draw_shapes10(count: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` shapes10 images, the same ones for the same arguments.

    Labels are balanced (``count // 10`` or one more per class) and in a seeded random
    order; images are standardised per channel over the whole set.

    Args:
        count: Images to draw, >= 10.
        size: Image side in pixels.
        seed: Seed of NumPy's ``default_rng``; the only source of randomness.

    Returns:
        ``(images, labels)``: float32 (count, 3, size, size) and int64 (count,).

    Raises:
        ValueError: ``count`` below 10 or ``size`` below 8.

    """
    if count < len(SHAPES10_CLASSES):
        raise ValueError(f"need at least {len(SHAPES10_CLASSES)} images, got {count}")
    if size < 8:
        raise ValueError(f"image side must be >= 8, got {size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(SHAPES10_CLASSES)).astype(np.int64)
    images = np.stack([_draw_one(rng, int(label), size) for label in labels])
    mean = images.mean(axis=(0, 2, 3), keepdims=True)
    std = images.std(axis=(0, 2, 3), keepdims=True)
    images = ((images - mean) / std).astype(np.float32)
    logger.debug("shapes10: %d images of %d px from seed %d", count, size, seed)
    return images, labels
