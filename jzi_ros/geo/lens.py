"""A real camera's calibration, as ``sensor_msgs/CameraInfo`` carries it, and its rectification to an ideal pinhole.

A :class:`Lens` holds the calibrated image size, the intrinsic matrix K
(fx, fy, cx, cy) and the distortion coefficients D of one of ROS's models:
``plumb_bob`` and ``rational_polynomial`` (OpenCV's k1, k2, p1, p2, k3[, k4,
k5, k6]) or ``equidistant`` (OpenCV's fisheye k1..k4). The localizer works on
an ideal pinhole (:class:`~jzi_ros.geo.camera.Pinhole`: principal point in
the centre, square pixels, no distortion); :meth:`Lens.rectify` remaps a
frame into that pinhole (:attr:`Lens.ideal`, the same size and ``fx``), as
``image_proc`` rectifies, with the remap tables cached per calibration. A
frame of another size than the calibration's (binning, a resized stream)
takes the calibration scaled to it (:meth:`Lens.scaled`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .camera import Pinhole
from .errors import GeoError

UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
"""When inverting the lens stops: after 100 iterations or a step below 1e-10 (normalized image units)."""
MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
"""The distortion models of ``sensor_msgs/CameraInfo`` that a :class:`Lens` takes."""


@dataclass(frozen=True)
class Lens:
    """A calibrated camera: ``width_px`` x ``height_px``, intrinsics ``k`` (row-major 3x3), distortion ``d``.

    ``model``: how ``d`` bends the rays (:data:`MODELS`).

    Raises:
        GeoError: a size or focal length that is not positive, coefficients that are not finite, an unknown model.
    """

    width_px: int
    height_px: int
    k: tuple[float, ...]
    d: tuple[float, ...] = ()
    model: str = "plumb_bob"

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", tuple(float(v) for v in np.asarray(self.k, np.float64).reshape(-1)))
        object.__setattr__(self, "d", tuple(float(v) for v in np.asarray(self.d, np.float64).reshape(-1)))
        model = self.model or "plumb_bob"  # an empty model with zero D: a rectified stream
        object.__setattr__(self, "model", model)
        if model not in MODELS:
            raise GeoError(f"distortion model must be one of {', '.join(MODELS)}, not {model!r}")
        if len(self.k) != 9 or not all(map(math.isfinite, self.k + self.d)):
            raise GeoError(f"a camera needs a finite 3x3 K and finite D, not K={self.k} D={self.d}")
        if not (self.width_px > 0 and self.height_px > 0 and self.k[0] > 0 and self.k[4] > 0):
            raise GeoError(
                f"a camera needs a size and positive focal lengths: {self.width_px}x{self.height_px}, K={self.k}"
            )
        if model == "equidistant" and any(self.d) and len(self.d) < 4:
            raise GeoError(f"the equidistant model takes four coefficients, not {len(self.d)}")

    @classmethod
    def from_camera_info(
        cls,
        width: int,
        height: int,
        k,
        d=(),
        model: str = "plumb_bob",
        binning: tuple[int, int] = (0, 0),
        roi: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> Lens:
        """The lens of the frames a ``sensor_msgs/CameraInfo`` describes.

        ``k``, ``d``, ``model`` (``distortion_model``), ``width`` and
        ``height`` are the full sensor's calibration; ``roi`` (x_offset,
        y_offset, width, height; zero width: the whole sensor) and ``binning``
        (x, y; 0 or 1: none) say which part of it, at which resolution, the
        published frames hold, as image_geometry reads them.
        """
        kk = np.array(k, np.float64).reshape(3, 3)
        x0, y0, roi_w, roi_h = (int(v) for v in roi)
        if roi_w > 0 and roi_h > 0:
            kk[0, 2] -= x0
            kk[1, 2] -= y0
            width, height = roi_w, roi_h
        bx, by = (max(1, int(b)) for b in binning)
        # binned pixel j covers full pixels bx j .. bx j + bx - 1: its centre is at bx j + (bx - 1) / 2
        kk[0, 2] -= (bx - 1) / 2
        kk[1, 2] -= (by - 1) / 2
        kk[0] /= bx
        kk[1] /= by
        return cls(int(width) // bx, int(height) // by, tuple(kk.reshape(-1)), tuple(d), model)

    @classmethod
    def of(cls, camera: Pinhole) -> Lens:
        """The lens of an ideal pinhole (no distortion, principal point centred)."""
        return cls(camera.width_px, camera.height_px, tuple(camera.K.reshape(-1)))

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name of the intrinsic matrix
        """Intrinsic matrix (3x3) [px]."""
        return np.array(self.k, np.float64).reshape(3, 3)

    @property
    def ideal(self) -> Pinhole:
        """The pinhole a rectified frame is seen through: this size, this ``fx``, centred, no distortion."""
        return Pinhole.from_focal(self.width_px, self.height_px, self.k[0])

    @property
    def is_ideal(self) -> bool:
        """Whether frames need no rectification: no distortion, square pixels, the principal point centred (0.5 px)."""
        k = self.K
        centred = abs(k[0, 2] - (self.width_px - 1) / 2) <= 0.5 and abs(k[1, 2] - (self.height_px - 1) / 2) <= 0.5
        return not any(self.d) and centred and abs(k[0, 0] - k[1, 1]) <= 1e-6 * k[0, 0] and k[0, 1] == 0.0

    def scaled(self, width_px: int, height_px: int) -> Lens:
        """The same lens for frames of another size (binning, a resized stream): K scaled, D unchanged."""
        if (width_px, height_px) == (self.width_px, self.height_px):
            return self
        sx, sy = width_px / self.width_px, height_px / self.height_px
        k = self.K
        k[0] *= sx
        k[1] *= sy
        k[0, 2] = (self.k[2] + 0.5) * sx - 0.5  # pixel centres at integers
        k[1, 2] = (self.k[5] + 0.5) * sy - 0.5
        return Lens(width_px, height_px, tuple(k.reshape(-1)), self.d, self.model)

    def rectify(self, image: np.ndarray) -> np.ndarray:
        """``image`` (this lens's size) as :attr:`ideal` sees it; what the lens did not see is black."""
        if image.shape[:2] != (self.height_px, self.width_px):
            raise GeoError(f"a {image.shape[1]}x{image.shape[0]} frame for a {self.width_px}x{self.height_px} camera")
        if self.is_ideal:
            return image
        map_x, map_y = _maps(self)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def undistort_points(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of a raw frame -> the same points' pixels in the rectified frame (:attr:`ideal`)."""
        pts = np.asarray(pixels, np.float64).reshape(-1, 1, 2)
        target = self.ideal.K
        if self.model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, self.K, self._d(), None, target, criteria=UNDISTORT_CRITERIA)
        else:  # OpenCV's default of five iterations leaves tenths of a pixel in a strong lens's corners
            out = cv2.undistortPointsIter(pts, self.K, self._d(), np.eye(3), target, UNDISTORT_CRITERIA)
        return out.reshape(-1, 2)

    def _d(self) -> np.ndarray:
        """D as OpenCV takes it: padded with zeros to a length it knows (4 for fisheye; 5, 8, 12 or 14)."""
        if self.model == "equidistant":
            return np.asarray((self.d + (0.0,) * 4)[:4], np.float64)
        n = next((k for k in (5, 8, 12, 14) if k >= len(self.d)), len(self.d))
        return np.asarray(self.d + (0.0,) * (n - len(self.d)), np.float64)

    def project(self, points: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
        """Points (N, 3) of the world -> their pixels (N, 2) in the raw frame (OpenCV's ``projectPoints``).

        ``rvec``, ``tvec``: the camera-from-world rotation (a rotation vector)
        and translation, in OpenCV's camera frame (x right, y down, z forward).
        Points behind the camera come out too: check their depth first.
        """
        pts = np.asarray(points, np.float64).reshape(-1, 1, 3)
        rvec, tvec = np.asarray(rvec, np.float64).reshape(3, 1), np.asarray(tvec, np.float64).reshape(3, 1)
        if self.model == "equidistant":
            out, _ = cv2.fisheye.projectPoints(pts, rvec, tvec, self.K, self._d())
        else:
            out, _ = cv2.projectPoints(pts, rvec, tvec, self.K, self._d())
        return out.reshape(-1, 2)

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of the raw frame -> the directions (N, 3) they look along, camera frame, z = 1."""
        pts = np.asarray(pixels, np.float64).reshape(-1, 1, 2)
        if self.model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, self.K, self._d(), criteria=UNDISTORT_CRITERIA)
        else:
            out = cv2.undistortPointsIter(pts, self.K, self._d(), np.eye(3), np.eye(3), UNDISTORT_CRITERIA)
        return np.c_[out.reshape(-1, 2), np.ones(len(pts))]

    @property
    def field(self) -> tuple[float, float, float, float]:
        """The box (x0, x1, y0, y1) of normalized image coordinates (z = 1) that the frame's border encloses.

        A polynomial lens model folds back beyond its calibrated field: points
        outside this box can project into the frame although the lens does
        not see them.
        """
        return _field(self)


def lens_of(msg) -> Lens:
    """The :class:`Lens` of a ``sensor_msgs/CameraInfo`` (rclpy's or rosbags' message: its fields are read by name).

    Raises:
        GeoError: the calibration cannot be used (no size, a zero focal length, an unknown model).
    """
    roi = msg.roi
    return Lens.from_camera_info(
        int(msg.width),
        int(msg.height),
        list(msg.k),
        list(msg.d),
        str(msg.distortion_model),
        (int(msg.binning_x), int(msg.binning_y)),
        (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)),
    )


@lru_cache(maxsize=8)
def _maps(lens: Lens) -> tuple[np.ndarray, np.ndarray]:
    """Remap tables (H, W) float32: for each pixel of the rectified frame, where it lies in the raw one."""
    size = (lens.width_px, lens.height_px)
    target = lens.ideal.K
    if lens.model == "equidistant":
        return cv2.fisheye.initUndistortRectifyMap(lens.K, lens._d(), np.eye(3), target, size, cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(lens.K, lens._d(), None, target, size, cv2.CV_32FC1)


@lru_cache(maxsize=8)
def _field(lens: Lens) -> tuple[float, float, float, float]:
    w, h = lens.width_px - 1, lens.height_px - 1
    t = np.linspace(0.0, 1.0, 33)
    border = np.r_[np.c_[t * w, 0 * t], np.c_[t * w, 0 * t + h], np.c_[0 * t, t * h], np.c_[0 * t + w, t * h]]
    rays = lens.rays(border)
    return float(rays[:, 0].min()), float(rays[:, 0].max()), float(rays[:, 1].min()), float(rays[:, 1].max())
