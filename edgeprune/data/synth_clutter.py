"""Clutter for the synthetic SAR generator: K-distributed sea, speckle, a coastline and heavy-tailed land.

All reflectivities are linear power relative to the sea reference sigma0 = 1 (0 dB). The model and its parameters
are documented in docs/synthetic-sar.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.data.synth_fields import (
    gamma_texture,
    gaussian_fields,
    isotropic_spectrum,
    smooth_noise_1d,
    swell_spectrum,
)

if TYPE_CHECKING:  # pragma: no cover
    from edgeprune.data.synth_config import SynthConfig


def db_to_power(db: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** (np.asarray(db, dtype=np.float64) / 10.0)


@dataclass(frozen=True)
class Sea:
    """Sea clutter of one scene before speckle: `reflectivity = sigma0_row[None, :] * texture`."""

    sigma0_row: np.ndarray  # float32 [S]: mean sea power per column (scene level plus a range gradient)
    texture: np.ndarray  # float32 [S, S]: Gamma texture, mean 1, shape `texture_shape`
    texture_shape: float  # nu of the K distribution

    @property
    def reflectivity(self) -> np.ndarray:
        return self.texture * self.sigma0_row[None, :]


def draw_sea(rng: np.random.Generator, cfg: SynthConfig) -> Sea:
    """Sea surface: a swell-modulated Gamma texture (K-distributed once speckled) under a mean level that drifts
    linearly across the image along x (range), as sigma0 does with incidence angle."""
    size = cfg.size
    dof = int(rng.integers(cfg.texture_dof[0], cfg.texture_dof[1] + 1))
    amplitude = swell_spectrum(
        size,
        corr_len_px=rng.uniform(*cfg.texture_corr_frac) * size,
        wavelength_px=rng.uniform(*cfg.swell_wavelength_frac) * size,
        direction=rng.uniform(0.0, np.pi),
        swell_weight=rng.uniform(*cfg.swell_weight),
    )
    texture = gamma_texture(rng, amplitude, dof)
    level_db = rng.uniform(*cfg.sea_level_db)
    gradient_db = rng.uniform(*cfg.range_gradient_db)
    x = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    sigma0_row = db_to_power(level_db + gradient_db * x).astype(np.float32)
    return Sea(sigma0_row=sigma0_row, texture=texture, texture_shape=dof / 2.0)


def speckle(rng: np.random.Generator, shape: tuple[int, int], looks: float) -> np.ndarray:
    """Multiplicative fully developed speckle of an L-look intensity image: Gamma(shape L, mean 1) per pixel."""
    return rng.standard_gamma(looks, shape, dtype=np.float32) / np.float32(looks)


@dataclass(frozen=True)
class Coast:
    """A coastline: land is where the signed distance along `normal` from the image centre exceeds
    `offset + wiggle(t)`, t being the coordinate along `tangent`."""

    normal: np.ndarray  # (2,) unit vector (x, y) pointing into the land
    tangent: np.ndarray  # (2,) unit vector along the coast
    centre: np.ndarray  # (2,) image centre (x, y)
    offset: float
    t_grid: np.ndarray  # [K] along-coast coordinates where the wiggle is sampled
    wiggle: np.ndarray  # [K] shoreline displacement along the normal, px

    def boundary(self, t: np.ndarray) -> np.ndarray:
        """Shoreline points (x, y) [len(t), 2] at along-coast coordinates t."""
        s = self.offset + np.interp(t, self.t_grid, self.wiggle)
        return self.centre + t[:, None] * self.tangent + s[:, None] * self.normal


def draw_coast(rng: np.random.Generator, cfg: SynthConfig) -> tuple[Coast, np.ndarray]:
    """A random coastline (straight trend plus a smooth random wiggle) and the boolean land mask [S, S]."""
    size = cfg.size
    angle = rng.uniform(0.0, 2.0 * np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    tangent = np.array([-normal[1], normal[0]])
    centre = np.array([size / 2.0, size / 2.0])
    t_grid = np.arange(-size, size + 1, dtype=np.float64)
    amp = rng.uniform(*cfg.coast_wiggle_frac) * size
    corr = rng.uniform(*cfg.coast_corr_frac) * size
    wiggle = amp * smooth_noise_1d(rng, t_grid.size, corr) + 0.25 * amp * smooth_noise_1d(rng, t_grid.size, corr / 8)
    coords = np.arange(size, dtype=np.float64) + 0.5 - size / 2.0
    dx, dy = coords[None, :], coords[:, None]
    s = dx * normal[0] + dy * normal[1]
    t = dx * tangent[0] + dy * tangent[1]
    offset = float(np.quantile(s, 1.0 - rng.uniform(*cfg.land_fraction)))
    land = s > offset + np.interp(t, t_grid, wiggle)
    coast = Coast(normal=normal, tangent=tangent, centre=centre, offset=offset, t_grid=t_grid, wiggle=wiggle)
    return coast, land


def draw_land(
    rng: np.random.Generator, cfg: SynthConfig, land: np.ndarray, sigma0_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Land reflectivity [S, S] (zero on the sea) and a layer of bright unspeckled point targets [S, S].

    Land = sea reference x median level x log-normal patchiness (fields, built-up areas) x a fine-grained Gamma
    texture of small shape (0.5-1: very heavy-tailed once speckled), plus sparse point targets (buildings, masts)
    with Pareto-distributed power."""
    size = cfg.size
    patch = gaussian_fields(rng, isotropic_spectrum(size, cfg.land_patch_corr_frac * size), 1)[0]
    level_db = rng.uniform(*cfg.land_level_db) + rng.uniform(*cfg.land_patch_db) * patch
    dof = int(rng.integers(cfg.land_texture_dof[0], cfg.land_texture_dof[1] + 1))
    texture = gamma_texture(rng, isotropic_spectrum(size, rng.uniform(0.7, 1.5)), dof)
    refl = (db_to_power(level_db) * texture * sigma0_row[None, :]).astype(np.float32)
    refl[~land] = 0.0
    points = np.zeros((size, size), np.float32)
    land_idx = np.flatnonzero(land)
    count = min(int(rng.poisson(cfg.urban_density * land_idx.size)), land_idx.size)
    if count:
        where = rng.choice(land_idx, size=count, replace=False)
        base = db_to_power(cfg.land_level_db[1] + cfg.urban_level_db)
        power = base * (1.0 + rng.pareto(cfg.urban_pareto_shape, size=count))
        points.flat[where] += power.astype(np.float32) * sigma0_row[where % size]
    return refl, points
