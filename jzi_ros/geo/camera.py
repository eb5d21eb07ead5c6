"""A downward-looking pinhole camera over a flat ground: poses, projection, and the body it is mounted on.

World frame: a region's local frame, east/north/up [m], ground at up = 0.
Camera frame: x right, y down, z along the optical axis. With no tilt the
camera looks straight down and the top of its image points to ``yaw_deg``
(clockwise from north, 0 = north up). ``pitch_deg`` tilts the view towards
the top of the image, ``roll_deg`` towards its right.

Body frame (the robot's, as its IMU reports it; REP-103): x forward, y left,
z up, its attitude a world-from-body rotation in ENU, as a quaternion
(x, y, z, w). Body yaw 0 faces east and grows counter-clockwise (90 = north);
positive pitch puts the nose down, positive roll the right side down.

The camera is mounted (:class:`Mount`) looking along the body's -z with the
top of its image towards the body's +x (forward): on a level body facing
north the image is north up (camera yaw 0), facing east its top is east
(camera yaw 90). :func:`camera_pose_from_body` and :func:`body_quaternion`
convert between a body attitude and a :class:`CameraPose`;
:func:`heading_deg` is the image top's heading, which equals
``CameraPose.yaw_deg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
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

    @classmethod
    def from_focal(cls, width_px: int, height_px: int, focal_px: float) -> Pinhole:
        """The camera of a calibrated focal length [px] (``sensor_msgs/CameraInfo``'s fx); principal point centred."""
        if not (width_px > 0 and height_px > 0 and focal_px > 0 and math.isfinite(focal_px)):
            raise GeoError(f"intrinsics need a size and a focal length: {width_px}x{height_px} px, fx {focal_px}")
        return cls(int(width_px), int(height_px), math.degrees(2 * math.atan(width_px / 2 / focal_px)))

    def altitude_for_footprint(self, width_m: float) -> float:
        """Altitude [m] at which a nadir view is ``width_m`` metres wide on the ground."""
        return width_m / 2 / math.tan(math.radians(self.hfov_deg) / 2)

    def footprint_at(self, altitude_m: float) -> float:
        """Width [m] on flat ground of a nadir view from ``altitude_m`` (:meth:`altitude_for_footprint`'s inverse)."""
        return 2 * altitude_m * math.tan(math.radians(self.hfov_deg) / 2)


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

    def facing_deg(self) -> float:
        """Where the camera faces on the ground [deg, clockwise from north].

        The image's top for a camera that looks down (within 45° of nadir),
        its optical axis for one that looks ahead (a street-level camera,
        whose image top points up and whose ``yaw_deg`` says little).
        """
        r = self.rotation()
        axis = r[:, 2] if r[2, 2] > -math.sqrt(0.5) else -r[:, 1]
        return math.degrees(math.atan2(axis[0], axis[1])) % 360.0


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


def north_up_homography(camera: Pinhole, yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Homography (3x3): pixel of a frame taken at this orientation -> pixel of the same camera turned north up, nadir.

    The camera only turns about its centre, so the warp needs neither the
    height nor a flat ground.
    """
    actual = CameraPose(0.0, 0.0, 1.0, yaw_deg, pitch_deg, roll_deg).rotation()
    nadir = CameraPose(0.0, 0.0, 1.0).rotation()
    k = camera.K
    return k @ nadir.T @ actual @ np.linalg.inv(k)


def north_up(
    image: np.ndarray, camera: Pinhole, yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0
) -> np.ndarray:
    """The frame as its camera would see it looking straight down with the image's top to the north.

    Same size and intrinsics as ``image`` (whose size ``camera`` describes);
    what the original frame does not show is black. A model trained with
    ``jzi train --heading-known`` sees every frame this way.
    """
    if image.shape[:2] != (camera.height_px, camera.width_px):
        raise GeoError(f"a {image.shape[1]}x{image.shape[0]} frame for a {camera.width_px}x{camera.height_px} camera")
    hom = north_up_homography(camera, yaw_deg, pitch_deg, roll_deg)
    size = (camera.width_px, camera.height_px)
    return cv2.warpPerspective(image, hom, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def ground_footprint(camera: Pinhole, pose: CameraPose) -> np.ndarray:
    """(4, 2) ground (east, north) [m] of the image corners: TL, TR, BR, BL."""
    w, h = camera.width_px - 1, camera.height_px - 1
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float).T
    g = image_to_ground(camera, pose) @ corners
    if (g[2] <= 0).any():
        raise GeoError("the camera sees the horizon; tilt and field of view are too large")
    return (g[:2] / g[2]).T


@dataclass(frozen=True)
class Mount:
    """How the camera sits on the body.

    By default the camera looks straight down the body's -z with the top of
    its image towards the body's +x (forward). ``pitch_deg`` tilts the optical
    axis forward (towards +x) from nadir; ``image_rotation_deg`` turns the
    image about the optical axis, its top ``image_rotation_deg`` clockwise
    from forward as seen from above (90: the image top points to the body's
    right).
    """

    pitch_deg: float = 0.0
    image_rotation_deg: float = 0.0

    def body_from_camera(self) -> np.ndarray:
        """Body-from-camera rotation (3x3): its columns are the camera's x, y, z axes in the body frame."""
        nadir = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # x right, y back, z down
        t = math.radians(self.pitch_deg)
        tilt = np.array([[math.cos(t), 0.0, -math.sin(t)], [0.0, 1.0, 0.0], [math.sin(t), 0.0, math.cos(t)]])
        g = math.radians(self.image_rotation_deg)
        turn = np.array([[math.cos(g), -math.sin(g), 0.0], [math.sin(g), math.cos(g), 0.0], [0.0, 0.0, 1.0]])
        return tilt @ nadir @ turn  # turn about the optical axis, then tilt about the body's y


def rotation_from_quaternion(quaternion_xyzw) -> np.ndarray:
    """Rotation matrix (3x3) of a quaternion (x, y, z, w), normalized first.

    Raises:
        GeoError: the quaternion is not finite or has zero length.
    """
    q = np.asarray(quaternion_xyzw, np.float64).reshape(-1)
    norm = float(np.linalg.norm(q)) if q.shape == (4,) else 0.0
    if not (math.isfinite(norm) and norm > 1e-12):
        raise GeoError(f"a quaternion (x, y, z, w) needs four finite numbers, not all zero: {quaternion_xyzw}")
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def yaw_of(quaternion_xyzw) -> float | None:
    """The yaw [deg, counter-clockwise about +z, REP-103] of a quaternion (x, y, z, w); None if not finite or zero."""
    q = np.asarray(quaternion_xyzw, float)
    norm = float(np.linalg.norm(q)) if np.isfinite(q).all() else 0.0
    if norm < 1e-9:
        return None
    x, y, z, w = q / norm
    return math.degrees(math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 of a rotation matrix (3x3)."""
    m = np.asarray(rotation, np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:  # Shepperd: divide by the largest of w, x, y, z
        s = 2 * math.sqrt(1 + tr)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2 * math.sqrt(max(1 + m[0, 0] - m[1, 1] - m[2, 2], 0.0))
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] >= m[2, 2]:
        s = 2 * math.sqrt(max(1 + m[1, 1] - m[0, 0] - m[2, 2], 0.0))
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2 * math.sqrt(max(1 + m[2, 2] - m[0, 0] - m[1, 1], 0.0))
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    out = np.array(q) / np.linalg.norm(q)
    return -out if out[3] < 0 else out


def _camera_angles_deg(world_from_camera: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) [deg] of :class:`CameraPose` whose ``rotation()`` is ``world_from_camera``."""
    r = world_from_camera
    # yaw: the image top (camera -y) projected on the ground, clockwise from north
    psi = math.atan2(-r[0, 1], -r[1, 1])
    b0 = np.array([math.cos(psi), -math.sin(psi), 0.0])  # camera x of the untilted pose
    b1 = np.array([-math.sin(psi), -math.cos(psi), 0.0])  # camera y of the untilted pose
    b2 = np.array([0.0, 0.0, -1.0])
    m = np.stack([b0, b1, b2]) @ r  # = Rx(pitch) @ Ry(roll)
    pitch = math.atan2(m[2, 1], m[1, 1])
    roll = math.atan2(m[0, 2], m[0, 0])
    return math.degrees(psi) % 360.0, math.degrees(pitch), math.degrees(roll)


def camera_pose_from_body(
    east_m: float, north_m: float, height_m: float, quaternion_xyzw, mount: Mount = Mount()
) -> CameraPose:
    """The pose of a camera on ``mount`` at (east, north, height) [m] on a body of attitude ``quaternion_xyzw``.

    Args:
        east_m: camera position east [m] in the local frame.
        north_m: camera position north [m].
        height_m: height above the ground [m].
        quaternion_xyzw: the body's world-from-body attitude (x, y, z, w) in ENU (REP-103).
        mount: how the camera sits on the body.

    Returns:
        The :class:`CameraPose` whose ``rotation()`` is the body's rotation times the mount's.
    """
    world_from_camera = rotation_from_quaternion(quaternion_xyzw) @ mount.body_from_camera()
    yaw, pitch, roll = _camera_angles_deg(world_from_camera)
    return CameraPose(float(east_m), float(north_m), float(height_m), yaw, pitch, roll)


def body_quaternion(pose: CameraPose, mount: Mount = Mount()) -> np.ndarray:
    """The body attitude (x, y, z, w) in ENU (REP-103) that puts a camera on ``mount`` at ``pose``'s orientation.

    The inverse of :func:`camera_pose_from_body`; w >= 0.
    """
    return quaternion_from_rotation(pose.rotation() @ mount.body_from_camera().T)


def body_yaw_deg(pose: CameraPose, mount: Mount = Mount()) -> float:
    """The yaw [deg, counter-clockwise from east, REP-103] of the body that carries a camera on ``mount`` at ``pose``.

    NaN when the pose's heading is not finite.
    """
    if not math.isfinite(pose.yaw_deg):
        return math.nan
    yaw = yaw_of(body_quaternion(pose, mount))
    return math.nan if yaw is None else yaw


def heading_deg(quaternion_xyzw, mount: Mount = Mount()) -> float:
    """Heading [deg, clockwise from north, 0-360] of the image top of a camera on ``mount`` on a body of this attitude.

    This is the ``yaw_deg`` of the camera's :class:`CameraPose`; for a level body
    and the default mount it is 90 minus the body's REP-103 yaw.
    """
    world_from_camera = rotation_from_quaternion(quaternion_xyzw) @ mount.body_from_camera()
    return _camera_angles_deg(world_from_camera)[0]


def height_above_ground(range_m: float, quaternion_xyzw=None) -> float:
    """Vertical height [m] from a slant range [m] along the body's -z, given the body attitude.

    Over flat ground the height is ``range_m * cos(roll) * cos(pitch)``;
    without an attitude (None) the range is taken as vertical.
    """
    if quaternion_xyzw is None:
        return float(range_m)
    return float(range_m) * float(rotation_from_quaternion(quaternion_xyzw)[2, 2])
