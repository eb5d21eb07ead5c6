"""A downward-looking pinhole camera over a flat ground: poses and projection.

World frame: a region's local frame, east/north/up [m], ground at up = 0.
Camera frame: x right, y down, z along the optical axis. With no tilt the
camera looks straight down and the top of its image points to ``yaw_deg``
(clockwise from north, 0 = north up). ``pitch_deg`` tilts the view towards
the top of the image, ``roll_deg`` towards its right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import GeoError


@dataclass(frozen=True)
class Pinhole:
    """Image ``width_px`` x ``height_px`` with a horizontal field of view ``hfov_deg``."""

    width_px: int = 224
    height_px: int = 224
    hfov_deg: float = 60.0

    @property
    def focal_px(self) -> float:
        """Focal length [px], from the image width and the horizontal field of view."""
        return self.width_px / 2 / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name of the intrinsic matrix
        """Intrinsic matrix (3x3) [px]; the principal point is the image centre, pixel centres at integers."""
        f = self.focal_px
        return np.array([[f, 0, (self.width_px - 1) / 2], [0, f, (self.height_px - 1) / 2], [0, 0, 1.0]])

    def altitude_for_footprint(self, width_m: float) -> float:
        """Altitude [m] at which a nadir view is ``width_m`` metres wide on the ground."""
        return width_m / 2 / math.tan(math.radians(self.hfov_deg) / 2)


@dataclass(frozen=True)
class CameraPose:
    """Camera position (east, north) [m] in a local frame, ``altitude_m`` above ground, and orientation [deg].

    The orientation angles are defined in the module docstring.
    """

    east_m: float
    north_m: float
    altitude_m: float
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0

    def rotation(self) -> np.ndarray:
        """World-from-camera rotation (3x3)."""
        psi = math.radians(self.yaw_deg)
        base = np.array(
            [
                [math.cos(psi), -math.sin(psi), 0.0],
                [-math.sin(psi), -math.cos(psi), 0.0],
                [0.0, 0.0, -1.0],
            ]
        ).T  # columns: camera x, y, z in world coordinates
        p, r = math.radians(self.pitch_deg), math.radians(self.roll_deg)
        rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        ry = np.array([[math.cos(r), 0, math.sin(r)], [0, 1, 0], [-math.sin(r), 0, math.cos(r)]])
        return base @ rx @ ry


def image_to_ground(camera: Pinhole, pose: CameraPose) -> np.ndarray:
    """Homography (3x3): image pixel (u, v, 1) -> ground (east, north, 1) [m]."""
    if pose.altitude_m <= 0:
        raise GeoError(f"camera altitude {pose.altitude_m} m must be above the ground")
    h = pose.altitude_m
    m = np.array([[h, 0, -pose.east_m], [0, h, -pose.north_m], [0, 0, -1.0]])
    return m @ pose.rotation() @ np.linalg.inv(camera.K)


def ground_to_image(camera: Pinhole, pose: CameraPose, east_m, north_m) -> tuple[np.ndarray, np.ndarray]:
    """Project ground points [m] into the image: (u, v) [px]."""
    hom = np.linalg.inv(image_to_ground(camera, pose))
    pts = hom @ np.stack([np.asarray(east_m, float), np.asarray(north_m, float), np.ones_like(east_m, float)])
    return pts[0] / pts[2], pts[1] / pts[2]


def ground_footprint(camera: Pinhole, pose: CameraPose) -> np.ndarray:
    """(4, 2) ground (east, north) [m] of the image corners: TL, TR, BR, BL."""
    w, h = camera.width_px - 1, camera.height_px - 1
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float).T
    g = image_to_ground(camera, pose) @ corners
    if (g[2] <= 0).any():
        raise GeoError("the camera sees the horizon; tilt and field of view are too large")
    return (g[:2] / g[2]).T
