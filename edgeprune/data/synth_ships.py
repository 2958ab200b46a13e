"""Ships for the synthetic SAR generator: hull geometry, rasterisation, point scatterers with sinc sidelobes, and
placement on the open sea.

Coordinates are continuous pixels: the image spans [0, S] x [0, S], pixel (row i, column j) has its centre at
(x, y) = (j + 0.5, i + 0.5). A hull's heading is the angle of its bow direction from the +x axis (radians).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.data.synth_clutter import db_to_power

if TYPE_CHECKING:  # pragma: no cover
    from edgeprune.data.synth_config import SynthConfig


@dataclass(frozen=True)
class Hull:
    """A ship hull (or, with bow_frac=0, a pier or a building): a rectangle of `length` x `beam` whose last
    `bow_frac` of the length tapers to a pointed bow. `snr_db` is the mean hull power over the local sea mean."""

    cx: float
    cy: float
    length: float
    beam: float
    heading: float
    snr_db: float
    dim: bool = False
    moored: bool = False
    bow_frac: float = 0.2

    def _to_image(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.heading), np.sin(self.heading)
        return np.stack([self.cx + u * c - v * s, self.cy + u * s + v * c], axis=-1)

    def half_width(self, u: np.ndarray) -> np.ndarray:
        """Half of the beam at along-hull coordinate u (0 at the centre, +length/2 at the bow)."""
        half = self.beam / 2.0
        if self.bow_frac <= 0:
            return np.full_like(u, half)
        bow_len = self.bow_frac * self.length
        taper = np.clip((self.length / 2.0 - u) / bow_len, 0.0, 1.0)
        return half * np.sqrt(taper)

    def outline(self) -> np.ndarray:
        """Points (x, y) [K, 2] on the hull's (convex) boundary, dense enough for its bounds to 0.1 px."""
        half_l = self.length / 2.0
        u = np.concatenate([[-half_l], np.linspace(half_l - self.bow_frac * self.length, half_l, 24)])
        hw = self.half_width(u)
        return self._to_image(np.concatenate([u, u]), np.concatenate([hw, -hw]))

    def corners(self, inflate: float = 0.0) -> np.ndarray:
        """Corners [4, 2] of the hull's enclosing rectangle grown by `inflate` px on every side."""
        hl, hb = self.length / 2.0 + inflate, self.beam / 2.0 + inflate
        return self._to_image(np.array([-hl, hl, hl, -hl]), np.array([-hb, -hb, hb, hb]))

    def box(self) -> np.ndarray:
        """Axis-aligned bounds x1, y1, x2, y2 of the hull itself (no sidelobes), float64 [4]."""
        pts = self.outline()
        return np.concatenate([pts.min(axis=0), pts.max(axis=0)])

    def moved(self, cx: float, cy: float, heading: float) -> Hull:
        return dataclasses.replace(self, cx=float(cx), cy=float(cy), heading=float(heading))


def label_box(hull: Hull, min_side: float, size: int) -> np.ndarray:
    """The ground-truth box: the hull's bounds, widened about their centre to at least `min_side` px on each
    side (a SAR image blurs a hull over at least a resolution cell), kept inside the image."""
    box = hull.box()
    for lo, hi in ((0, 2), (1, 3)):
        grow = max(0.0, min_side - (box[hi] - box[lo])) / 2.0
        box[lo], box[hi] = box[lo] - grow, box[hi] + grow
        shift = max(0.0, -box[lo]) - max(0.0, box[hi] - size)
        box[lo], box[hi] = box[lo] + shift, box[hi] + shift
    return np.clip(box, 0.0, size)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def hulls_overlap(a: Hull, b: Hull, clearance: float) -> bool:
    """Whether the enclosing rectangles of two hulls come closer than `clearance` px (separating-axis test)."""
    pa, pb = a.corners(clearance / 2.0), b.corners(clearance / 2.0)
    for poly in (pa, pb):
        for i in range(2):
            edge = poly[i + 1] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            qa, qb = pa @ axis, pb @ axis
            if qa.max() < qb.min() or qb.max() < qa.min():
                return False
    return True


