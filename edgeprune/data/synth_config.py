"""`SynthConfig`: every knob of the synthetic SAR scene generator (edgeprune.data.synth)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["SynthConfig"]


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator. Lengths given as `*_frac` are fractions of the image side, so a scene at
    128 px is a coarser view of the same ground as one at 320 px; speckle and the impulse response are per pixel.
    Pairs (lo, hi) are ranges drawn uniformly per scene (or per object); integer pairs are inclusive.
    dB values are relative to the sea reference sigma0 (0 dB)."""

    size: int = 320
    # radar
    looks: tuple[float, float] = (1.0, 5.0)  # equivalent number of looks L of the speckle, per scene
    resolution_px: tuple[float, float] = (1.2, 1.6)  # impulse response: first null of the sinc, px (oversampling)
    noise_floor_db: float = -18.0  # thermal noise (NESZ), speckled like the clutter
    db_window: tuple[float, float] = (-10.0, 32.0)  # dB mapped linearly to 0..255 in the PNGs, clipped outside
    # sea
    sea_level_db: tuple[float, float] = (-2.0, 2.0)  # mean sea power of the scene
    range_gradient_db: tuple[float, float] = (-2.0, 2.0)  # linear drift of sigma0 across the image along x
    texture_dof: tuple[int, int] = (2, 8)  # 2*nu: the K texture is chi-square(dof)/dof, shape nu = dof/2
    texture_corr_frac: tuple[float, float] = (0.003, 0.012)  # short-range correlation length of the texture
    swell_wavelength_frac: tuple[float, float] = (0.04, 0.12)
    swell_weight: tuple[float, float] = (0.3, 0.8)  # share of the texture's Gaussian variance in the swell peak
    # ships
    ships_mean: float = 2.5  # offshore scenes: 1 + Poisson(ships_mean - 1) ships, clipped to ships_per_scene
    ships_per_scene: tuple[int, int] = (1, 8)
    length_median_frac: float = 0.065  # log-normal hull length: median and sigma of log(length)
    length_sigma: float = 0.45
    length_range_frac: tuple[float, float] = (0.02, 0.2)
    aspect: tuple[float, float] = (6.0, 8.0)  # length / beam
    bow_frac: tuple[float, float] = (0.15, 0.25)  # tapered share of the length
    dim_fraction: float = 0.06  # probability that a ship is a small dim boat
    dim_length_scale: float = 0.6  # dim boats' median length relative to ships'
    bright_snr_db: tuple[float, float] = (15.0, 30.0)  # mean hull power over the local sea mean
    dim_snr_db: tuple[float, float] = (3.0, 10.0)
    strong_snr_db: float = 24.0  # ships at least this bright carry point scatterers with sinc sidelobes
    scatterers: tuple[int, int] = (1, 3)
    scatterer_gain_db: tuple[float, float] = (6.0, 15.0)  # scatterer peak over the hull's mean power
    sidelobe_radius_frac: float = 0.15  # how far the sidelobe cross is evaluated
    min_box_frac: float = 0.016  # ground-truth boxes are widened to at least this (5 px at 320)
    max_box_iou: float = 0.5  # a ship whose box would overlap another's more than this is not placed
    ship_clearance_px: float = 2.0  # minimum gap between free ships
    # inshore
    inshore_fraction: float = 0.2
    inshore_free_ships: float = 1.0  # Poisson mean of ships on the open water of an inshore scene
    land_fraction: tuple[float, float] = (0.15, 0.45)  # share of the image behind the coastline
    coast_wiggle_frac: tuple[float, float] = (0.01, 0.05)  # std of the shoreline's displacement
    coast_corr_frac: tuple[float, float] = (0.05, 0.2)  # its correlation length along the coast
    land_level_db: tuple[float, float] = (2.0, 8.0)  # median land power
    land_patch_db: tuple[float, float] = (2.0, 5.0)  # std (dB) of the large-scale land patchiness
    land_patch_corr_frac: float = 0.06
    land_texture_dof: tuple[int, int] = (2, 3)  # 2*nu of the land texture: nu 1-1.5
    urban_density: float = 0.004  # bright point targets per land pixel
    urban_level_db: float = 3.0  # their minimum power over the top of land_level_db
    urban_pareto_shape: float = 1.5  # Pareto tail of their power
    land_structures: tuple[int, int] = (0, 4)  # bright buildings behind the shore
    building_level_db: tuple[float, float] = (10.0, 16.0)
    piers: tuple[int, int] = (1, 3)
    pier_length_frac: tuple[float, float] = (0.12, 0.3)
    pier_width_frac: tuple[float, float] = (0.008, 0.016)
    pier_level_db: tuple[float, float] = (6.0, 11.0)
    berth_fill: float = 0.5  # probability that a berth along a pier is taken
    raft_prob: float = 0.2  # probability that a second ship is moored alongside the first
    moored_snr_db: tuple[float, float] = (18.0, 30.0)  # moored ships over the sea mean (never dim boats)
    berth_gap_px: float = 1.5  # water between a moored hull and the pier or the ship it is rafted to

    @classmethod
    def from_mapping(cls, values: dict) -> SynthConfig:
        """A config from a plain mapping such as data.yaml's `synth.config` (lists become tuples)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SynthConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
