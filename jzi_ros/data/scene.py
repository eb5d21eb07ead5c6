"""A generated overhead scene for the embedded demo and the tests.

The project ships no third-party imagery, so the demo runs on a deterministic,
plausible orthophoto drawn here: a river, fields, a park, and a town of
irregular streets, blocks, pitched and flat roofs, trees and parked cars, with
shadows and sensor noise. It is written as a real GeoTIFF in UTM (EPSG:326xx).
It depicts no real place.

The same place can be drawn on two dates (:data:`SEASONS`), as a map and a
camera see it in practice. The layout (streets, buildings, fields, river,
trees: where everything is) is drawn from ``seed`` alone and is the same in
both. What the date changes is drawn from a second stream of the same seed:
in autumn the fields are harvested or ploughed, the trees yellow, orange or
bare, the grass browner; a lower afternoon sun casts longer shadows to the
north-east instead of short ones to the south-east; the river runs lower
between exposed banks; some roofs were redone, and other cars are parked.
The summer scene is drawn exactly as it was before seasons existed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyproj
import rasterio
from rasterio.transform import from_origin

from .errors import DataError

SEASONS = ("summer", "autumn")
"""The dates a scene can be drawn on; the first is the default."""

ROOF_COLOURS = np.array(
    [
        (170, 80, 60),
        (150, 70, 55),
        (120, 110, 105),
        (95, 90, 90),
        (185, 120, 90),
        (140, 140, 135),
        (200, 190, 175),
        (110, 60, 50),
        (80, 95, 110),
        (160, 150, 120),
    ],
    np.float32,
)
CAR_COLOURS = np.array(
    [
        (200, 200, 205),
        (30, 30, 35),
        (150, 20, 25),
        (20, 50, 120),
        (180, 180, 170),
        (90, 90, 95),
    ],
    np.float32,
)
GRASS = {"summer": ((88, 120, 60), (140, 140, 90)), "autumn": ((98, 112, 60), (140, 126, 86))}
"""(lush, dry) grass RGB per season, mixed by a smooth noise."""
AUTUMN_FIELDS = (  # RGB, furrow depth (share of brightness), furrow frequency [rad/px], weight
    ((188, 168, 118), 0.06, 0.8, 0.20),  # stubble of a harvested crop
    ((104, 80, 60), 0.18, 1.3, 0.35),  # ploughed
    ((138, 112, 84), 0.08, 0.8, 0.20),  # harrowed bare soil
    ((112, 132, 74), 0.14, 1.1, 0.10),  # winter wheat sprouting in rows
    ((162, 140, 96), 0.10, 0.6, 0.10),  # maize stubble
    ((104, 122, 66), 0.05, 0.8, 0.05),  # meadow
)
AUTUMN_FOLIAGE = (  # RGB, weight; the last one is a bare tree: branches over the ground
    ((36, 62, 36), 0.20),  # conifer
    ((196, 164, 58), 0.25),  # yellow
    ((194, 112, 44), 0.20),  # orange
    ((142, 78, 46), 0.15),  # red-brown
    ((112, 100, 88), 0.20),  # bare
)
AUTUMN_SUN = (0.8, -0.6)
"""Unit vector (x, y) [image px] along which autumn shadows fall: to the north-east."""
AUTUMN_SHADOW_PER_HEIGHT = 2.2
"""Autumn shadow length per unit of height; summer's shadows fall (1, 1) per unit, about 1.4."""
AUTUMN_WATER_DROP_PX = 7.0
"""How far the autumn water's edge lies inside the summer's [px]: the banks it exposes."""
AUTUMN_REROOFED = 0.12
"""Share of the buildings whose roof was redone in another colour by autumn."""
AUTUMN_CARS_KEPT = 0.2
"""Share of the summer's parked cars still at their place in autumn (others park elsewhere)."""


@dataclass(frozen=True)
class SceneSpec:
    """A square scene of ``size_px`` pixels of ``gsd_m`` metres, centred on (lat, lon) [deg].

    Where everything is follows from ``seed``; ``season`` (one of
    :data:`SEASONS`) is the date it is drawn on.
    """

    size_px: int = 2048
    gsd_m: float = 0.5
    center_lat: float = 47.05
    center_lon: float = 8.05
    seed: int = 7
    season: str = "summer"

    def __post_init__(self) -> None:
        if self.season not in SEASONS:
            raise DataError(f"season must be one of {', '.join(SEASONS)}, not {self.season!r}")


