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
    img: np.ndarray, rng: np.random.Generator, free: np.ndarray, shadow: np.ndarray, look: np.random.Generator | None
) -> np.ndarray:
    """Buildings on ``free`` ground, their shadows into ``shadow``; the mask of their roofs.

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
        if rng.random() < 0.6:  # pitched roof: one slope lit, the other in shade
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
) -> None:
    """``count`` round crowns on ``where``, their shadows into ``shadow``; in autumn (``look``) coloured."""
    s = img.shape[0]
    yy, xx = np.nonzero(where)
    if len(yy) == 0:
        return
    weights = np.array([f[1] for f in AUTUMN_FOLIAGE])
    for k in rng.integers(0, len(yy), count):
        x, y, r = int(xx[k]), int(yy[k]), int(rng.integers(4, 11))
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


def _cars(img: np.ndarray, rng: np.random.Generator, roads: np.ndarray, look: np.random.Generator | None) -> None:
    """Cars parked along the road edges; in autumn (``look``) most of them are others, elsewhere."""
    edge = roads.astype(bool) & ~cv2.erode(roads, np.ones((7, 7), np.uint8)).astype(bool)
    yy, xx = np.nonzero(edge)
    if len(yy) == 0:
        return
    count = max(1, len(yy) // 400)
    cars = [(k, CAR_COLOURS[rng.integers(len(CAR_COLOURS))]) for k in rng.integers(0, len(yy), count)]
    if look is not None:
        kept = [car for car in cars if look.random() < AUTUMN_CARS_KEPT]
        others = [(k, CAR_COLOURS[look.integers(len(CAR_COLOURS))]) for k in look.integers(0, len(yy), count)]
        cars = kept + others[: count - len(kept)]
    for k, colour in cars:
        cv2.rectangle(img, (int(xx[k]) - 2, int(yy[k]) - 4), (int(xx[k]) + 2, int(yy[k]) + 4), colour.tolist(), -1)


def render_scene(spec: SceneSpec = SceneSpec()) -> np.ndarray:
    """The scene as an (H, W, 3) uint8 RGB image, north up, in ``spec.season``."""
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
    roofs = _buildings(img, rng, free, shadow, look)
    park = (~town.astype(bool)) & ~fields & ~water.astype(bool)
    _trees(img, rng, park, count=s * s // 2600, shadow=shadow, look=look)
    _trees(img, rng, free, count=s * s // 9000, shadow=shadow, look=look)
    _cars(img, rng, roads, look)
    dark = shadow.astype(bool) & ~wet
    if look is None:
        img[dark] *= 0.62
    else:  # a roof lies above the shadows around it; a low sun tints everything warm
        img[dark & ~roofs] *= 0.58
        img *= np.array((1.01, 0.98, 0.93), np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0.7)
    img += (rng if look is None else look).normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS84 UTM zone (6° wide) holding (lat, lon) [deg]: 326zz north, 327zz south."""
    zone = int((lon + 180) // 6) + 1
    return (32600 if lat >= 0 else 32700) + zone


def write_scene(path: str | Path, spec: SceneSpec = SceneSpec()) -> Path:
    """Render the scene in ``spec.season`` and write it as a tiled, compressed GeoTIFF in UTM.

    Every season of a spec is written with the same CRS and transform; the
    file name is the caller's choice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    epsg = utm_epsg(spec.center_lat, spec.center_lon)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    cx, cy = to_utm.transform(spec.center_lon, spec.center_lat)
    half = spec.size_px * spec.gsd_m / 2
    transform = from_origin(round(cx - half), round(cy + half), spec.gsd_m, spec.gsd_m)
    img = render_scene(spec)
    profile = dict(
        driver="GTiff",
        width=spec.size_px,
        height=spec.size_px,
        count=3,
        dtype="uint8",
        crs=f"EPSG:{epsg}",
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        photometric="RGB",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(img, -1, 0))
        dst.update_tags(DESCRIPTION=f"jzi_ros generated scene, seed {spec.seed}, {spec.season}; depicts no real place")
    return path
