"""Rendering what a pinhole camera over a flat ground sees of an orthophoto.

The camera model (:class:`Pinhole`, :class:`CameraPose`, projections) lives in
:mod:`jzi_ros.geo.camera`, where the localizer's registration uses it too.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..geo.camera import CameraPose, Pinhole, ground_footprint, ground_to_image, image_to_ground
from ..geo.ortho import LocalOrtho

__all__ = ["CameraPose", "Pinhole", "ground_footprint", "ground_to_image", "image_to_ground", "render_frame"]


def render_frame(ortho: LocalOrtho, camera: Pinhole, pose: CameraPose) -> tuple[np.ndarray, float]:
    """Render what the camera sees of the orthophoto: (RGB uint8 image, covered share).

    The pyramid level is chosen so that no detail finer than a camera pixel
    aliases into the frame.
    """
    ground_gsd = pose.altitude_m / camera.focal_px / max(math.cos(math.radians(abs(pose.pitch_deg))), 0.2)
    image, gsd = ortho.level(ground_gsd)
    m = ortho.pixel_matrix(gsd) @ image_to_ground(camera, pose)  # image px -> ortho px
    size = (camera.width_px, camera.height_px)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    frame = cv2.warpPerspective(image, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # coverage from an 8 x 8 lattice of image points, looked up in the full-resolution mask
    u, v = np.meshgrid(np.linspace(0, size[0] - 1, 8), np.linspace(0, size[1] - 1, 8))
    pts = (
        ortho.pixel_matrix(ortho.gsd_m) @ image_to_ground(camera, pose) @ np.stack([u.ravel(), v.ravel(), np.ones(64)])
    )
    col, row = np.round(pts[0] / pts[2]).astype(int), np.round(pts[1] / pts[2]).astype(int)
    inside = (col >= 0) & (row >= 0) & (col < ortho.valid.shape[1]) & (row < ortho.valid.shape[0])
    covered = np.zeros(64, bool)
    covered[inside] = ortho.valid[row[inside], col[inside]]
    return frame, float(covered.mean())
