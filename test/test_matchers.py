"""The dense matcher's stages against their plain definitions."""

from __future__ import annotations

import math

import cv2
import numpy as np

from jzi_ros.localizer.matchers import DenseMatcher, cfog, rotate


def _texture(seed: int, side: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((side, side), np.float32)
    for sigma in (1.0, 3.0, 9.0):
        image += cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), sigma)
    return image


def _patches_one_by_one(m: DenseMatcher, q, mask, ref, x0, y0):
    """The patch stage as defined: each patch alone, mean-free, matchTemplate over its window."""
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
            sc = cv2.matchTemplate(ref[ry : ry + ph + 2 * s, rx : rx + pw + 2 * s], pz, cv2.TM_CCORR)
            yy, xx = np.unravel_index(int(np.argmax(sc)), sc.shape)
            if 0 < yy < 2 * s and 0 < xx < 2 * s:
                strength = float(sc[yy, xx]) / (float(np.sqrt((pz * pz).sum())) + 1e-6)
                out.append((c0 + (pw - 1) / 2, r0 + (ph - 1) / 2, x0 - s + xx, y0 - s + yy, strength))
    return np.array(out)


def test_all_patches_at_once_find_what_each_patch_finds_alone():
    m = DenseMatcher()
    ref_grey = _texture(0)
    q_grey = ref_grey[50:114, 61:125] + np.random.default_rng(1).normal(0, 0.1, (64, 64)).astype(np.float32)
    mask = np.ones((64, 64), bool)
    mask[:, :12] = False  # a part the camera did not see: its patches give nothing
    q, ref = cfog(q_grey), cfog(ref_grey)
    x0, y0 = 60, 52  # the global offset, a pixel or two off the truth (61, 50)
    centre, found, score = m._patches(q, mask, ref, x0, y0)
    alone = _patches_one_by_one(m, q, mask, ref, x0, y0)
    assert len(centre) == len(alone) >= 20
    np.testing.assert_allclose(centre, alone[:, :2])
    # each patch's peak as found alone, moved by its sub-pixel part (under half a pixel)
    assert np.abs(found - centre - alone[:, 2:4]).max() <= 0.5
    np.testing.assert_allclose(score, alone[:, 4], rtol=1e-4)
    # and every patch lands where it truly lies
    np.testing.assert_allclose(found - centre, np.broadcast_to([61.0, 50.0], found.shape), atol=0.5)


def test_a_searched_heading_reuses_the_reference_and_finds_the_turn():
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
    # the reference's spectra computed once give the scores computed anew for that heading
    ref = cfog(ref_grey)
    q = cfog(rotate(q_grey, 45.0, cv2.BORDER_REPLICATE))
    mask = cv2.erode((rotate(valid.astype(np.uint8), 45.0) > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    np.testing.assert_allclose(m._correlate(q, mask, ref, m._spectra(ref)), m._correlate(q, mask, ref), atol=1e-6)
    assert math.isfinite(found.distinctiveness)