def coverage_window(hull: Hull, size: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Anti-aliased area coverage [h, w] of the hull over its window of the image (1-px soft edges, about the
    blur of one resolution cell), with the along-hull coordinate u of each pixel; None if off the image."""
    x1, y1, x2, y2 = hull.box()
    c0, c1 = max(0, int(np.floor(x1)) - 1), min(size, int(np.ceil(x2)) + 1)
    r0, r1 = max(0, int(np.floor(y1)) - 1), min(size, int(np.ceil(y2)) + 1)
    if c0 >= c1 or r0 >= r1:
        return None
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - hull.cx
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - hull.cy
    c, s = np.cos(hull.heading), np.sin(hull.heading)
    u, v = dx * c + dy * s, -dx * s + dy * c
    half_l = hull.length / 2.0
    cov = np.clip(hull.half_width(u) - np.abs(v) + 0.5, 0.0, 1.0)
    cov *= np.clip(u + half_l + 0.5, 0.0, 1.0) * np.clip(half_l - u + 0.5, 0.0, 1.0)
    return (slice(r0, r1), slice(c0, c1)), cov.astype(np.float32), u


def paint(refl: np.ndarray, hull: Hull, level: float, profile: np.ndarray | None = None) -> np.ndarray | None:
    """Replace the reflectivity under the hull by `level` x profile(u) (soft-edged); returns the coverage."""
    window = coverage_window(hull, refl.shape[0])
    if window is None:
        return None
    (rows, cols), cov, u = window
    target = level if profile is None else level * np.interp(u, *profile).astype(np.float32)
    refl[rows, cols] = refl[rows, cols] * (1.0 - cov) + target * cov
    return cov


def hull_profile(rng: np.random.Generator, hull: Hull) -> tuple[np.ndarray, np.ndarray]:
    """Relative backscatter along the hull (u samples, gains): a bright superstructure block plus a smooth random
    ripple, normalised to mean 1 along the length."""
    u = np.linspace(-hull.length / 2.0, hull.length / 2.0, 64)
    rel = u / hull.length
    centre, width = rng.uniform(-0.3, 0.1), rng.uniform(0.08, 0.15)
    gain = 1.0 + rng.uniform(1.0, 3.0) * np.exp(-(((rel - centre) / width) ** 4))
    for _ in range(3):
        gain += rng.uniform(0.0, 0.25) * np.cos(2 * np.pi * rng.uniform(1.0, 4.0) * rel + rng.uniform(0, 2 * np.pi))
    gain = np.maximum(gain, 0.2)
    return u, gain / gain.mean()


def add_point_target(layer: np.ndarray, x0: float, y0: float, peak: float, res_px: float, radius: float) -> None:
    """Add a point scatterer's impulse response: sinc²(dx/ρ)·sinc²(dy/ρ), ρ = res_px, whose sidelobes run along
    the image axes (range and azimuth) as a cross; evaluated within `radius` px of the scatterer."""
    size = layer.shape[0]
    c0, c1 = max(0, int(x0 - radius)), min(size, int(x0 + radius) + 1)
    r0, r1 = max(0, int(y0 - radius)), min(size, int(y0 + radius) + 1)
    if c0 >= c1 or r0 >= r1:
        return
    px = np.sinc((np.arange(c0, c1) + 0.5 - x0) / res_px) ** 2
    py = np.sinc((np.arange(r0, r1) + 0.5 - y0) / res_px) ** 2
    layer[r0:r1, c0:c1] += (peak * np.outer(py, px)).astype(np.float32)


def paint_ship(
    rng: np.random.Generator,
    cfg: SynthConfig,
    hull: Hull,
    sigma0: float,
    refl: np.ndarray,
    points: np.ndarray,
    res_px: float,
) -> None:
    """Paint a hull at its SNR over the local sea mean `sigma0`; the strongest ships (snr >= strong_snr_db) also
    get 1-3 point scatterers on the centreline (superstructure, bow, stern) with visible sinc sidelobes."""
    level = sigma0 * db_to_power(hull.snr_db)
    profile = hull_profile(rng, hull)
    paint(refl, hull, level, profile)
    if hull.snr_db < cfg.strong_snr_db:
        return
    n = int(rng.integers(cfg.scatterers[0], cfg.scatterers[1] + 1))
    u_super = profile[0][np.argmax(profile[1])]
    spots = [u_super, 0.4 * hull.length, -0.42 * hull.length][:n]
    for u in spots:
        x, y = hull._to_image(np.array(u), np.array(0.0))
        peak = level * db_to_power(rng.uniform(*cfg.scatterer_gain_db))
        add_point_target(points, float(x), float(y), float(peak), res_px, cfg.sidelobe_radius_frac * cfg.size)


def sample_ship(rng: np.random.Generator, cfg: SynthConfig, moored: bool = False) -> Hull:
    """A ship's size, shape and brightness, at the origin: a small dim boat with probability dim_fraction
    (SNR in dim_snr_db), otherwise a bright ship (bright_snr_db); log-normal length, length/beam in `aspect`.
    Moored ships are never dim boats and take moored_snr_db: steel hulls at a quay return strongly (hull-quay
    dihedrals) and stand out from the concrete pier beside them."""
    dim = bool(rng.random() < cfg.dim_fraction) and not moored
    median = cfg.length_median_frac * cfg.size * (cfg.dim_length_scale if dim else 1.0)
    lo, hi = (f * cfg.size for f in cfg.length_range_frac)
    length = float(np.clip(median * np.exp(cfg.length_sigma * rng.standard_normal()), lo, hi))
    beam = length / rng.uniform(*cfg.aspect)
    snr = rng.uniform(*(cfg.moored_snr_db if moored else cfg.dim_snr_db if dim else cfg.bright_snr_db))
    bow = rng.uniform(*cfg.bow_frac)
    return Hull(0.0, 0.0, length, beam, 0.0, float(snr), dim=dim, moored=moored, bow_frac=float(bow))


def fits(
    hull: Hull, cfg: SynthConfig, solid: np.ndarray | None, placed: list[Hull], clearance: float
) -> bool:
    """Whether a hull lies inside the image (1 px margin), off `solid` ground (land, piers), clear of the other
    hulls by `clearance` px, and with a label box whose IoU with any other stays <= max_box_iou."""
    size = cfg.size
    x1, y1, x2, y2 = hull.box()
    if x1 < 1 or y1 < 1 or x2 > size - 1 or y2 > size - 1:
        return False
    if solid is not None:
        pts = np.concatenate([hull.outline(), hull.corners(clearance), [[hull.cx, hull.cy]]])
        ij = np.clip(np.floor(pts).astype(int), 0, size - 1)
        if solid[ij[:, 1], ij[:, 0]].any():
            return False
    min_side = cfg.min_box_frac * size
    box = label_box(hull, min_side, size)
    for other in placed:
        if hulls_overlap(hull, other, clearance):
            return False
        if box_iou(box, label_box(other, min_side, size)) > cfg.max_box_iou:
            return False
    return True


def place_free_ships(
    rng: np.random.Generator, cfg: SynthConfig, count: int, solid: np.ndarray | None, placed: list[Hull]
) -> list[Hull]:
    """Drop `count` ships of random heading on the open sea (up to 30 tries each); returns those that fit."""
    new: list[Hull] = []
    for _ in range(count):
        ship = sample_ship(rng, cfg)
        for _ in range(30):
            heading = rng.uniform(0.0, 2.0 * np.pi)
            x1, y1, x2, y2 = ship.moved(0.0, 0.0, heading).box()
            if x2 - x1 > cfg.size - 4 or y2 - y1 > cfg.size - 4:
                break
            cx = rng.uniform(2.0 - x1, cfg.size - 2.0 - x2)
            cy = rng.uniform(2.0 - y1, cfg.size - 2.0 - y2)
            candidate = ship.moved(cx, cy, heading)
            if fits(candidate, cfg, solid, placed + new, cfg.ship_clearance_px):
                new.append(candidate)
                break
    return new