STOREY_M = 3.0
"""Height of one storey [m]."""
ROOF_PITCH_DEG = 35.0
"""Slope of a pitched roof [deg]."""
BASE_ELEVATION_M = 420.0
"""Elevation [m] of the terrain's lowest part, so that heights look like a real DSM's."""
TERRAIN_RELIEF_M = (14.0, 4.0)
"""Amplitudes [m] of the terrain's broad (about 450 m) and smaller (about 125 m) undulations."""
TREE_HEIGHT_M = (6.0, 16.0)
"""Range of the trees' heights [m]."""
CAR_HEIGHT_M = 1.5
SUN = {"summer": (315.0, 35.3), "autumn": (233.1, 24.4)}
"""(azimuth [deg clockwise from north], elevation [deg]) of the sun per season, lighting the facades.

The azimuths are those of the drawn shadows; the shadows' lengths were drawn
before the buildings had heights and are shorter than these elevations give.
"""
WALL_COLOURS = np.array(
    [(232, 226, 212), (214, 196, 160), (200, 170, 120), (170, 90, 70), (150, 150, 150), (225, 215, 190)], np.float32
)
SHOP_COLOURS = np.array(
    [(40, 90, 150), (170, 40, 40), (40, 120, 70), (60, 60, 60), (200, 150, 40), (120, 70, 140)], np.float32
)
AUTUMN_SHOPS_CHANGED = 0.3
"""Share of the shop fronts that were repainted for another tenant by autumn."""


@dataclass(frozen=True)
class _Footprint:
    """A building as the picture draws it: corners (4, 2) (x, y) [px], centre, roof, ridge direction, storeys."""

    corners_px: np.ndarray
    centre_px: tuple[int, int]
    pitched: bool
    ridge_deg: float
    storeys: int


@dataclass(frozen=True)
class _Layout:
    """Where the drawn things stand, in image pixels: what the heights and the roads follow from."""

    footprints: list[_Footprint]
    crowns: list[tuple[int, int, int]]
    cars: list[tuple[int, int]]
    roads: list[Road]
    water: np.ndarray


@dataclass(frozen=True)
class Road:
    """A straight drivable stretch from ``start_px`` to ``end_px`` (x, y) [image px], ``width_px`` wide."""

    start_px: tuple[float, float]
    end_px: tuple[float, float]
    width_px: float
    kind: str


@dataclass(frozen=True)
class Building:
    """A building of the 3D world.

    ``corners_px`` (4, 2): the footprint (x, y) [image px]; ``base_m``: the
    ground's elevation under it [m]; ``eaves_m``: wall height [m] (``storeys``
    times :data:`STOREY_M`); ``ridge_m``: the roof's highest point above the
    eaves (0 for a flat roof); ``ridge_deg``: the ridge's direction in the
    image (from +x towards +y); ``wall_rgb``, ``shop_rgb`` (None: no shop on
    the ground floor) and ``window_spacing_m``: what the facade looks like.
    """

    corners_px: np.ndarray
    base_m: float
    eaves_m: float
    ridge_m: float
    ridge_deg: float
    storeys: int
    wall_rgb: tuple[int, int, int]
    shop_rgb: tuple[int, int, int] | None
    window_spacing_m: float


@dataclass(frozen=True)
class SceneWorld:
    """The scene in 3D on the orthophoto's pixel grid (row 0 north): everything :func:`write_scene` writes.

    ``image`` (H, W, 3) uint8 RGB; ``dsm`` and ``dtm`` (H, W) float32
    elevations [m] of the surface (roofs, crowns, cars) and of the bare
    terrain; ``buildings`` and ``roads`` in image pixels; ``sun``: (azimuth,
    elevation) [deg] of the season's sun.
    """

    image: np.ndarray
    dsm: np.ndarray
    dtm: np.ndarray
    buildings: list[Building]
    roads: list[Road]
    sun: tuple[float, float]


