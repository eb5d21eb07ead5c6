"""Photometric changes of camera frames (never geometric: labels stay true).

Two kinds of change live here:

- ``photometric``, ``motion_blur`` and ``street``: the camera's own variation
  (exposure, white balance, noise, blur, a small crop of street photos).
- The *domain* augmentations, ``DOMAIN_OPS`` applied by ``domain``: each op
  models one gap between the orthophoto the map is built from and the camera
  that flies over it (another sensor, year or season): ``grey``
  (panchromatic), ``false_colour`` (colour infrared, other band order),
  ``curve`` (radiometric response), ``season`` (vegetation hue), ``haze``
  (airlight), ``resolution`` (ground sampling), ``shadow`` (sun and
  illumination), ``lens`` (a real lens's frame after the localizer rectified
  it: softer where it squeezed, black where it did not see) and ``jpeg``
  (compression).

Every domain op maps an (H, W, 3) uint8 RGB image and a
``np.random.Generator`` to a new image of the same shape and dtype, draws its
random strength from that generator only (the same generator state gives the
same result) and never moves content by more than a fraction of a pixel, so
the label, the camera position, stays true. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ..geo.lens import Lens
from .errors import DataError


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


# Domain augmentations: orthophoto vs. camera (another sensor, year or season).

_RAMP = np.arange(256, dtype=np.float32) / 255.0  # the 256 uint8 levels in [0, 1]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Round values in [0, 255] (float) to uint8, clipping what lies outside."""
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def grey(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Panchromatic sensor: one random weighting of the bands, replicated to three equal channels.

    The red weight is drawn high (0.25-0.6) as in panchromatic bands that reach
    into red and near infrared, green 0.25-0.6, blue 0-0.2; the weights sum to 1
    so mean brightness is kept.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the band weights.

    Returns:
        (H, W, 3) uint8 with R = G = B.
    """
    w = rng.uniform([0.25, 0.25, 0.0], [0.6, 0.6, 0.2]).astype(np.float32)
    w /= w.sum()
    return cv2.transform(image, np.tile(w, (3, 1)))  # (H, W, 3), each output row the same weights


# Band orders that take green out of the green channel (output channel <- input channel).
_ORDERS = ((1, 0, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1))
# Colour infrared from RGB: R <- NIR proxy (bright where green dominates, as vegetation is in NIR),
# G <- red, B <- green.
_CIR = np.array([[-0.5, 1.5, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


def false_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour infrared or another band order: vegetation no longer looks green.

    Half the time a colour-infrared look (a near-infrared proxy, bright on
    green-dominant pixels, shown as red; red shown as green; green as blue),
    otherwise a random permutation that moves green out of the green channel;
    either mixing matrix is perturbed by a little noise (std 0.04 per entry).

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the band mapping.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if rng.random() < 0.5:
        m = _CIR.copy()
    else:
        m = np.eye(3, dtype=np.float32)[list(_ORDERS[rng.integers(len(_ORDERS))])]
    m += rng.normal(0.0, 0.04, (3, 3)).astype(np.float32)
    return cv2.transform(image, m)  # saturates to [0, 255]


def curve(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-linear radiometric response: a random monotone tone curve, slightly different per channel.

    The curve is piecewise linear through 5 control points (random black level
    0-0.08, white level 0.9-1, random increments between them), followed by a
    per-channel gamma of 0.9-1.1; applied as a lookup table.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the control points and gammas.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    lo, hi = rng.uniform(0.0, 0.08), rng.uniform(0.9, 1.0)
    steps = rng.uniform(0.3, 1.7, 4)
    knots_y = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(steps) / steps.sum()])  # (5,), increasing
    tone = np.interp(_RAMP, np.linspace(0.0, 1.0, 5), knots_y)  # (256,)
    lut = tone[:, None] ** rng.uniform(0.9, 1.1, 3)  # (256, 3): one curve per channel
    return cv2.LUT(image, _to_uint8(lut * 255).reshape(256, 1, 3))


# Vegetation weight per OpenCV hue (0-179, degrees / 2): 1 at 110 degrees, 0 beyond +-60 degrees.
_GREEN_HUE = np.clip(1.0 - np.abs(np.arange(180, dtype=np.float32) - 55.0) / 30.0, 0.0, 1.0)
# Weight per saturation (0-255): grey pixels (below ~25) keep their colour.
_SATURATED = np.clip((np.arange(256, dtype=np.float32) - 25.0) / 50.0, 0.0, 1.0)


def season(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seasonal change of vegetation: green turns yellow/brown or loses saturation.

    Pixels whose hue lies in the green band (50-170 degrees) and that are
    saturated change in proportion to how green they are; grey pixels (roads,
    roofs) barely change. Two thirds of the time autumn or a dry summer (hue
    pulled towards 20-50 degrees, slightly darker), otherwise winter
    (desaturated, slightly brighter); the amount is 0.4-1.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the season and amount.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    amount = rng.uniform(0.4, 1.0)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # (H, W, 3), H in 0-179
    h, s, v = (hsv[..., i].astype(np.float32) for i in range(3))
    w = amount * _GREEN_HUE[hsv[..., 0]] * _SATURATED[hsv[..., 1]]  # (H, W) in [0, 1]
    if rng.random() < 2 / 3:  # autumn / dry summer
        h = h + w * (rng.uniform(10.0, 25.0) - h)
        v = v * (1.0 - rng.uniform(0.0, 0.25) * w)
    else:  # winter
        s = s * (1.0 - rng.uniform(0.6, 0.95) * w)
        v = v * (1.0 + rng.uniform(0.0, 0.2) * w)
    out = cv2.merge([np.clip(h + 0.5, 0, 179).astype(np.uint8), _to_uint8(s), _to_uint8(v)])
    return cv2.cvtColor(out, cv2.COLOR_HSV2RGB)


def haze(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Atmospheric haze: blend towards a bright bluish-grey airlight, ``x * (1 - a) + A * a``.

    The airlight A has brightness 0.75-0.95 (of full scale) with blue above
    green above red; the strength a is 0.15-0.5.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the airlight and strength.

    Returns:
        (H, W, 3) uint8 RGB with lower contrast.
    """
    a = rng.uniform(0.15, 0.5)
    bright = rng.uniform(0.75, 0.95) * 255
    tint = rng.uniform(0.0, 0.08)
    airlight = bright * np.array([1.0 - tint, 1.0 - tint / 2, 1.0], np.float32)  # (3,) RGB, bluish
    m = np.hstack([(1.0 - a) * np.eye(3, dtype=np.float32), a * airlight[:, None]])  # (3, 4): scale, offset
    return cv2.transform(image, m)  # rounds and saturates to uint8


def resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss: down-sample by 1.5-4 and up-sample back, or (one time in four) a Gaussian blur.

    ``cv2.resize`` keeps pixel centres aligned, so content does not move.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the factor or blur.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    h, w = image.shape[:2]
    if rng.random() < 0.25:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0))
    factor = rng.uniform(1.5, 4.0)
    small = cv2.resize(image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def shadow(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Other sun and shadows: lift or deepen dark regions, under a soft illumination gradient.

    Luminance Y (in [0, 1]) below a threshold t of 0.2-0.45 becomes
    ``t * (Y / t) ** g`` with g 0.55-0.8 (shadows lifted) or 1.25-1.8 (deepened),
    continuous and monotone at t; the colour of each pixel is scaled with its
    luminance. A linear gain of +-(0.1-0.3) across the frame, in a random
    direction, models uneven illumination.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of threshold, gamma and gradient.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    t = rng.uniform(0.2, 0.45)
    g = rng.uniform(0.55, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.8)
    y = np.maximum(_RAMP, 1e-3)
    gain_lut = np.where(_RAMP < t, t * (y / t) ** g / y, 1.0).astype(np.float32)  # (256,) new Y / Y
    gain = gain_lut[cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)]  # (H, W), by Rec. 601 luminance
    h, w = image.shape[:2]
    angle = rng.uniform(0.0, 2 * np.pi)
    u = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * np.cos(angle)  # (1, W)
    v = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None] * np.sin(angle)  # (H, 1)
    gain = gain * (1.0 + rng.uniform(0.1, 0.3) * 2 * (u + v))  # (H, W)
    return cv2.multiply(image, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)  # rounds and saturates


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG compression at a random quality of 20-70.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: source of the quality.

    Returns:
        (H, W, 3) uint8 RGB, decoded.

    Raises:
        DataError: when OpenCV cannot encode or decode the image.
    """
    quality = int(rng.integers(20, 71))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV's codec expects BGR
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise DataError(f"JPEG round trip of a {image.shape} image failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def lens(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A frame as the localizer hands a real lens's frame to the model: distorted, then rectified back.

    A barrel lens (k1 -0.3..-0.05, k2 0..0.12, a 60° pinhole's focal length)
    with its principal point up to 4 % of the side off centre takes the
    frame; the localizer's rectification (:meth:`~jzi_ros.geo.lens.Lens.rectify`)
    undoes it. What comes back is the same picture, resampled twice (softer
    where the lens squeezed it) and black where the lens did not see.
    """
    h, w = image.shape[:2]
    f = w / 2 / np.tan(np.radians(30.0))
    cx = (w - 1) / 2 + rng.uniform(-0.04, 0.04) * w
    cy = (h - 1) / 2 + rng.uniform(-0.04, 0.04) * h
    real = Lens(w, h, (f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0), (rng.uniform(-0.3, -0.05), rng.uniform(0.0, 0.12)))
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    seen = real.undistort_points(np.c_[u.ravel(), v.ravel()]).reshape(h, w, 2).astype(np.float32)
    raw = cv2.remap(image, seen[..., 0], seen[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return real.rectify(raw)


DOMAIN_OPS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "grey": grey,
    "false_colour": false_colour,
    "curve": curve,
    "season": season,
    "haze": haze,
    "resolution": resolution,
    "shadow": shadow,
    "lens": lens,
    "jpeg": jpeg,
}


def domain(
    image: np.ndarray, rng: np.random.Generator, ops: Sequence[str] = tuple(DOMAIN_OPS), p: float = 0.5
) -> np.ndarray:
    """Apply each named op with probability p, in DOMAIN_OPS order (jpeg last).

    Args:
        image: (H, W, 3) uint8 RGB; not modified.
        rng: source of every random choice (the same state gives the same result).
        ops: names of ``DOMAIN_OPS`` to consider; their order here does not matter.
        p: probability in [0, 1] that each named op is applied.

    Returns:
        (H, W, 3) uint8 RGB; ``image`` itself when no op was applied.

    Raises:
        DataError: when ``ops`` names an unknown op or ``p`` lies outside [0, 1].
    """
    unknown = [name for name in ops if name not in DOMAIN_OPS]
    if unknown:
        raise DataError(f"unknown domain augmentation {unknown[0]!r}; known: {', '.join(DOMAIN_OPS)}")
    if not 0.0 <= p <= 1.0:
        raise DataError(f"domain augmentation probability must lie in [0, 1], got {p}")
    wanted = set(ops)
    for name, op in DOMAIN_OPS.items():
        if name in wanted and rng.random() < p:
            image = op(image, rng)
    return image
