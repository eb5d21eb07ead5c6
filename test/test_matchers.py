"""The dense matcher's stages against their plain definitions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jzi_ros.localizer.matchers import DenseMatcher, MatcherConfig, cfog, rotate


def _texture(seed: int, side: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((side, side), np.float32)
    for sigma in (1.0, 3.0, 9.0):
        image += cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), sigma)
    return image


def _vertex(left: float, mid: float, right: float) -> float:
    den = left - 2 * mid + right
    return min(max(0.5 * (left - right) / den, -0.5), 0.5) if den < 0 else 0.0


def _patches_one_by_one(m: DenseMatcher, q, mask, ref, x0, y0):
    """The patch stage as defined: each patch alone, mean-free, matchTemplate over its window, a parabola at the peak.

    Rows of (query x, y, reference x, y, score).
    """
    c, (hq, wq), s = m.config, mask.shape, m.config.search_px
    ph, pw = max(8, hq // c.patches), max(8, wq // c.patches)
    out = []
    for r0 in range(0, hq - ph + 1, max(1, round(ph * c.stride))):
        for c0 in range(0, wq - pw + 1, max(1, round(pw * c.stride))):
            if mask[r0 : r0 + ph, c0 : c0 + pw].mean() < c.min_patch_valid:
                continue
            ry, rx = y0 + r0 - s, x0 + c0 - s
            if ry < 0 or rx < 0 or ry + ph + 2 * s > ref.shape[0] or rx + pw + 2 * s > ref.shape[1]:
                continue
            patch = q[r0 : r0 + ph, c0 : c0 + pw]
            pz = (patch - patch.mean((0, 1))).astype(np.float32)
            sc = cv2.matchTemplate(ref[ry : ry + ph + 2 * s, rx : rx + pw + 2 * s], pz, cv2.TM_CCORR).astype(float)
            yy, xx = np.unravel_index(int(np.argmax(sc)), sc.shape)
            if 0 < yy < 2 * s and 0 < xx < 2 * s:
                dy = _vertex(sc[yy - 1, xx], sc[yy, xx], sc[yy + 1, xx])
                dx = _vertex(sc[yy, xx - 1], sc[yy, xx], sc[yy, xx + 1])
                qx, qy = c0 + (pw - 1) / 2, r0 + (ph - 1) / 2
                strength = sc[yy, xx] / (float(np.sqrt((pz * pz).sum())) + 1e-6)
                out.append((qx, qy, qx + x0 - s + xx + dx, qy + y0 - s + yy + dy, strength))
    return np.array(out)


@pytest.mark.parametrize(
    "config, cut, shape, offset",
    [
        # the default: a 64 px crop from (61, 50), the global offset a pixel or two off
        (MatcherConfig(), (61, 50, 64, 64), (64, 64), (60, 52)),
        # a wide query stretched by 6 %, a narrower search and 3 x 3 patches: the patches' shifts
        # spread over 2.6 px, so some peaks fall on their windows' edges, and the first column's
        # windows reach past the reference's left edge
        (MatcherConfig(search_px=3, patches=3), (2, 50, 68, 45), (48, 72), (1, 50)),
    ],
)
def test_all_patches_at_once_find_what_each_patch_finds_alone(config, cut, shape, offset):
    m = DenseMatcher(config)
    ref_grey = _texture(0)
    x, y, w, h = cut
    q_grey = cv2.resize(ref_grey[y : y + h, x : x + w], shape[::-1], interpolation=cv2.INTER_LINEAR)
    q_grey = q_grey + np.random.default_rng(1).normal(0, 0.05, q_grey.shape).astype(np.float32)
    mask = np.ones(shape, bool)
    mask[:8, :20] = False  # a part the camera did not see: its patches give nothing
    q, ref = cfog(q_grey), cfog(ref_grey)
    centre, found, score = m._patches(q, mask, ref, *offset)
    alone = _patches_one_by_one(m, q, mask, ref, *offset)
    assert len(centre) == len(alone) >= 8
    np.testing.assert_allclose(centre, alone[:, :2])
    np.testing.assert_allclose(found, alone[:, 2:4], atol=1e-3)  # the same peaks, the same sub-pixel vertices
    np.testing.assert_allclose(score, alone[:, 4], rtol=1e-4)
    # and the patches land where they truly lie
    truth = np.array([x, y]) + (centre + 0.5) * np.array([w / shape[1], h / shape[0]]) - 0.5
    assert np.median(np.hypot(*(found - truth).T)) < 0.5


def _correlation_by_definition(q, mask, ref) -> np.ndarray:
    """The dense matcher's normalized correlation over every offset, summed plainly in float64."""
    q, ref, w = q.astype(float), ref.astype(float), mask.astype(float)
    qz = (q - (q * w[..., None]).sum((0, 1)) / w.sum()) * w[..., None]
    hq, wq = mask.shape
    rows, cols = ref.shape[0] - hq + 1, ref.shape[1] - wq + 1
    num, energy = np.zeros((rows, cols)), np.zeros((rows, cols))
    for y in range(rows):
        for x in range(cols):
            window = ref[y : y + hq, x : x + wq]
            num[y, x] = (window * qz).sum()
            energy[y, x] = ((window * window).sum(-1) * w).sum()
    floor = max(0.5 * float(np.median(energy)), 1e-6)
    return num / (np.sqrt((qz * qz).sum()) * np.sqrt(np.maximum(energy, floor)))


def test_the_correlation_from_shared_spectra_is_the_correlation_by_definition():
    m = DenseMatcher()
    ref = cfog(_texture(4, 48))
    q = cfog(_texture(5, 20))
    mask = np.ones((20, 20), bool)
    mask[:, 15:] = False
    expected = _correlation_by_definition(q, mask, ref)
    spectra = m._spectra(ref)
    for _ in range(2):  # used again, as for every heading tried
        np.testing.assert_allclose(m._correlate(q, mask, ref, spectra), expected, atol=2e-5)


def test_a_searched_heading_finds_the_turn():
    m = DenseMatcher()
    ref_grey = _texture(2)
    q_grey = rotate(ref_grey[68:132, 68:132].copy(), -45.0, cv2.BORDER_REPLICATE)  # turned 45° clockwise
    valid = rotate(np.ones((64, 64), np.uint8), -45.0) > 0
    found = m.match(q_grey, valid, ref_grey, heading_known=False)
    assert found.rotation_deg == 45.0 and len(found) >= 10
    # the query's points, turned back as the matcher turned them, lie where the crop was cut (68, 68)
    turn = cv2.getRotationMatrix2D((31.5, 31.5), found.rotation_deg, 1.0)
    turned = found.query_px @ turn[:, :2].T + turn[:, 2]
    assert np.median(np.hypot(*(found.reference_px - turned - 68.0).T)) < 1.0