def _noise(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features of about ``scale_px`` pixels."""
    n = max(2, int(size / scale_px) + 2)
    coarse = rng.random((n, n)).astype(np.float32)
    out = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    out -= out.min()
    return out / max(out.max(), 1e-6)


def _ground(rng: np.random.Generator, s: int, season: str) -> np.ndarray:
    grass = np.array(GRASS[season][0], np.float32)
    dry = np.array(GRASS[season][1], np.float32)
    mix = _noise(rng, s, 300)[..., None]
    img = grass * (1 - mix) + dry * mix
    img *= (0.85 + 0.3 * _noise(rng, s, 25))[..., None]
    return img


def _fields(img: np.ndarray, rng: np.random.Generator, zone: np.ndarray, look: np.random.Generator | None) -> None:
    """Fields in ``zone``; ``look`` (the autumn's stream) dresses them for autumn, None for summer."""
    s = img.shape[0]
    crops = np.array([(190, 170, 100), (120, 95, 70), (100, 140, 60), (160, 160, 80), (140, 120, 90)], np.float32)
    weights = np.array([f[3] for f in AUTUMN_FIELDS])
    step = 90
    for y0 in range(0, s, step):
        for x0 in range(0, s, step * 2):
            w, h = int(rng.integers(step, step * 3)), int(rng.integers(step // 2, step * 2))
            if not zone[min(y0 + h // 2, s - 1), min(x0 + w // 2, s - 1)]:
                continue
            colour = crops[rng.integers(len(crops))]
            patch = np.zeros((s, s), np.uint8)
            angle = rng.uniform(-0.3, 0.3)
            pts = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
            pts = (pts @ rot.T + (x0, y0)).astype(np.int32)
            cv2.fillPoly(patch, [pts], 1)
            mask = (patch > 0) & zone
            yy, xx = np.nonzero(mask)
            along = xx * np.cos(angle) + yy * np.sin(angle)
            if look is None:
                stripes = 0.9 + 0.1 * np.sin(along * 0.8)
            else:
                rgb, depth, freq, _ = AUTUMN_FIELDS[look.choice(len(AUTUMN_FIELDS), p=weights / weights.sum())]
                colour = np.array(rgb, np.float32) * look.uniform(0.9, 1.08)
                stripes = 1 - depth + depth * np.sin(along * freq)
            img[yy, xx] = colour * stripes[:, None]


def _river(
    img: np.ndarray, rng: np.random.Generator, water: np.ndarray, look: np.random.Generator | None
) -> np.ndarray:
    """Draw the river and the lake into ``water`` (their summer extent) and ``img``; the wet mask.

    In autumn (``look`` given) the water stands lower: a band of gravel and
    mud inside the summer's edge lies dry.
    """
    s = img.shape[0]
    t = np.arange(s, dtype=np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    centre = s * 0.78 + s * 0.08 * np.sin(t / s * 5.0 + phase) + s * 0.03 * np.sin(t / s * 13.0)
    width = 28 + 10 * np.sin(t / s * 7.0 + 1.0)
    pts_a = np.stack([t, centre - width], 1).astype(np.int32)
    pts_b = np.stack([t, centre + width], 1)[::-1].astype(np.int32)
    cv2.fillPoly(water, [np.concatenate([pts_a, pts_b])], 1)
    lake = (int(s * 0.2), int(s * 0.85))
    cv2.ellipse(water, lake, (int(s * 0.09), int(s * 0.06)), 20, 0, 360, 1, -1)
    bank = cv2.dilate(water, np.ones((9, 9), np.uint8)) & ~water.astype(bool)
    img[bank.astype(bool)] = (120, 110, 85)
    depth = cv2.distanceTransform(water, cv2.DIST_L2, 5)
    if look is None:
        shade = np.clip(depth / 25.0, 0, 1)[..., None]
        colour = np.array((70, 105, 95), np.float32) * (1 - shade) + np.array((35, 60, 75), np.float32) * shade
        img[water.astype(bool)] = colour[water.astype(bool)]
        return water.astype(bool)
    wet = depth > AUTUMN_WATER_DROP_PX
    dry = water.astype(bool) & ~wet
    damp = np.clip(depth[dry] / AUTUMN_WATER_DROP_PX, 0, 1)[:, None]  # 1 at the new water's edge
    grain = (0.85 + 0.3 * _noise(look, s, 6)[dry])[:, None]
    gravel, mud = np.array((158, 148, 126), np.float32), np.array((96, 86, 70), np.float32)
    img[dry] = (gravel * (1 - damp) + mud * damp) * grain
    shade = np.clip((depth[wet] - AUTUMN_WATER_DROP_PX) / 25.0, 0, 1)[:, None]
    img[wet] = np.array((76, 100, 92), np.float32) * (1 - shade) + np.array((40, 58, 68), np.float32) * shade
    return wet


def _streets(rng: np.random.Generator, s: int, town: np.ndarray) -> tuple[np.ndarray, list]:
    """Irregular street grid in the town: returns the road mask and the lines."""
    roads = np.zeros((s, s), np.uint8)
    lines = []
    for axis in (0, 1):
        pos = int(rng.integers(40, 120))
        while pos < s:
            tilt = rng.uniform(-0.08, 0.08)
            width = int(rng.choice([10, 12, 16, 22]))
            a = (pos, 0) if axis == 0 else (0, pos)
            b = (int(pos + tilt * s), s) if axis == 0 else (s, int(pos + tilt * s))
            lines.append((a, b, width))
            cv2.line(roads, a, b, 1, width)
            pos += int(rng.integers(110, 230))
    roads &= town
    return roads, lines


def _roof_colour(rng: np.random.Generator, look: np.random.Generator | None) -> np.ndarray:
    """A roof's RGB; in autumn a share of the roofs was redone in another colour."""
    k = int(rng.integers(len(ROOF_COLOURS)))
    colour = ROOF_COLOURS[k] * rng.uniform(0.85, 1.1)
    if look is not None and look.random() < AUTUMN_REROOFED:
        k = (k + int(look.integers(1, len(ROOF_COLOURS)))) % len(ROOF_COLOURS)
        colour = ROOF_COLOURS[k] * look.uniform(0.95, 1.1)
    return colour


def _buildings(
    img: np.ndarray,
    rng: np.random.Generator,
    free: np.ndarray,
    shadow: np.ndarray,
    look: np.random.Generator | None,
    placed: list[_Footprint],
) -> np.ndarray:
    """Buildings on ``free`` ground, their shadows into ``shadow``; the mask of their roofs.

    Each building's footprint is appended to ``placed`` (what its heights
    follow from); the drawing draws nothing more from ``rng`` for it.

    Summer: the shadow is the footprint moved by the height to the south-east.
    Autumn (``look`` given): the ground the footprint sweeps moved to the
    north-east by 2.2 times the height, and the slope of a pitched roof that
    faces the sun is the lit one.
    """
    s = img.shape[0]
    tries = int(s * s / 250)
    occupied = ~free
    sun_x, sun_y = -AUTUMN_SUN[0], -AUTUMN_SUN[1]  # towards the autumn sun
    for _ in range(tries):
        cx, cy = int(rng.integers(0, s)), int(rng.integers(0, s))
        w, h = int(rng.integers(16, 70)), int(rng.integers(14, 40))
        angle = float(rng.choice([0.0, 90.0]) + rng.normal(0, 4))
        box = cv2.boxPoints(((cx, cy), (w, h), angle)).astype(np.int32)
        x0, y0 = np.clip(box.min(0) - 4, 0, s - 1)
        x1, y1 = np.clip(box.max(0) + 4, 0, s - 1)
        if occupied[y0 : y1 + 1, x0 : x1 + 1].any():
            continue
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        cv2.fillPoly(mask, [box - (x0, y0)], 1)
        m = mask.astype(bool)
        colour = _roof_colour(rng, look)
        sub = img[y0 : y1 + 1, x0 : x1 + 1]
        pitched = bool(rng.random() < 0.6)
        if pitched:  # pitched roof: one slope lit, the other in shade
            yy, xx = np.nonzero(m)
            theta = np.deg2rad(angle + (90 if w < h else 0))
            side = (xx - (cx - x0)) * np.sin(theta) - (yy - (cy - y0)) * np.cos(theta)
            if look is None:
                lit = np.where(side > 0, 1.12, 0.78)
            else:  # the slope whose normal points to the sun is lit
                facing = 0.3 * (np.sin(theta) * sun_x - np.cos(theta) * sun_y)
                lit = np.where(side > 0, 1.0 + facing, 1.0 - facing)
            sub[yy, xx] = colour * lit[:, None]
        else:  # flat roof with a rim and roof furniture
            sub[m] = colour
            inner = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
            sub[m & ~inner] = colour * 0.75
            for _ in range(int(rng.integers(0, 3))):
                yy, xx = np.nonzero(inner)
                if len(yy):
                    k = rng.integers(len(yy))
                    cv2.rectangle(sub, (int(xx[k]), int(yy[k])), (int(xx[k]) + 3, int(yy[k]) + 3), (200, 200, 200), -1)
        occupied[y0 : y1 + 1, x0 : x1 + 1] |= m
        height = int(rng.integers(4, 14))
        ridge_deg = angle + (90 if w < h else 0)
        placed.append(_Footprint(box.astype(np.float64), (cx, cy), pitched, ridge_deg, 1 + round((height - 4) * 7 / 9)))
        if look is None:
            shadow_box = box + (height, height)
            cv2.fillPoly(shadow, [shadow_box], 1)
        else:
            reach = height * AUTUMN_SHADOW_PER_HEIGHT
            moved = box + np.round((AUTUMN_SUN[0] * reach, AUTUMN_SUN[1] * reach)).astype(np.int32)
            cv2.fillConvexPoly(shadow, cv2.convexHull(np.concatenate([box, moved])), 1)
    return occupied & free


def _trees(
    img: np.ndarray,
    rng: np.random.Generator,
    where: np.ndarray,
    count: int,
    shadow: np.ndarray,
    look: np.random.Generator | None,
    crowns: list[tuple[int, int, int]],
) -> None:
    """``count`` round crowns on ``where``, their shadows into ``shadow``; in autumn (``look``) coloured.

    Each crown's (x, y, radius) [px] is appended to ``crowns``.
    """
    s = img.shape[0]
    yy, xx = np.nonzero(where)
    if len(yy) == 0:
        return
    weights = np.array([f[1] for f in AUTUMN_FOLIAGE])
    for k in rng.integers(0, len(yy), count):
        x, y, r = int(xx[k]), int(yy[k]), int(rng.integers(4, 11))
        crowns.append((x, y, r))
        green = np.array((40, 75, 35), np.float32) * rng.uniform(0.8, 1.3)
        if look is None:
            cv2.circle(shadow, (min(x + r // 2 + 2, s - 1), min(y + r // 2 + 2, s - 1)), r, 1, -1)
            cv2.circle(img, (x, y), r, green.tolist(), -1)
            cv2.circle(img, (x - r // 3, y - r // 3), max(1, r // 2), (green * 1.35).tolist(), -1)
        else:
            _autumn_tree(img, shadow, look, x, y, r, int(look.choice(len(AUTUMN_FOLIAGE), p=weights / weights.sum())))


def _autumn_tree(
    img: np.ndarray, shadow: np.ndarray, look: np.random.Generator, x: int, y: int, r: int, kind: int
) -> None:
    """One autumn tree of ``AUTUMN_FOLIAGE[kind]`` at (x, y) [px], crown radius ``r`` [px]."""
    ux, uy = AUTUMN_SUN
    bare = kind == len(AUTUMN_FOLIAGE) - 1
    near, far = 0.5 * r + 2, 1.6 * r + 4  # the shadow: from the crown's far side out to the north-east
    a = (round(x + ux * near), round(y + uy * near))
    b = (round(x + ux * far), round(y + uy * far))
    width = max(1, r // 2) if bare else r
    cv2.line(shadow, a, b, 1, 2 * width)
    cv2.circle(shadow, b, width, 1, -1)
    colour = np.array(AUTUMN_FOLIAGE[kind][0], np.float32) * look.uniform(0.8, 1.2)
    if bare:  # branches over the ground: the crown half seen through
        x0, y0, x1, y1 = max(x - r, 0), max(y - r, 0), min(x + r + 1, img.shape[1]), min(y + r + 1, img.shape[0])
        if x0 >= x1 or y0 >= y1:
            return
        sub = img[y0:y1, x0:x1]
        crown = sub.copy()
        cv2.circle(crown, (x - x0, y - y0), r, colour.tolist(), -1)
        sub[:] = 0.5 * crown + 0.5 * sub
        cv2.circle(img, (x, y), max(1, r // 4), (colour * 0.7).tolist(), -1)
        return
    cv2.circle(img, (x, y), r, colour.tolist(), -1)
    lit = (round(x - ux * r / 3), round(y - uy * r / 3))  # the side that faces the sun
    cv2.circle(img, lit, max(1, r // 2), np.minimum(colour * 1.15, 255).tolist(), -1)


def _cars(
    img: np.ndarray, rng: np.random.Generator, roads: np.ndarray, look: np.random.Generator | None
) -> list[tuple[int, int]]:
    """Cars parked along the road edges; in autumn (``look``) most of them are others, elsewhere.

    Returns the cars' centres (x, y) [px].
    """
    edge = roads.astype(bool) & ~cv2.erode(roads, np.ones((7, 7), np.uint8)).astype(bool)
    yy, xx = np.nonzero(edge)
    if len(yy) == 0:
        return []
    count = max(1, len(yy) // 400)
    cars = [(k, CAR_COLOURS[rng.integers(len(CAR_COLOURS))]) for k in rng.integers(0, len(yy), count)]
    if look is not None:
        kept = [car for car in cars if look.random() < AUTUMN_CARS_KEPT]
        others = [(k, CAR_COLOURS[look.integers(len(CAR_COLOURS))]) for k in look.integers(0, len(yy), count)]
        cars = kept + others[: count - len(kept)]
    for k, colour in cars:
        cv2.rectangle(img, (int(xx[k]) - 2, int(yy[k]) - 4), (int(xx[k]) + 2, int(yy[k]) + 4), colour.tolist(), -1)
    return [(int(xx[k]), int(yy[k])) for k, _ in cars]


def _draw(spec: SceneSpec) -> tuple[np.ndarray, _Layout]:
    """The scene as an (H, W, 3) uint8 RGB image, north up, in ``spec.season``, and where its things stand."""
    rng = np.random.default_rng(spec.seed)  # the layout: the same on every date
    look = np.random.default_rng([spec.seed, 1]) if spec.season == "autumn" else None  # what autumn changes
    s = spec.size_px
    img = _ground(rng, s, spec.season)
    zones = _noise(rng, s, 700)
    yy, xx = np.mgrid[0:s, 0:s] / s
    town = ((zones + 0.9 * (1 - np.hypot(yy - 0.4, xx - 0.45) * 2.2)) > 0.55).astype(np.uint8)
    fields = (~town.astype(bool)) & (zones < 0.5)
    _fields(img, rng, fields, look)
    water = np.zeros((s, s), np.uint8)
    wet = _river(img, rng, water, look)
    roads, lines = _streets(rng, s, town)
    roads &= ~water
    country = np.zeros((s, s), np.uint8)  # a country road from the town to the east edge
    cv2.line(country, (int(s * 0.45), int(s * 0.4)), (s, int(s * 0.3)), 1, 12)
    cv2.line(country, (int(s * 0.45), int(s * 0.4)), (int(s * 0.1), 0), 1, 10)
    roads |= country & ~water
    drivable = (roads | country).astype(bool)  # the country road crosses the river on a bridge
    street_lines = [(a, b, w, "street") for a, b, w in lines]
    country_lines = [
        ((int(s * 0.45), int(s * 0.4)), (s, int(s * 0.3)), 12, "country"),
        ((int(s * 0.45), int(s * 0.4)), (int(s * 0.1), 0), 10, "country"),
    ]
    bridge = country & water
    pavement = cv2.dilate(roads, np.ones((7, 7), np.uint8)).astype(bool) & town.astype(bool) & ~water.astype(bool)
    img[pavement] = (165, 160, 150)
    asphalt = np.array((80, 80, 84), np.float32) * (0.9 + 0.2 * _noise(rng, s, 40))[..., None]
    img[roads.astype(bool)] = asphalt[roads.astype(bool)]
    img[bridge.astype(bool)] = (120, 118, 112)
    marking = np.zeros((s, s), np.uint8)
    for a, b, width in lines:
        if width >= 16:
            cv2.line(marking, a, b, 1, 1)
    dashes = ((np.arange(s)[None, :] + np.arange(s)[:, None]) // 8) % 2 == 0
    img[(marking & roads).astype(bool) & dashes] = (220, 220, 210)
    shadow = np.zeros((s, s), np.uint8)
    free = town.astype(bool) & ~pavement & ~roads.astype(bool) & ~water.astype(bool)
    footprints: list[_Footprint] = []
    crowns: list[tuple[int, int, int]] = []
    roofs = _buildings(img, rng, free, shadow, look, footprints)
    park = (~town.astype(bool)) & ~fields & ~water.astype(bool)
    _trees(img, rng, park, count=s * s // 2600, shadow=shadow, look=look, crowns=crowns)
    _trees(img, rng, free, count=s * s // 9000, shadow=shadow, look=look, crowns=crowns)
    cars = _cars(img, rng, roads, look)
    dark = shadow.astype(bool) & ~wet
    if look is None:
        img[dark] *= 0.62
    else:  # a roof lies above the shadows around it; a low sun tints everything warm
        img[dark & ~roofs] *= 0.58
        img *= np.array((1.01, 0.98, 0.93), np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0.7)
    img += (rng if look is None else look).normal(0, 3.0, img.shape).astype(np.float32)
    layout = _Layout(footprints, crowns, cars, _road_runs(street_lines + country_lines, drivable), water.astype(bool))
    return np.clip(img, 0, 255).astype(np.uint8), layout


def render_scene(spec: SceneSpec = SceneSpec()) -> np.ndarray:
    """The scene as an (H, W, 3) uint8 RGB image, north up, in ``spec.season``."""
    return _draw(spec)[0]


def _road_runs(lines: list, drivable: np.ndarray, min_px: float = 20.0) -> list[Road]:
    """The stretches of straight ``lines`` (a, b, width, kind) whose centre line lies on ``drivable`` ground."""
    s = drivable.shape[0]
    runs = []
    for a, b, width, kind in lines:
        n = int(np.hypot(b[0] - a[0], b[1] - a[1])) + 1
        t = np.linspace(0.0, 1.0, n)
        x, y = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        inside = (x >= 0) & (y >= 0) & (x <= s - 1) & (y <= s - 1)
        on = np.zeros(n, bool)
        on[inside] = drivable[np.round(y[inside]).astype(int), np.round(x[inside]).astype(int)]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        for i, j in zip(edges[::2], edges[1::2] - 1, strict=True):
            if j - i >= min_px:
                runs.append(Road((float(x[i]), float(y[i])), (float(x[j]), float(y[j])), float(width), kind))
    return runs


def _facade(facade_rng: np.random.Generator, shops_rng: np.random.Generator | None, storeys: int) -> tuple:
    """(wall RGB, shop RGB or None, window spacing [m]) of one building; ``shops_rng`` repaints autumn's shops."""
    wall = WALL_COLOURS[facade_rng.integers(len(WALL_COLOURS))] * facade_rng.uniform(0.9, 1.05)
    has_shop = storeys >= 2 and facade_rng.random() < 0.6
    k = int(facade_rng.integers(len(SHOP_COLOURS)))
    spacing = float(facade_rng.uniform(2.4, 3.6))
    if shops_rng is not None and shops_rng.random() < AUTUMN_SHOPS_CHANGED:
        k = (k + int(shops_rng.integers(1, len(SHOP_COLOURS)))) % len(SHOP_COLOURS)
    wall_rgb = tuple(int(v) for v in np.clip(wall, 0, 255))
    return wall_rgb, tuple(int(v) for v in SHOP_COLOURS[k]) if has_shop else None, spacing


def _heights(spec: SceneSpec, layout: _Layout) -> tuple[np.ndarray, np.ndarray, list[Building]]:
    """The terrain and surface models (H, W) [m] of a layout and its buildings.

    Drawn from streams of their own (``[seed, 2]`` heights, ``[seed, 3]``
    facades, ``[seed, 4]`` autumn's shop fronts), so the picture stays as it
    was and every season has the same terrain, buildings and trees.
    """
    s, gsd = spec.size_px, spec.gsd_m
    hrng, facade_rng = np.random.default_rng([spec.seed, 2]), np.random.default_rng([spec.seed, 3])
    shops_rng = np.random.default_rng([spec.seed, 4]) if spec.season == "autumn" else None
    broad, small = TERRAIN_RELIEF_M
    dtm = BASE_ELEVATION_M + broad * _noise(hrng, s, 450 / gsd) + small * _noise(hrng, s, 125 / gsd)
    bed = (dtm - 1.5 * layout.water).astype(np.float32)  # the river and the lake lie below their banks
    dtm = np.asarray(cv2.GaussianBlur(bed, (0, 0), 2.0 / gsd), np.float32)
    dsm = dtm.copy()
    buildings = []
    slope = math.tan(math.radians(ROOF_PITCH_DEG)) * gsd  # [m] per px from the eaves
    for fp in layout.footprints:
        x0, y0 = np.clip(np.floor(fp.corners_px.min(0)).astype(int), 0, s - 1)
        x1, y1 = np.clip(np.ceil(fp.corners_px.max(0)).astype(int), 0, s - 1)
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        cv2.fillPoly(mask, [np.round(fp.corners_px - (x0, y0)).astype(np.int32)], 1)
        m = mask.astype(bool)
        if not m.any():
            continue
        base = float(dtm[y0 : y1 + 1, x0 : x1 + 1][m].min())
        eaves = fp.storeys * STOREY_M
        roof = np.full(m.shape, base + eaves, np.float32)
        ridge = 0.0
        if fp.pitched:
            theta = math.radians(fp.ridge_deg)
            yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
            side = np.abs((xx - fp.centre_px[0]) * math.sin(theta) - (yy - fp.centre_px[1]) * math.cos(theta))
            half = float(side[m].max())
            roof += ((half - side) * slope).astype(np.float32)
            ridge = half * slope
        window = dsm[y0 : y1 + 1, x0 : x1 + 1]
        window[m] = np.maximum(window[m], roof[m])
        wall, shop, spacing = _facade(facade_rng, shops_rng, fp.storeys)
        buildings.append(Building(fp.corners_px, base, eaves, ridge, fp.ridge_deg, fp.storeys, wall, shop, spacing))
    # The driving lanes stay clear: a car parked across one, or a crown over it, would be a solid
    # block in the 2.5D surface model from the road up, in the way of a street-level camera.
    lanes = np.zeros((s, s), np.uint8)
    for road in layout.roads:
        start, end = np.round(road.start_px).astype(int), np.round(road.end_px).astype(int)
        cv2.line(lanes, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, max(1, round(0.7 * road.width_px)))
    clear = lanes.astype(bool)
    yy, xx = np.mgrid[0:s, 0:s]
    for x, y, r in layout.crowns:
        top = hrng.uniform(*TREE_HEIGHT_M)
        depth = min(0.6 * top, r * gsd * 1.2)  # the crown's vertical half-extent [m]
        x0, x1, y0, y1 = max(x - r, 0), min(x + r + 1, s), max(y - r, 0), min(y + r + 1, s)
        d2 = ((xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2) / max(r * r, 1)
        inside = (d2 < 1) & ~clear[y0:y1, x0:x1]
        crown = dtm[y, x] + top - depth + depth * np.sqrt(np.clip(1 - d2, 0, 1))
        window = dsm[y0:y1, x0:x1]
        window[inside] = np.maximum(window[inside], crown[inside])
    for x, y in layout.cars:
        rows, cols = slice(max(y - 4, 0), y + 5), slice(max(x - 2, 0), x + 3)
        window, parked = dsm[rows, cols], ~clear[rows, cols]
        window[parked] = np.maximum(window[parked], dtm[y, x] + CAR_HEIGHT_M)
    return dsm.astype(np.float32), dtm.astype(np.float32), buildings


def render_world(spec: SceneSpec = SceneSpec()) -> SceneWorld:
    """The scene with its heights, buildings and roads (:class:`SceneWorld`), in ``spec.season``.

    The picture is :func:`render_scene`'s; terrain, buildings, trees and roads
    are the same in every season, the parked cars and some shop fronts are not.
    """
    image, layout = _draw(spec)
    dsm, dtm, buildings = _heights(spec, layout)
    return SceneWorld(image, dsm, dtm, buildings, layout.roads, SUN[spec.season])


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS84 UTM zone (6° wide) holding (lat, lon) [deg]: 326zz north, 327zz south."""
    zone = int((lon + 180) // 6) + 1
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class SceneFiles:
    """The files of one season of a scene, named after its orthophoto ``ortho`` (``NAME.tif``).

    ``dsm`` (``NAME_dsm.tif``) and ``dtm`` (``NAME_dtm.tif``): float32
    elevations [m] on the orthophoto's grid and CRS; ``roads``
    (``NAME_roads.geojson``): the drivable centre lines; ``buildings``
    (``NAME_buildings.geojson``): footprints with heights and facades.
    """

    ortho: Path
    dsm: Path
    dtm: Path
    roads: Path
    buildings: Path

    @classmethod
    def beside(cls, ortho: str | Path) -> SceneFiles:
        """The names of the files that go with the orthophoto ``ortho``."""
        ortho = Path(ortho)
        stem = ortho.with_suffix("")
        return cls(
            ortho,
            Path(f"{stem}_dsm.tif"),
            Path(f"{stem}_dtm.tif"),
            Path(f"{stem}_roads.geojson"),
            Path(f"{stem}_buildings.geojson"),
        )


def _georeference(spec: SceneSpec) -> tuple[int, rasterio.Affine]:
    """(UTM EPSG code, pixel transform) of a scene: the same for every season."""
    epsg = utm_epsg(spec.center_lat, spec.center_lon)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    cx, cy = to_utm.transform(spec.center_lon, spec.center_lat)
    half = spec.size_px * spec.gsd_m / 2
    return epsg, from_origin(round(cx - half), round(cy + half), spec.gsd_m, spec.gsd_m)


def _write_raster(path: Path, bands: np.ndarray, epsg: int, transform, description: str, **extra) -> None:
    """(bands, H, W) as a tiled, deflate-compressed GeoTIFF."""
    profile = dict(
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=bands.dtype.name,
        crs=f"EPSG:{epsg}",
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        **extra,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        dst.update_tags(DESCRIPTION=description)


def _write_geojson(path: Path, features: list[dict], **properties) -> None:
    path.write_text(json.dumps({"type": "FeatureCollection", **properties, "features": features}))


def write_scene(path: str | Path, spec: SceneSpec = SceneSpec()) -> Path:
    """Render the scene in ``spec.season`` and write it as a tiled, compressed GeoTIFF in UTM, with its 3D world.

    Beside the orthophoto go its surface and terrain models, roads and
    buildings (:class:`SceneFiles` names them). Every season of a spec is
    written with the same CRS and transform; the file name is the caller's
    choice. Returns the orthophoto's path.
    """
    files = SceneFiles.beside(path)
    files.ortho.parent.mkdir(parents=True, exist_ok=True)
    epsg, transform = _georeference(spec)
    world = render_world(spec)
    about = f"jzi_ros generated scene, seed {spec.seed}, {spec.season}; depicts no real place"
    _write_raster(files.ortho, np.moveaxis(world.image, -1, 0), epsg, transform, about, photometric="RGB")
    for target, heights, what in ((files.dsm, world.dsm, "surface"), (files.dtm, world.dtm, "terrain")):
        _write_raster(target, heights[None], epsg, transform, f"{about}; {what} elevation [m]")
    to_lonlat = pyproj.Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)

    def lonlat(points_px) -> list[list[float]]:
        pts = np.asarray(points_px, np.float64) + 0.5  # pixel centres
        x, y = transform * (pts[:, 0], pts[:, 1])
        lon, lat = to_lonlat.transform(x, y)
        return [[round(float(a), 8), round(float(b), 8)] for a, b in zip(lon, lat, strict=True)]

    roads = [
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": lonlat([r.start_px, r.end_px])},
            "properties": {"width_m": r.width_px * spec.gsd_m, "kind": r.kind},
        }
        for r in world.roads
    ]
    _write_geojson(files.roads, roads)
    buildings = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [lonlat(np.concatenate([b.corners_px, b.corners_px[:1]]))]},
            "properties": {
                "base_m": round(b.base_m, 3),
                "eaves_m": b.eaves_m,
                "ridge_m": round(b.ridge_m, 3),
                "storeys": b.storeys,
                "roof": "pitched" if b.ridge_m > 0 else "flat",
                "wall_rgb": list(b.wall_rgb),
                "shop_rgb": None if b.shop_rgb is None else list(b.shop_rgb),
                "window_spacing_m": round(b.window_spacing_m, 3),
            },
        }
        for b in world.buildings
    ]
    _write_geojson(files.buildings, buildings, sun={"azimuth_deg": world.sun[0], "elevation_deg": world.sun[1]})
    return files.ortho
