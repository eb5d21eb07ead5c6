"""Photometric changes of camera frames (never geometric: labels stay true)."""

from __future__ import annotations

import cv2
import numpy as np


def photometric(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random exposure, contrast, gamma, white balance, saturation, blur and sensor noise.

    ``strength`` 0 leaves the image as it is.
    """
    if strength <= 0:
        return image
    x = image.astype(np.float32) / 255.0
    s = strength
    x = x * rng.uniform(1 - 0.3 * s, 1 + 0.3 * s)  # exposure
    x = (x - x.mean()) * rng.uniform(1 - 0.25 * s, 1 + 0.25 * s) + x.mean()  # contrast
    x = np.clip(x, 0, 1) ** rng.uniform(1 - 0.2 * s, 1 + 0.25 * s)  # gamma
    x = x * rng.uniform(1 - 0.08 * s, 1 + 0.08 * s, size=3)  # white balance
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - 0.3 * s, 1 + 0.2 * s)  # saturation
    if rng.random() < 0.3 * s:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.2 * s + 0.3))
    x = x + rng.normal(0, rng.uniform(0, 0.02 * s), x.shape).astype(np.float32)  # sensor noise
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def motion_blur(image: np.ndarray, length_px: float, angle_deg: float) -> np.ndarray:
    """Blur along a line of ``length_px`` pixels at ``angle_deg`` (image x axis = 0)."""
    n = int(round(length_px))
    if n < 2:
        return image
    kernel = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    dx, dy = np.cos(np.radians(angle_deg)) * c, np.sin(np.radians(angle_deg)) * c
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def street(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Augment a street-level photo: a random crop, then colour and blur.

    The crop keeps 80-100 % of each side (the camera position, the label, is
    unchanged). No flips or rotations: they would change what the view shows
    of the place.
    """
    h, w = image.shape[:2]
    keep = rng.uniform(1 - 0.2 * strength, 1.0)
    ch, cw = max(8, int(h * keep)), max(8, int(w * keep))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return photometric(np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw]), rng, strength)
