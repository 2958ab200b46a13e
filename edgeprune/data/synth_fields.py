"""Random fields for the synthetic SAR generator (numpy only).

Correlated Gaussian fields are made by filtering complex white noise in the Fourier domain: with a filter that is
symmetric in the wavenumber (A(k) = A(-k)), the real and the imaginary part of one inverse FFT are two
*independent* stationary Gaussian fields with the same covariance, so one FFT yields two fields. The filter is
normalised so that every field has unit variance at every pixel (exactly, not just on average), which makes the
sum of squares of n such fields chi-square distributed with n degrees of freedom at every pixel: divided by n it is
a Gamma texture of shape n/2 and mean 1 (see docs/synthetic-sar.md).
"""

from __future__ import annotations

import numpy as np


def _wavenumbers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical wavenumbers (cycles per pixel) of an FFT grid, broadcastable to [size, size]."""
    k = np.fft.fftfreq(size).astype(np.float32)
    return k[None, :], k[:, None]


def _normalise(power: np.ndarray) -> np.ndarray:
    """Amplitude filter whose squared sum is size², i.e. unit-variance output for unit complex white noise."""
    return np.sqrt(power * (power.size / power.sum())).astype(np.float32)


def isotropic_spectrum(size: int, corr_len_px: float) -> np.ndarray:
    """Filter for a field with Gaussian covariance exp(-r²/l²), l = corr_len_px (its power spectrum is
    exp(-π² l² |k|²) with k in cycles per pixel)."""
    kx, ky = _wavenumbers(size)
    return _normalise(np.exp(-((np.pi * corr_len_px) ** 2) * (kx**2 + ky**2)))


def swell_spectrum(
    size: int,
    corr_len_px: float,
    wavelength_px: float,
    direction: float,
    swell_weight: float,
    bandwidth: float = 0.25,
) -> np.ndarray:
    """Filter for sea-surface modulation: an isotropic part (short-range correlation, corr_len_px) plus a swell
    peak at wavenumber ±1/wavelength_px in the given direction (radians from the x axis), of relative width
    `bandwidth`. `swell_weight` in [0, 1] is the share of the variance carried by the swell."""
    kx, ky = _wavenumbers(size)
    iso = np.exp(-((np.pi * corr_len_px) ** 2) * (kx**2 + ky**2))
    k0 = 1.0 / wavelength_px
    k0x, k0y = k0 * np.cos(direction), k0 * np.sin(direction)
    two_var = 2.0 * (bandwidth * k0) ** 2
    bump = np.exp(-((kx - k0x) ** 2 + (ky - k0y) ** 2) / two_var)
    bump = bump + np.exp(-((kx + k0x) ** 2 + (ky + k0y) ** 2) / two_var)
    power = (1.0 - swell_weight) * iso / iso.sum() + swell_weight * bump / bump.sum()
    return _normalise(power)


def gaussian_fields(rng: np.random.Generator, amplitude: np.ndarray, n: int) -> np.ndarray:
    """`n` independent zero-mean unit-variance Gaussian fields [n, S, S] (float32) with the covariance set by the
    symmetric amplitude filter `amplitude` [S, S]; two fields per inverse FFT."""
    size = amplitude.shape[0]
    fields: list[np.ndarray] = []
    for _ in range((n + 1) // 2):
        noise = rng.standard_normal((size, size, 2), dtype=np.float32).view(np.complex64)[..., 0]
        noise *= amplitude
        field = np.fft.ifft2(noise, norm="ortho")
        fields += [field.real, field.imag]
    return np.stack(fields[:n]).astype(np.float32, copy=False)


def gamma_texture(rng: np.random.Generator, amplitude: np.ndarray, dof: int) -> np.ndarray:
    """Spatially correlated Gamma texture of shape ν = dof/2 and mean 1: the mean of `dof` squared correlated
    unit Gaussian fields (chi-square with `dof` degrees of freedom at every pixel, divided by `dof`)."""
    fields = gaussian_fields(rng, amplitude, dof)
    return np.einsum("nij,nij->ij", fields, fields) / np.float32(dof)


def smooth_noise_1d(rng: np.random.Generator, n: int, corr_len: float) -> np.ndarray:
    """Unit-variance 1-D Gaussian process of length n with Gaussian covariance of length corr_len (samples)."""
    k = np.fft.fftfreq(n)
    power = np.exp(-((np.pi * corr_len) ** 2) * k**2)
    amplitude = np.sqrt(power * (n / power.sum()))
    noise = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    return np.fft.ifft(noise * amplitude, norm="ortho").real
