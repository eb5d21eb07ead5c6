"""Camera frames: decoding the fields of ROS image messages, and RGB conversion.

Works on anything with the fields of ``sensor_msgs/Image`` or
``sensor_msgs/CompressedImage`` (rclpy messages, rosbags messages), so the
node, the bag tools and the importers share one implementation. Needs only
NumPy and OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError

# encoding -> (channels, channel order for to_rgb)
ENCODINGS = {
    "rgb8": (3, "rgb"),
    "bgr8": (3, "bgr"),
    "rgba8": (4, "rgba"),
    "bgra8": (4, "bgra"),
    "mono8": (1, "rgb"),
    "8uc1": (1, "rgb"),
    "8uc3": (3, "bgr"),
}


def _bytes_of(data) -> np.ndarray:
    """A message's ``data`` as a read-only uint8 array, without a copy where it exposes a buffer.

    rclpy gives ``array.array``, rosbags a NumPy array, tests ``bytes``: all are
    viewed in place (a raw 640 px frame is 1.2 MB); anything else (a list) is copied.
    """
    try:
        buf = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError):  # no buffer, or one of another item size
        buf = np.frombuffer(bytes(data), np.uint8)
    buf.flags.writeable = False  # a view of the message: the decoded image must not write into it
    return buf


def decode_raw(encoding: str, height: int, width: int, step: int, data) -> tuple[np.ndarray, str]:
    """Pixels of a raw image -> (array (H, W[, C]) uint8, channel order)."""
    enc = encoding.lower()
    if enc not in ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    channels, order = ENCODINGS[enc]
    buf = _bytes_of(data)
    if height == 0 or width == 0 or step < width * channels or buf.size < height * step:
        raise InputError(f"image of {width}x{height} px with step {step} carries {buf.size} bytes: corrupt")
    rows = buf[: height * step].reshape(height, step)[:, : width * channels]
    return (rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)), order


def decode_compressed(data, fmt: str = "") -> tuple[np.ndarray, str]:
    """A JPEG/PNG payload -> (BGR array, "bgr")."""
    buf = _bytes_of(data)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise InputError(f"cannot decode the compressed image ({fmt or 'unknown format'}, {buf.size} bytes)")
    return img, "bgr"


def decode_message(msg) -> tuple[np.ndarray, str]:
    """Either kind of image message, told apart by its fields."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg.data, msg.format)
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def to_rgb(image: np.ndarray, encoding: str = "rgb") -> np.ndarray:
    """An image as contiguous RGB uint8 (H, W, 3).

    ``encoding`` is rgb, bgr, rgba, bgra or mono; a clear :class:`InputError`
    for anything else.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"expected an 8-bit image, got dtype {image.dtype}")
    if image.size == 0 or image.ndim not in (2, 3) or min(image.shape[:2]) < 8:
        raise InputError(f"image of shape {image.shape} is empty or too small")
    if image.ndim == 2 or image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2))
    channels = {"rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4}
    if encoding not in channels or image.shape[2] != channels[encoding]:
        raise InputError(f"image of shape {image.shape} does not match encoding {encoding!r}")
    rgb = image[..., :3] if encoding.startswith("rgb") else image[..., 2::-1]
    return np.ascontiguousarray(rgb)
