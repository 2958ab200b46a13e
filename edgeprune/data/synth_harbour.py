"""Inshore scenes for the synthetic SAR generator: piers sticking out of the coast, ships moored along them (side
by side when rafted), and bright buildings on the land behind the quays."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.data.synth_clutter import Coast, db_to_power, draw_coast, draw_land
from edgeprune.data.synth_ships import Hull, coverage_window, fits, paint, sample_ship

if TYPE_CHECKING:  # pragma: no cover
    from edgeprune.data.synth_config import SynthConfig


def _coast_points_inside(coast: Coast, size: int, margin: float) -> np.ndarray:
    """Along-coast coordinates t whose shoreline point lies inside the image at least `margin` px from the edge."""
    t = coast.t_grid
    pts = coast.boundary(t)
    inside = np.all((pts > margin) & (pts < size - margin), axis=1)
    return t[inside]


def draw_piers(
    rng: np.random.Generator, cfg: SynthConfig, coast: Coast, refl: np.ndarray, sigma0: float
) -> tuple[list[Hull], list[np.ndarray]]:
    """Paint 1-3 piers (bright rectangles from the shore into the sea, about perpendicular to the coast) and
    return them with one boolean mask [S, S] each."""
    size = cfg.size
    masks: list[np.ndarray] = []
    candidates = _coast_points_inside(coast, size, 0.1 * size)
    piers: list[Hull] = []
    taken: list[float] = []
    for _ in range(int(rng.integers(cfg.piers[0], cfg.piers[1] + 1))):
        if candidates.size == 0:
            break
        t = float(rng.choice(candidates))
        if any(abs(t - other) < 0.2 * size for other in taken):
            continue
        taken.append(t)
        root = coast.boundary(np.array([t]))[0] + 2.0 * coast.normal  # start just inland
        heading = float(np.arctan2(-coast.normal[1], -coast.normal[0]) + rng.normal(0.0, 0.15))
        length = rng.uniform(*cfg.pier_length_frac) * size
        width = max(2.0, rng.uniform(*cfg.pier_width_frac) * size)
        centre = root + length / 2.0 * np.array([np.cos(heading), np.sin(heading)])
        level_db = rng.uniform(*cfg.pier_level_db)
        pier = Hull(float(centre[0]), float(centre[1]), length, width, heading, float(level_db), bow_frac=0.0)
        window = coverage_window(pier, size)
        if window is not None:
            paint(refl, pier, sigma0 * db_to_power(level_db))
            (rows, cols), cov, _ = window
            mask = np.zeros((size, size), bool)
            mask[rows, cols] = cov > 0.25
            piers.append(pier)
            masks.append(mask)
    return piers, masks


def _raft_partner(rng: np.random.Generator, cfg: SynthConfig, first: Hull) -> Hull:
    """A ship of about the same length as `first`, to be rafted alongside it."""
    length = first.length * rng.uniform(0.8, 1.0)
    partner = sample_ship(rng, cfg, moored=True)
    return dataclasses.replace(partner, length=length, beam=length / rng.uniform(*cfg.aspect))


def moor_ships(
    rng: np.random.Generator, cfg: SynthConfig, pier: Hull, solid: np.ndarray, placed: list[Hull]
) -> list[Hull]:
    """Berth ships parallel to a pier on both sides, bow in or out, one after another from the shore end; a berth
    is used with probability berth_fill, and a second ship is rafted alongside with probability raft_prob.
    `solid` marks the land and the *other* piers (this pier's own edge is kept clear by construction)."""
    size = cfg.size
    along = np.array([np.cos(pier.heading), np.sin(pier.heading)])
    across = np.array([-along[1], along[0]])
    root = np.array([pier.cx, pier.cy]) - along * pier.length / 2.0
    gap = cfg.berth_gap_px
    new: list[Hull] = []
    for side in (-1.0, 1.0):
        pos = 2.0 + rng.uniform(0.0, 0.04) * size
        while True:
            ship = sample_ship(rng, cfg, moored=True)
            if pos + ship.length > pier.length:
                break
            if rng.random() >= cfg.berth_fill:
                pos += rng.uniform(0.02, 0.06) * size
                continue
            berth = [ship] + ([_raft_partner(rng, cfg, ship)] if rng.random() < cfg.raft_prob else [])
            offset = pier.beam / 2.0 + gap
            for boat in berth:
                heading = pier.heading + (np.pi if rng.random() < 0.5 else 0.0)
                centre = root + along * (pos + ship.length / 2.0) + across * side * (offset + boat.beam / 2.0)
                hull = boat.moved(centre[0], centre[1], heading)
                if not fits(hull, cfg, solid, placed + new, clearance=0.0):
                    break
                new.append(hull)
                offset += boat.beam + gap
            pos += ship.length + rng.uniform(0.005, 0.03) * size
    return new


def draw_buildings(
    rng: np.random.Generator, cfg: SynthConfig, coast: Coast, land: np.ndarray, refl: np.ndarray, sigma0: float
) -> None:
    """Paint a few bright warehouses on the land behind the shore, aligned with the coast (ship-like confusers)."""
    size = cfg.size
    candidates = _coast_points_inside(coast, size, 0.05 * size)
    for _ in range(int(rng.integers(cfg.land_structures[0], cfg.land_structures[1] + 1))):
        if candidates.size == 0:
            return
        point = coast.boundary(np.array([float(rng.choice(candidates))]))[0]
        centre = point + coast.normal * rng.uniform(0.03, 0.12) * size
        heading = float(np.arctan2(coast.tangent[1], coast.tangent[0]) + rng.normal(0.0, 0.1))
        length = rng.uniform(0.03, 0.1) * size
        width = max(2.0, rng.uniform(0.25, 0.5) * length)
        building = Hull(float(centre[0]), float(centre[1]), length, width, heading, 0.0, bow_frac=0.0)
        ij = np.clip(np.floor(building.corners()).astype(int), 0, size - 1)
        if land[ij[:, 1], ij[:, 0]].all():
            paint(refl, building, sigma0 * db_to_power(rng.uniform(*cfg.building_level_db)))


def draw_harbour(
    rng: np.random.Generator, cfg: SynthConfig, sigma0_row: np.ndarray, refl: np.ndarray, points: np.ndarray
) -> tuple[list[Hull], np.ndarray]:
    """Turn a sea scene into an inshore one, in place: land behind a coastline, buildings, piers and moored ships.
    Returns the moored ships and the mask of solid ground (land and piers) that free ships must avoid."""
    coast, land = draw_coast(rng, cfg)
    land_refl, urban = draw_land(rng, cfg, land, sigma0_row)
    refl[land] = land_refl[land]
    points += urban
    sigma0 = float(sigma0_row.mean())
    draw_buildings(rng, cfg, coast, land, refl, sigma0)
    piers, masks = draw_piers(rng, cfg, coast, refl, sigma0)
    ships: list[Hull] = []
    for i, pier in enumerate(piers):
        solid = land.copy()
        for j, mask in enumerate(masks):
            if j != i:
                solid |= mask
        ships += moor_ships(rng, cfg, pier, solid, ships)
    solid = land.copy()
    for mask in masks:
        solid |= mask
    return ships, solid
