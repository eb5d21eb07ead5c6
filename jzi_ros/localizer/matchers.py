"""Matchers: point correspondences between a camera frame and a crop of the map.

A matcher sees two grey images of the ground at the same resolution and,
when the robot's heading is known, with the same orientation (north up):
the *query* (the camera frame projected onto the ground) and the
*reference* (a crop of the map's orthophoto pyramid). It returns points of
the query and where they lie in the reference; the geometry (pose,
verification, covariance) is common to all matchers and lives in
:mod:`jzi_ros.localizer.refine`.

Two kinds are built in, chosen by measurement (``jzi bench register``):

- :class:`DenseMatcher` (the default, ``"cfog"``): channel features of
  oriented gradients (CFOG; Ye et al., 2019). Nine channels ``|cos t gx + sin
  t gy|`` for t in [0°, 180°), smoothed in space and across orientation and
  normalized per pixel, are insensitive to the contrast, colour and sign
  changes between sensors, seasons and years. The whole query is correlated
  over all translations of the reference by FFT; the peak gives the offset and
  its distinctiveness, the ratio of the best peak to the best one outside its
  neighbourhood. Then a grid of query patches is correlated around the offset,
  each giving one correspondence (sub-pixel, by a parabola through the peak).
  With an unknown heading the global stage tries :attr:`MatcherConfig.headings`
  rotations of the query.
- :class:`KeypointMatcher` (``"sift"``, ``"akaze"``, ``"orb"``, on the
  intensity or, with ``"-grad"``, on the gradient magnitude): OpenCV
  detectors, ratio test, rotation-invariant.

- the learned matcher (``"learned"``, :func:`learned_matcher`): the dense
  matcher's correlation, patches and checks on descriptors of a small
  convolutional network trained so that co-located crops of different
  sources agree and shifted ones do not (``jzi train-matcher``,
  :mod:`jzi_ros.train.matcher`). Its input is the CFOG channels and the
  standardized grey image (:func:`learned_input`); the network comes with
  the model (checkpoint or export), so :func:`make_matcher` cannot make it
  from its name alone.

Any other matcher plugs in by implementing :class:`Matcher` (one method).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from .errors import LocalizerError


@dataclass(frozen=True)
class Matches:
    """Correspondences: ``query_px`` (N, 2) and ``reference_px`` (N, 2) as (col, row) pixel centres.

    ``score`` (N,) is each match's strength (higher is better); ``rotation_deg``
    the rotation of the query about its centre (counter-clockwise in the
    image) under which the points were found (0 when the matcher needs no
    rotation or is rotation invariant); ``distinctiveness`` the ratio of the
    best global match to the runner-up (``inf`` when not measured); ``peak``
    the best global match's normalized correlation (``nan`` when not measured); ``overlap``:
    how many matches share each pixel (overlapping patches are not
    independent: a fit's covariance grows by this factor).
    """

    query_px: np.ndarray
    reference_px: np.ndarray
    score: np.ndarray
    rotation_deg: float = 0.0
    distinctiveness: float = math.inf
    peak: float = math.nan
    overlap: float = 1.0

    def __len__(self) -> int:
        return len(self.query_px)


class Matcher(Protocol):
    """Finds correspondences between a ground-projected frame and a map crop."""

    @property
    def name(self) -> str:
        """The matcher's name (as :func:`make_matcher` knows it)."""
        ...

    def match(self, query: np.ndarray, query_valid: np.ndarray, reference: np.ndarray, heading_known: bool) -> Matches:
        """Points of ``query`` (grey float32) and where they lie in ``reference`` (grey float32).

        ``query_valid`` marks the query's pixels that the camera saw. When
        ``heading_known`` is False the query may be rotated by any angle
        against the reference.
        """
        ...


@dataclass(frozen=True)
class MatcherConfig:
    """Settings of the dense matcher.

    ``bins``: orientation channels; ``sigma_px``: spatial smoothing [px];
    ``patches``: the fine stage's grid (``patches`` x ``patches`` patches of
    the query); ``search_px``: how far [px] each patch looks around the global
    offset; ``headings``: rotations tried when the heading is unknown;
    ``exclusion``: radius of the peak's neighbourhood for the
    distinctiveness, as a share of the query's side.
    """

    bins: int = 9
    sigma_px: float = 1.0
    patches: int = 4
    search_px: int = 4
    headings: int = 24
    exclusion: float = 0.15
    min_patch_valid: float = 0.9
    stride: float = 0.5


def local_mean(image: np.ndarray, window: int) -> np.ndarray:
    """The mean of a (H, W) float32 image over a ``window`` px square around each pixel (mirrored borders)."""
    return cv2.blur(image, (window, window), borderType=cv2.BORDER_REFLECT_101)


def cfog(grey: np.ndarray, bins: int = 9, sigma_px: float = 1.0, window: int = 0) -> np.ndarray:
    """(H, W, bins) float32 channel features of oriented gradients of a grey image.

    Each pixel's vector is L2-normalized, with a tenth of the mean norm added
    to the denominator so that flat areas stay near zero: the whole image's
    mean, or with ``window`` the mean over that square around the pixel
    (:func:`local_mean`), so that a pixel's features do not depend on ground
    farther off.
    """
    g = grey.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    angles = np.arange(bins) * math.pi / bins
    chans = np.abs(
        gx[..., None] * np.cos(angles).astype(np.float32) + gy[..., None] * np.sin(angles).astype(np.float32)
    )
    chans = cv2.GaussianBlur(chans, (0, 0), sigma_px).reshape(chans.shape)
    # smooth across orientation (circular [1, 2, 1])
    chans = (np.roll(chans, 1, -1) + 2 * chans + np.roll(chans, -1, -1)) * np.float32(0.25)
    norm = np.sqrt(np.einsum("hwc,hwc->hw", chans, chans))
    if window:
        eps = np.maximum(local_mean(norm, window) * np.float32(0.1), np.float32(1e-3))
        return chans / (norm + eps)[..., None]
    eps = max(float(norm.mean()) * 0.1, 1e-3)
    return chans / (norm[..., None] + np.float32(eps))


LEARNED_INPUTS = 10
"""Channels of the learned matcher's input: the nine CFOG channels and the standardized grey image."""

LEARNED_NETWORK_REACH_PX = 7
"""How far the learned descriptor network's convolutions see [px]: 3x3 with dilations 1, 2 and 4."""


def learned_reach_px(window: int, config: MatcherConfig = MatcherConfig()) -> int | None:
    """How far [px] a pixel's learned descriptor, normalized over ``window``, depends on the image; None if 0.

    With ``window`` 0 every descriptor depends on the whole image (its statistics). Else: the Sobel
    gradient (1), CFOG's Gaussian (its kernel's radius), CFOG's normalization (half the window),
    the network (:data:`LEARNED_NETWORK_REACH_PX`) and the descriptors' normalization (half the window).
    """
    if not window:
        return None
    blur = (round(config.sigma_px * 8 + 1) | 1) // 2
    return 1 + blur + LEARNED_NETWORK_REACH_PX + 2 * (window // 2)


def learned_input(grey: np.ndarray, window: int = 0) -> np.ndarray:
    """(1, :data:`LEARNED_INPUTS`, H, W) float32 input of the learned descriptor network for a grey image.

    ``window``: 0 to normalize by the whole image's statistics; else by those of a square of that
    side around each pixel (:class:`~jzi_ros.model.descriptor.DescriptorConfig`).
    """
    g = grey.astype(np.float32)
    if window:
        mean = local_mean(g, window)
        spread = np.sqrt(np.maximum(local_mean(g * g, window) - mean * mean, 0.0))
        standard = (g - mean) / (spread + np.float32(1.0))
    else:
        standard = (g - np.float32(g.mean())) / np.float32(g.std() + 1.0)
    chans = np.concatenate([cfog(g, window=window), standard[..., None]], axis=-1)
    return np.ascontiguousarray(chans.transpose(2, 0, 1)[None])


def stored_window(stored: dict) -> int:
    """The normalization window of a checkpoint's or an export's ``matcher`` entry (0: stored before windows)."""
    return int(stored.get("config", {}).get("window", 0))


def learned_matcher(
    run: Callable[[np.ndarray], np.ndarray],
    checks: dict | None = None,
    config: MatcherConfig = MatcherConfig(),
    window: int = 0,
) -> DenseMatcher:
    """The dense matcher on learned descriptors; ``run`` maps a grey image (H, W) to its (H, W, C) descriptors.

    ``checks``: the least peak ratios fitted with the network (``min_distinctiveness``,
    ``min_distinctiveness_searched``; :func:`jzi_ros.train.matcher.fit_checks`); ``window``: the
    network's normalization window (:class:`~jzi_ros.model.descriptor.DescriptorConfig`).
    """
    checks = checks or {}
    known, searched = (float(checks.get(k, 0.0)) for k in ("min_distinctiveness", "min_distinctiveness_searched"))
    return DenseMatcher(config, run, "learned", known, searched, learned_reach_px(window, config), window // 2 + 1)


def _integral(image: np.ndarray) -> np.ndarray:
    """(H + 1, W + 1, C) sums of an (H, W, C) image over every top-left rectangle."""
    out = np.zeros((image.shape[0] + 1, image.shape[1] + 1, image.shape[2]), np.float64)
    out[1:, 1:] = image.cumsum(0).cumsum(1)
    return out


def _box(integral: np.ndarray, r0: np.ndarray, c0: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, C) sums over the boxes of ``h`` x ``w`` pixels from each (r0, c0), from an integral image."""
    return integral[r0 + h, c0 + w] - integral[r0, c0 + w] - integral[r0 + h, c0] + integral[r0, c0]


def _parabola(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Offsets of the vertices of parabolas through three equally spaced values each (in -0.5..0.5; 0 where none)."""
    left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
    den = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den < 0, np.clip(0.5 * (left - right) / den, -0.5, 0.5), 0.0)


@dataclass(frozen=True)
class _Spectra:
    """A reference's spectra for :meth:`DenseMatcher._correlate`.

    ``size``: the DFT's (zero-padded) size; ``channels``: each descriptor channel's packed real
    spectrum; ``energy``: that of the descriptors' squared norm.
    """

    size: tuple[int, int]
    channels: list[np.ndarray]
    energy: np.ndarray


def _spectrum(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's packed real spectrum of a 2D float32 image, zero-padded to ``size`` (rows, columns)."""
    h, w = image.shape
    return cv2.dft(cv2.copyMakeBorder(image, 0, size[0] - h, 0, size[1] - w, cv2.BORDER_CONSTANT, value=0))


def rotate(image: np.ndarray, angle_deg: float, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """``image`` turned by ``angle_deg`` counter-clockwise about its centre (same size)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle_deg, 1.0)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


class DenseMatcher:
    """The CFOG matcher described in the module docstring."""

    def __init__(
        self,
        config: MatcherConfig = MatcherConfig(),
        describe: Callable[[np.ndarray], np.ndarray] | None = None,
        name: str = "cfog",
        min_distinctiveness: float = 0.0,
        searched_distinctiveness: float = 0.0,
        reach_px: int | None = None,
        min_px: int = 1,
    ) -> None:
        """``describe`` turns a grey image into (H, W, C) per-pixel descriptors (default :func:`cfog`).

        ``min_distinctiveness`` and ``searched_distinctiveness``: the least ratio of the best global
        match to the runner-up that the registration accepts with a known and a searched heading, where
        they ask more than its own settings (a learned matcher's, fitted with it; 0: the settings rule).
        ``reach_px``: how far a pixel's descriptor depends on the image, when it depends on nothing
        farther (then the map's descriptors can be computed once and reused:
        :class:`~jzi_ros.localizer.described.DescribedMap`); None when it depends on the whole image.
        ``min_px``: the smallest side [px] it describes (a window's mirrored border needs half of it);
        a smaller query gives no matches.
        """
        self.config, self.name, self.reach_px, self.min_px = config, name, reach_px, min_px
        self.min_distinctiveness, self.searched_distinctiveness = min_distinctiveness, searched_distinctiveness
        self.describe = describe or (lambda g: cfog(g, config.bins, config.sigma_px))

    @staticmethod
    def _spectra(ref: np.ndarray) -> _Spectra:
        """The reference's per-channel spectra and its energy's, which every correlation with it reuses."""
        hr, wr = ref.shape[:2]
        size = (cv2.getOptimalDFTSize(hr), cv2.getOptimalDFTSize(wr))
        channels = [_spectrum(np.ascontiguousarray(ref[..., k]), size) for k in range(ref.shape[-1])]
        energy = _spectrum(np.ascontiguousarray(np.einsum("hwc,hwc->hw", ref, ref)), size)
        return _Spectra(size, channels, energy)

    def _correlate(
        self, q: np.ndarray, qmask: np.ndarray, ref: np.ndarray, spectra: _Spectra | None = None
    ) -> np.ndarray:
        """Normalized correlation of query features over every offset of the reference (valid part only).

        Returns (H_r - H_q + 1, W_r - W_q + 1): entry (y, x) scores the query's
        top-left at reference pixel (x, y). ``spectra``: the reference's (:meth:`_spectra`), when
        already computed.
        """
        spectra = spectra or self._spectra(ref)
        hq, wq = qmask.shape
        hr, wr = ref.shape[:2]
        size = spectra.size
        maskf = qmask.astype(np.float32)
        qz = (q - np.einsum("hwc,hw->c", q, maskf) / max(float(maskf.sum()), 1.0)) * maskf[..., None]
        qn = math.sqrt(float(np.einsum("hwc,hwc->", qz, qz))) + 1e-6
        # correlation = IDFT(DFT(ref) * conj(DFT(q))), summed over channels
        spec = np.zeros(size, np.float32)
        for k, r_k in enumerate(spectra.channels):
            spec += cv2.mulSpectrums(r_k, _spectrum(np.ascontiguousarray(qz[..., k]), size), 0, conjB=True)
        out = cv2.idft(spec, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)[: hr - hq + 1, : wr - wq + 1]
        # local energy of the reference under the query's mask, for normalization
        fe = cv2.mulSpectrums(spectra.energy, _spectrum(maskf, size), 0, conjB=True)
        energy = cv2.idft(fe, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)[: hr - hq + 1, : wr - wq + 1]
        # a floor on the reference's energy: flat ground (water, fields) must not win by having none
        en = np.sqrt(np.maximum(energy, max(0.5 * float(np.median(energy)), 1e-6)))
        return out / (qn * en)

    def _peak(self, score: np.ndarray, radius: int) -> tuple[int, int, float, float]:
        """(x, y, best, distinctiveness) of a score map."""
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        best = float(score[y, x])
        masked = score.copy()
        masked[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = -np.inf
        second = float(masked.max()) if np.isfinite(masked).any() else -np.inf
        ratio = best / second if second > 1e-6 else math.inf
        return int(x), int(y), best, ratio

    def match(self, query: np.ndarray, query_valid: np.ndarray, reference: np.ndarray, heading_known: bool) -> Matches:
        """Global offset (and rotation) by FFT correlation, then one correspondence per query patch.

        ``reference`` may also be given as this matcher's descriptors of it, (H, W, C)
        (:class:`~jzi_ros.localizer.described.DescribedMap`).
        """
        c = self.config
        hq, wq = query.shape
        hr, wr = reference.shape[:2]
        empty = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), 0.0, 0.0)
        if hr < hq or wr < wq or min(hq, wq) < self.min_px or query_valid.mean() < 0.3:
            return empty
        ref = reference if reference.ndim == 3 else self.describe(reference)
        spectra = self._spectra(ref)  # one reference for every heading tried
        angles = [0.0] if heading_known else list(np.arange(c.headings) * 360.0 / c.headings)
        radius = max(2, int(c.exclusion * max(hq, wq)))
        best = None
        for angle in angles:
            q_img = query if angle == 0 else rotate(query, angle, cv2.BORDER_REPLICATE)
            mask = query_valid if angle == 0 else rotate(query_valid.astype(np.uint8), angle) > 0
            mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            q = self.describe(q_img)
            score = self._correlate(q, mask, ref, spectra)
            x, y, val, ratio = self._peak(score, radius)
            if best is None or val > best[2]:
                best = (x, y, val, ratio, angle, q, mask)
        assert best is not None
        x0, y0, peak, ratio, angle, q, mask = best
        # the fine stage: each patch of the query, searched within ±search_px of the global offset
        qarr, rpts, scores = self._patches(q, mask, ref, x0, y0)
        if not len(qarr):
            return Matches(empty.query_px, empty.reference_px, empty.score, angle, ratio, peak)
        if angle:
            # back from the rotated query to the query's own pixels
            m = cv2.getRotationMatrix2D(((wq - 1) / 2, (hq - 1) / 2), angle, 1.0)
            inv = cv2.invertAffineTransform(m)
            qarr = qarr @ inv[:, :2].T + inv[:, 2]
        overlap = 1.0 / min(1.0, c.stride) ** 2
        return Matches(qarr, rpts, scores, angle, ratio, peak, overlap)

    def _patches(
        self, q: np.ndarray, mask: np.ndarray, ref: np.ndarray, x0: int, y0: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Query points (N, 2), where they lie in the reference (N, 2) and their scores (N,): one per patch.

        Each patch of the query (mean-free, the camera having seen most of it) is correlated over the
        window of ±``search_px`` around where the global offset ``(x0, y0)`` puts it, all patches at
        once (for each column offset one batched product of the windows' rows with the patches'); a
        patch whose peak lies on its window's edge gives no correspondence, the others one each,
        sub-pixel by a parabola through the peak.
        """
        c = self.config
        hq, wq = mask.shape
        hr, wr = ref.shape[:2]
        s = c.search_px
        ph, pw = max(8, hq // c.patches), max(8, wq // c.patches)
        r0, c0 = (
            a.ravel()
            for a in np.meshgrid(
                np.arange(0, hq - ph + 1, max(1, round(ph * c.stride))),
                np.arange(0, wq - pw + 1, max(1, round(pw * c.stride))),
                indexing="ij",
            )
        )
        ry, rx = y0 + r0 - s, x0 + c0 - s
        keep = (
            _box(_integral(mask.astype(np.float32)[..., None]), r0, c0, ph, pw)[:, 0] >= c.min_patch_valid * ph * pw
        ) & ((ry >= 0) & (rx >= 0) & (ry + ph + 2 * s <= hr) & (rx + pw + 2 * s <= wr))
        r0, c0, ry, rx = r0[keep], c0[keep], ry[keep], rx[keep]
        n, side = len(r0), 2 * s + 1
        if not n:
            return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
        # gathered by slices (a fancy index per pixel costs more than the rest of the stage)
        patches = np.stack([q[r : r + ph, k : k + pw] for r, k in zip(r0, c0, strict=True)])
        patches -= (patches.sum((1, 2), dtype=np.float64) / (ph * pw)).astype(np.float32)[:, None, None]
        windows = np.stack([ref[r : r + ph + 2 * s, k : k + pw + 2 * s] for r, k in zip(ry, rx, strict=True)])
        rows, channels = np.arange(ph), ref.shape[2]
        # per column offset dx: every window row against every patch row, then summed along the diagonals
        flat = patches.reshape(n, ph, -1).transpose(0, 2, 1)  # (n, pw * C, ph)
        by_rows = windows.reshape(n, ph + 2 * s, -1)  # a row's columns dx..dx + pw are one run of its values
        diagonals = (np.arange(side)[:, None] + rows[None, :], rows[None, :])  # window row dy + i, patch row i
        score = np.empty((n, side, side), np.float32)
        for dx in range(side):
            by_row = by_rows[:, :, dx * channels : (dx + pw) * channels] @ flat  # strided rows: no copy
            score[:, :, dx] = by_row[:, diagonals[0], diagonals[1]].sum(-1)
        best = score.reshape(n, -1).argmax(1)
        yy, xx = best // side, best % side
        inside = (yy > 0) & (yy < 2 * s) & (xx > 0) & (xx < 2 * s)  # on the window's edge: no reliable correspondence
        idx, yy, xx = np.flatnonzero(inside), yy[inside], xx[inside]
        mid = score[idx, yy, xx].astype(np.float64)
        dy = _parabola(score[idx, yy - 1, xx], mid, score[idx, yy + 1, xx])
        dx_ = _parabola(score[idx, yy, xx - 1], mid, score[idx, yy, xx + 1])
        centre = np.stack([c0[idx] + (pw - 1) / 2, r0[idx] + (ph - 1) / 2], 1)
        reference = centre + np.stack([x0 - s + xx + dx_, y0 - s + yy + dy], 1)
        norms = np.sqrt(np.einsum("nijc,nijc->n", patches[idx], patches[idx], dtype=np.float64)) + 1e-6
        return centre, reference, mid / norms


@dataclass
class KeypointMatcher:
    """OpenCV keypoints and descriptors with Lowe's ratio test (``detector``: sift, akaze or orb).

    ``gradient``: detect on the gradient magnitude instead of the intensity.
    """

    detector: str = "sift"
    gradient: bool = False
    ratio: float = 0.8

    @property
    def name(self) -> str:
        """The matcher's name as ``jzi bench register`` lists it."""
        return self.detector + ("-grad" if self.gradient else "")

    def _features(self, grey: np.ndarray, mask: np.ndarray | None):
        img = grey.astype(np.float32)
        if self.gradient:
            img = np.hypot(cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1))
        lo, hi = float(img.min()), float(img.max())
        img8 = ((img - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.uint8)
        factories: dict[str, Callable[[], Any]] = {
            "sift": cv2.SIFT.create,
            "akaze": cv2.AKAZE.create,
            "orb": lambda: cv2.ORB.create(1000),
        }
        det = factories[self.detector]()
        m8 = None if mask is None else mask.astype(np.uint8) * 255
        return det.detectAndCompute(img8, m8)

    def match(self, query: np.ndarray, query_valid: np.ndarray, reference: np.ndarray, heading_known: bool) -> Matches:
        """Keypoints of both images, matched by descriptor with the ratio test."""
        kq, dq = self._features(query, cv2.erode(query_valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        kr, dr = self._features(reference, None)
        empty = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        if dq is None or dr is None or len(kq) < 2 or len(kr) < 2:
            return empty
        norm = cv2.NORM_HAMMING if self.detector in ("orb", "akaze") else cv2.NORM_L2
        pairs = cv2.BFMatcher(norm).knnMatch(dq, dr, k=2)
        kept = [p for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        good = [p[0] for p in kept]
        if not good:
            return empty
        qp = np.array([kq[m.queryIdx].pt for m in good], float)
        rp = np.array([kr[m.trainIdx].pt for m in good], float)
        sc = np.array([1.0 - p[0].distance / (p[1].distance + 1e-6) for p in kept])  # the ratio test's margin
        return Matches(qp, rp, sc)


MATCHERS = ("cfog", "sift", "sift-grad", "akaze", "akaze-grad", "orb", "orb-grad")
"""Names :func:`make_matcher` knows; ``cfog`` is the default."""
MODEL_MATCHERS = ("auto", "learned")
"""Matcher names that depend on the model: ``learned`` (the model's own), ``auto`` (the model's, else cfog)."""


def check_matcher_name(name: str) -> None:
    """LocalizerError unless ``name`` is one of :data:`MATCHERS` or :data:`MODEL_MATCHERS`."""
    if name not in MATCHERS + MODEL_MATCHERS:
        raise LocalizerError(f"unknown matcher {name!r}; choose one of {', '.join(MATCHERS + MODEL_MATCHERS)}")


def make_matcher(name: str) -> Matcher:
    """The matcher called ``name`` (one of :data:`MATCHERS`; ``auto`` is cfog here: the model may replace it)."""
    if name in ("cfog", "auto"):
        return DenseMatcher()
    if name == "learned":
        raise LocalizerError(
            "the learned matcher comes with its model: give a model trained with one (jzi train-matcher)"
        )
    base, _, grad = name.partition("-")
    if base in ("sift", "akaze", "orb") and grad in ("", "grad"):
        return KeypointMatcher(base, gradient=grad == "grad")
    check_matcher_name(name)
    raise AssertionError(name)  # every known name is handled above
