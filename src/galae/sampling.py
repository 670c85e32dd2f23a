"""The user-facing model: ``galae.load``, ``galae.sample``, ``GalaeModel.encode/analogues``.

A :class:`GalaeModel` bundles the renderer (decoder), the encoder (amortized posterior) and the
learned population prior of one checkpoint.  ``galae.load()`` returns the default model shipped
inside the package; ``galae.load(path)`` any checkpoint.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from galae.checkpoint import CheckpointError, load_checkpoint, modules_from_state
from galae.data.conditions import (
    ObservingConditions,
    add_noise,
    median_psf_fwhm_arcsec,
    sample_sdss_conditions,
)
from galae.encoder import EncoderOutput
from galae.latent import REGISTRY
from galae.likelihood import chi2_per_pixel
from galae.model import Batch, GalaxyGuide, GalaxyModel
from galae.physics.maps import MAP_UNITS
from galae.refine import REFINE_LR
from galae.render.observation import Observation, as_tensor
from galae.render.psf import GaussianPSF, PixelPSF, gaussian_equivalent_fwhm_arcsec
from galae.runtime import checked_device
from galae.runtime import checked_integer as _integer

__all__ = [
    "GalaeModel",
    "Posterior",
    "Samples",
    "PhotoZMixture",
    "PHOTO_Z_NODES",
    "POOR_FIT_CHI2_PER_PIXEL",
    "POOR_FIT_MESSAGE",
    "photo_z_nodes",
    "load",
    "sample",
    "default_model_path",
    "fit_population_prior",
]

DEFAULT_MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Samples:
    """Generated galaxies.

    Attributes:
        images: (n, C, H, W) nanomaggies with noise.
        model_images: (n, C, H, W) noiseless.
        sigma: (n, C, H, W) the per-pixel noise used.
        params: ``{name: (n,)}`` physical latents and derived observables.
        maps: ``{name: (n, H, W)}`` resolved physical maps.
        redshift: (n,); psf_fwhm_arcsec: (n, C).
        bands: band names.
    """

    images: Tensor
    model_images: Tensor
    sigma: Tensor
    params: dict[str, Tensor]
    maps: dict[str, Tensor]
    redshift: Tensor
    psf_fwhm_arcsec: Tensor
    bands: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class Posterior:
    """q(latent | image) for N galaxies.

    Attributes:
        params: ``{name: (N,)}`` posterior means in physical units, including derived observables
            (``r_half_arcsec_<band>``, ``bulge_to_total_<band>``, ``mag_<band>``,
            ``log10_mstar_msun``, ``log10_sfr_msun_per_yr``) and ``redshift``.
        std: ``{name: (N,)}`` posterior standard deviations of the same quantities.
        maps: ``{name: (N, H, W)}`` posterior mean of every map, pixel by pixel, over the
            ``n_mc_derived`` rendered draws (for an unknown redshift: joint draws of latents and
            redshift).  The maps are kept in the units of :data:`galae.physics.maps.MAP_UNITS`,
            so a log map's mean is the posterior mean of the log, as ``params`` holds the
            posterior mean of ``log10_mstar_msun``: per pixel, the estimate with the least
            expected squared error in dex.  It is not additive: summed over an aperture,
            ``10**maps`` falls short of the model's mass there by Jensen's inequality, so
            integrate ``model_maps`` (or :meth:`map_samples`, draw by draw) instead.  With
            ``n_mc_derived = 0`` these are ``model_maps``.
        maps_std: ``{name: (N, H, W)}`` posterior standard deviation of every map over the same
            draws (dex for the log maps); empty when ``n_mc_derived = 0``.
        model_maps: ``{name: (N, H, W)}`` the maps of the single model that ``model_images``
            renders: at the posterior mean latent (for an unknown redshift: at the photo-z
            median, with that redshift's posterior mean latent).  Sums of ``10**model_maps``
            over an aperture are that model's stellar mass or SFR inside it.
        model_images: (N, C, H, W) reconstruction at the same latent and redshift.
        model_params: ``{name: (N,)}`` the parameters of that same model: its physical latents,
            its redshift and (when ``n_mc_derived > 0``) its derived observables - the best fit,
            where ``params`` holds the posterior means.  For a refined posterior this is the
            refinement's mode, and its derived observables are closer to the truth than the
            posterior means: on 200 validation mocks r magnitude median |error| 0.018 against
            0.056 (bias -0.003 against -0.055), log M* 0.035 against 0.052 dex, r_half 2.2%
            against 2.5%.  The refined posterior's calibrated widths (:mod:`galae.refine`)
            widen latents the image leaves open, the bulge mass above all, and its draws' sums
            of components are skewed (brighter, more massive).  For an amortized posterior the
            means are as good or better (r magnitude 0.087 against 0.092).
        mask: (N, C, H, W) bool, the pixels left out of the fit (True): the input mask, NaN/inf
            pixels and, with ``mask_neighbours``, the other sources.
        refined: (N,) bool (a property), the galaxies refined through the renderer.
        redshift_given: (N,) bool (a property), the galaxies whose redshift was given.
        model: (a property) the :class:`GalaeModel` that made this posterior.
        chi2_per_pixel: (N,) (a property), the fit of ``model_images``.
    """

    params: dict[str, Tensor]
    std: dict[str, Tensor]
    maps: dict[str, Tensor]
    maps_std: dict[str, Tensor]
    model_maps: dict[str, Tensor]
    model_images: Tensor
    mask: Tensor
    _owner: GalaeModel
    _batch: Batch
    _loc: Tensor
    _cov_factor: Tensor
    _cov_diag: Tensor
    _z_dist: Any
    _mixture: PhotoZMixture | None = None
    _mixture_index: Tensor | None = None
    _crop: tuple[slice, slice] = (slice(None), slice(None))
    _shift_arcsec: tuple[float, float] = (0.0, 0.0)
    _refined: Tensor | None = None
    model_params: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        """N, the number of galaxies."""
        return int(self._loc.shape[0])

    @property
    def refined(self) -> Tensor:
        """(N,) bool: the galaxies whose posterior was refined through the renderer
        (``encode``'s ``refine_steps``; with ``refine_above_chi2``, only the poor fits)."""
        if self._refined is None:
            return torch.zeros(self._loc.shape[0], dtype=torch.bool, device=self._loc.device)
        return self._refined

    @property
    def redshift_given(self) -> Tensor:
        """(N,) bool: the galaxies whose redshift was given to ``encode`` (the others have the
        joint posterior of latents and photometric redshift)."""
        return torch.isfinite(self._batch.redshift)

    @property
    def model(self) -> GalaeModel:
        """The model that made this posterior."""
        return self._owner

    @property
    def chi2_per_pixel(self) -> Tensor:
        """(N,) the fit of ``model_images`` to the images: the mean of
        ((image - model) / sigma)^2 over each galaxy's unmasked pixels in all bands (about 1
        for a model that describes the image to its noise)."""
        x = self._batch.images[..., self._crop[0], self._crop[1]]
        s = self._batch.sigma[..., self._crop[0], self._crop[1]]
        return chi2_per_pixel(self.model_images, x, s, self.mask)

    def samples(self, k: int, seed: int | None = None, derived: bool = True) -> dict[str, Tensor]:
        """k draws from q: ``{name: (k, N)}`` (latents, redshift, and derived observables).

        For galaxies of unknown redshift the latents and the redshift are drawn jointly
        (:class:`PhotoZMixture`)."""
        return self._owner._posterior_draws(self, k, seed, derived)

    def map_samples(
        self, k: int, seed: int | None = None, names: str | Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """The maps of k posterior draws: ``{name: (k, N, H, W)}``.

        The draws are those of :meth:`samples` with the same ``seed`` (latents and, for an
        unknown redshift, redshift jointly), rendered PSF-free on the stamp.  Integrate them
        draw by draw for the posterior of an aperture quantity (the mass inside a radius, say);
        ``names`` keeps only those maps (all of :data:`galae.physics.maps.MAP_UNITS` by
        default), which saves memory for large k.
        """
        return self._owner._map_draws(self, k, seed, names)

    def unconstrained_samples(self, k: int, seed: int | None = None) -> Tensor:
        """(k, N, D) draws of the unconstrained latent.  Its centre offsets are from the
        centre of the frame the model worked in (:meth:`GalaeModel._frame`), which for a stamp
        whose size differs from the model's by an odd number of pixels lies half a pixel from
        the stamp's own (:meth:`samples` gives them from the stamp's centre)."""
        return self._joint_draws(k, _generator(seed, self._loc.device))[0]

    def _joint_draws(self, k: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """(u (k, N, D), z (k, N)): q(u | x) at the known redshifts, and the joint
        :class:`PhotoZMixture` of the galaxies whose redshift is unknown (``_mixture_index``)."""
        k = _integer(k, "k", 1)
        u = _draw(self._q(), k, g)
        z = self._batch.redshift.expand(k, -1)
        if self._mixture is not None:
            um, zm = self._mixture.draw(k, g)
            ix = self._mixture_index
            u, z = u.clone(), z.clone()
            u[:, ix], z[:, ix] = um[:k], zm[:k]
        return u, z

    def _q(self) -> EncoderOutput:
        """q's parameters (loc, covariance factor and diagonal, photo-z)."""
        return EncoderOutput(self._loc, self._cov_factor, self._cov_diag, *self._z_dist)


#: Redshift nodes of the joint posterior of a galaxy whose redshift is unknown (odd, so that
#: the middle node is the photo-z median): see :class:`PhotoZMixture`.
PHOTO_Z_NODES: int = 9

#: ``encode`` warns about the galaxies whose posterior-mean model fits their image worse than
#: this (:attr:`Posterior.chi2_per_pixel`).  The amortized encoder is only as good as the
#: images it was trained on: on stamps much deeper or brighter than those (Stripe 82 coadds,
#: bright nearby galaxies) its fits degrade, and refining them through the renderer repairs it.
POOR_FIT_CHI2_PER_PIXEL: float = 3.0
#: the words of that warning that identify it (``warnings.filterwarnings("ignore",
#: message=f".*{POOR_FIT_MESSAGE}")`` silences it)
POOR_FIT_MESSAGE: str = "model fit with chi2 per pixel above"
#: ``encode`` refuses images with a pixel brighter than this (nanomaggies; AB magnitude -7.5,
#: a thousand times the brightest galaxy's whole light): they are not in nanomaggies.
MAX_PIXEL_NMGY: float = 1e12
#: ``encode`` also warns about galaxies fitted with a chi2 per pixel below this: a fit that
#: good means sigma is too large for the images (variance or inverse variance passed as sigma,
#: or sigma in other units than the images), and then the posterior is too wide and pulled
#: towards the prior.  Correlated noise in resampled coadds gives 0.6-0.8 (the Stripe-82 stamp).
LOW_CHI2_PER_PIXEL: float = 0.3


@dataclass(frozen=True)
class PhotoZMixture:
    """Joint posterior q(u, z | x) = q(z | x) q(u | x, z) of B galaxies of unknown redshift.

    q(z | x) is the photometric-redshift head's logit-normal N(z_loc, z_scale) in logit space.
    Its probability range is cut into K equal strata [j/K, (j+1)/K); in stratum j the latents
    follow q(u | x, z_j), the encoder's posterior when told the redshift z_j of the stratum's
    middle quantile (j + 1/2)/K.  So the redshift marginal is exactly q(z | x), and the
    latents' dependence on redshift is approximated by K steps.  The latents of a galaxy at
    another distance are other latents (mass goes with luminosity distance squared, size with
    angular-diameter distance); drawing u from q(u | x) and z from q(z | x) independently would
    lose that correlation and let every derived observable swing with the drawn distance.

    A ``z_scale`` of 0 draws the node redshifts themselves.

    Attributes:
        z: (K, B) redshift nodes (the strata's middle quantiles).
        loc: (K, B, D); cov_factor: (K, B, D, r); cov_diag: (K, B, D): q(u | x, z_j).
        z_loc, z_scale: (B,) q(z | x) in logit space.
    """

    z: Tensor
    loc: Tensor
    cov_factor: Tensor
    cov_diag: Tensor
    z_loc: Tensor
    z_scale: Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.z.shape[0])

    def component(self, j: int) -> EncoderOutput:
        """q(u | x, z_j) as an encoder output (its photo-z fields are q(z | x)'s)."""
        return EncoderOutput(
            self.loc[j], self.cov_factor[j], self.cov_diag[j], self.z_loc, self.z_scale
        )

    def draw(self, k: int, g: torch.Generator, antithetic: bool = False) -> tuple[Tensor, Tensor]:
        """Stratified draws: (u (k', B, D), z (k', B)), k' >= k the next multiple of K (2K with
        ``antithetic``).

        Draw i comes from stratum perm[i mod K], perm a random permutation of the strata (from
        ``g``): all k' draws use every stratum equally, and the first k < k' of them are a random
        selection, so that their expectation is still the mixture's.  Within its stratum a
        draw's redshift is at the quantile (j + v)/K, v uniform; with ``antithetic`` the pairs
        ``loc +- d`` stay within a stratum and take v and 1 - v.
        """
        nk, b, d = self.loc.shape
        per = 2 if antithetic else 1
        reps = per * max(1, math.ceil(k / (nk * per)))
        flat = _Gaussian(
            self.loc.reshape(nk * b, d),
            self.cov_factor.reshape(nk * b, d, -1),
            self.cov_diag.reshape(nk * b, d),
        )
        dev = self.z.device
        perm = torch.randperm(nk, generator=g, device=g.device).to(dev)
        u = _draw(flat, reps, g, antithetic).reshape(reps, nk, b, d)[:, perm]
        v = torch.rand(reps // per, nk, b, generator=g, device=g.device).to(self.z)
        if antithetic:
            v = torch.stack([v, 1.0 - v], 1).flatten(0, 1)
        p = ((perm.view(1, nk, 1) + v) / nk).clamp(1e-6, 1.0 - 1e-6)
        zz = _z_transform()(self.z_loc + self.z_scale * torch.special.ndtri(p))
        zz = torch.where(self.z_scale > 0, zz, self.z[perm].unsqueeze(0))
        return u.reshape(reps * nk, b, d), zz.reshape(reps * nk, b)

    def take(self, rows: Tensor) -> PhotoZMixture:
        """The galaxies ``rows`` (indices along the galaxy axis), in that order."""
        return PhotoZMixture(
            self.z[:, rows],
            self.loc[:, rows],
            self.cov_factor[:, rows],
            self.cov_diag[:, rows],
            self.z_loc[rows],
            self.z_scale[rows],
        )

    @staticmethod
    def cat(parts: list[PhotoZMixture]) -> PhotoZMixture:
        """Concatenate along the galaxy axis (covariance factors of another rank are padded
        with zero columns)."""
        fields = [torch.cat([getattr(p, f) for p in parts], 1) for f in ("z", "loc", "cov_diag")]
        fields.insert(2, torch.cat(_same_rank([p.cov_factor for p in parts]), 1))
        zl = torch.cat([p.z_loc for p in parts])
        zs = torch.cat([p.z_scale for p in parts])
        return PhotoZMixture(*fields, zl, zs)


def _same_rank(factors: list[Tensor]) -> list[Tensor]:
    """Covariance factors (..., D, r_i) padded with zero columns to the largest r_i (F F^T is
    unchanged)."""
    r = max(int(f.shape[-1]) for f in factors)
    return [torch.nn.functional.pad(f, (0, r - int(f.shape[-1]))) for f in factors]


#: The image flips that ``encode(..., flips=True)`` averages the encoder over: (columns, rows).
#: They form a group (with the 180-degree rotation), so the average is flip-equivariant.
FLIPS: tuple[tuple[bool, bool], ...] = ((False, False), (True, False), (False, True), (True, True))


def _flipped(b: Batch, flip_x: bool, flip_y: bool) -> Batch:
    """The batch with its stamps mirrored: columns (``flip_x``) and / or rows (``flip_y``)."""
    dims = [d for d, f in ((-1, flip_x), (-2, flip_y)) if f]
    if not dims:
        return b
    return replace(
        b,
        images=b.images.flip(dims),
        sigma=b.sigma.flip(dims),
        mask=b.mask.flip(dims),
        psf_image=None if b.psf_image is None else b.psf_image.flip(dims),
    )


def _psf_images(psf_image: Any, n: int, c: int, device: torch.device) -> Tensor:
    """User PSF images as (N, C, h, w) float32, each normalised to unit sum.

    (N, C, h, w), (1, C, h, w) or (C, h, w) for every galaxy; the images of a point source at
    the stamps' pixel scale, centred on their geometric centre (a survey's PSF image;
    :class:`galae.render.psf.PixelPSF`).  Slightly negative pixels (a PSF model's ringing) are
    kept; a NaN or inf pixel, or a band without positive total light, is an error.
    """
    img = as_tensor(psf_image, "psf_image", torch.float32, device)
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4 or img.shape[0] not in (1, n) or img.shape[1] != c:
        raise ValueError(
            f"psf_image must be (N, C, h, w) = ({n}, {c}, h, w) or (C, h, w) = ({c}, h, w), "
            f"got {tuple(img.shape)}"
        )
    if min(img.shape[-2:]) < 3:
        raise ValueError(f"psf_image must be at least 3 x 3 pixels, got {tuple(img.shape[-2:])}")
    if not bool(torch.isfinite(img).all()):
        raise ValueError("psf_image holds NaN or inf pixels")
    total = img.sum((-2, -1), keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("psf_image must hold positive light in every band of every galaxy")
    return (img / total).expand(n, -1, -1, -1).contiguous()


def _unflip_locs(locs: Tensor, flips: Sequence[tuple[bool, bool]]) -> Tensor:
    """(F, ..., D) posterior means of the mirrored stamps, mapped back to the original frame:
    a column flip turns dx into -dx and PA into 180 - PA, a row flip dy into -dy and PA into
    -PA (= 180 - PA); in the registry's unconstrained space (logit of a symmetric range) that
    is a change of sign, PA's included."""
    out = locs.clone()
    ix, iy, ipa = (REGISTRY.index(k) for k in ("dx_arcsec", "dy_arcsec", "pa_deg"))
    for f, (fx, fy) in enumerate(flips):
        if fx:
            out[f, ..., ix] = -out[f, ..., ix]
        if fy:
            out[f, ..., iy] = -out[f, ..., iy]
        if fx != fy:
            out[f, ..., ipa] = -out[f, ..., ipa]
    return out


def _average_locs(locs: Tensor) -> Tensor:
    """The mean over the first axis of (F, ..., D) unconstrained means, with the position angle
    averaged as the axial quantity it is (period 180 degrees: the mean direction of 2 PA), so
    that 1 and 179 degrees average to 0, not 90."""
    mean = locs.mean(0)
    pa = REGISTRY["pa_deg"]
    ipa = REGISTRY.index("pa_deg")
    two_theta = torch.deg2rad(2.0 * pa.from_unconstrained(locs[..., ipa]))
    theta = 0.5 * torch.rad2deg(torch.atan2(two_theta.sin().mean(0), two_theta.cos().mean(0)))
    mean[..., ipa] = pa.to_unconstrained(torch.remainder(theta, pa.high))
    return mean


def _flip_average(
    outs: Sequence[EncoderOutput], frames: Sequence[tuple[bool, bool]]
) -> EncoderOutput:
    """One encoder output from those of the mirrored stamps ``frames`` (the first as given):
    the posterior means mapped back to the stamp's frame and averaged (:func:`_average_locs`),
    the photo-z posterior's mean and width averaged, the latents' covariance the first's.  A
    single output is returned as it is."""
    if len(outs) == 1:
        return outs[0]
    return replace(
        outs[0],
        loc=_average_locs(_unflip_locs(torch.stack([o.loc for o in outs]), frames)),
        z_loc=torch.stack([o.z_loc for o in outs]).mean(0),
        z_scale=torch.stack([o.z_scale for o in outs]).mean(0),
    )


@dataclass(frozen=True)
class _Gaussian:
    """A low-rank Gaussian's parameters, for :func:`_draw`."""

    loc: Tensor
    cov_factor: Tensor
    cov_diag: Tensor


def photo_z_nodes(z_loc: Tensor, z_scale: Tensor, n_nodes: int = PHOTO_Z_NODES) -> Tensor:
    """(K, B) redshifts at the quantiles (j + 1/2) / K of the logit-normal photo-z posterior."""
    p = (torch.arange(n_nodes, dtype=z_loc.dtype, device=z_loc.device) + 0.5) / n_nodes
    t = z_loc + z_scale * torch.special.ndtri(p)[:, None]
    return _z_transform()(t)


def default_model_path() -> Path:
    return Path(str(resources.files("galae") / "default_model" / DEFAULT_MODEL_FILE))


def _shift_centre(params: dict[str, Tensor], shift: tuple[float, float]) -> dict[str, Tensor]:
    """``params`` with ``dx_arcsec``/``dy_arcsec`` moved from the frame's centre to the stamps'
    (``shift``: the frame centre's offset from the stamps' centre, arcsec; see
    :meth:`GalaeModel._frame`)."""
    if shift == (0.0, 0.0):
        return params
    out = dict(params)
    for name, offset in (("dx_arcsec", shift[0]), ("dy_arcsec", shift[1])):
        if name in out:
            out[name] = out[name] + offset
    return out


def _seed(value: Any) -> int | None:
    """A random seed: None (fresh randomness) or an integer >= 0."""
    return None if value is None else _integer(value, "seed", 0)


def _pixel_scale(value: Any, default: float) -> float:
    """The pixel scale in arcsec (``default`` when None): one finite number > 0."""
    if value is None:
        return default
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"pixel_scale_arcsec must be one number (arcsec per pixel), got {value!r}"
        ) from None
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"pixel_scale_arcsec must be finite and > 0, got {scale}")
    return scale


def _mask_for(mask: Any, x: Tensor, single: bool, device: torch.device) -> Tensor:
    """The user's ``mask`` broadcast to the images ``x`` (N, C, H, W); see ``make_batch``."""
    n, c, h, w = x.shape
    mm = as_tensor(mask, "mask", torch.bool, device)
    if mm.dim() == 2:
        mm = mm[None, None]
    elif mm.dim() == 3:
        if not (single or (n == 1 and tuple(mm.shape) == (c, h, w))):
            raise ValueError(
                f"mask of shape {tuple(mm.shape)} is ambiguous for a batch of {n} images: pass "
                f"(N, C, H, W), (N, 1, H, W) for one mask per galaxy, or (1, C, H, W) for every "
                f"galaxy (images {tuple(x.shape)})"
            )
        mm = mm.unsqueeze(0)
    ok = (
        mm.dim() == 4
        and mm.shape[0] in (1, n)
        and mm.shape[1] in (1, c)
        and tuple(mm.shape[2:]) == (h, w)
    )
    if not ok:
        raise ValueError(
            f"mask shape {tuple(mm.shape)} does not fit images {tuple(x.shape)}: pass "
            "(N, C, H, W), (N, 1, H, W), (1, C, H, W) or (H, W)"
        )
    return mm.expand_as(x)


#: What the packaged model's amortized posterior does with u and i missing (grz data), on its
#: own population, measured by ``python benchmarks/missing_bands.py``
#: (benchmarks/results/missing_bands.json); quoted by :func:`_warn_missing_bands`.
MISSING_BANDS_MEASURED: dict[bool, str] = {
    True: "the packaged model on its own population without u and i: magnitudes 0.11-0.19 mag "
    "off, log M* 0.097 dex with 60% of its 1-sigma intervals holding the truth (ugriz: "
    "0.08-0.17 mag, 0.079 dex, 61%); without u and g: 0.20 dex, 34%",
    False: "the packaged model on its own population without u and i: magnitudes 0.52-0.58 mag "
    "off with 17-26% of their 1-sigma intervals holding the truth",
}


@dataclass(frozen=True)
class _ViewOptions:
    """How the encoder's view of a batch is made (:meth:`GalaeModel._encoder_view`)."""

    stand_in: bool  # stand-ins for bands missing beyond those the encoder was trained without
    regrid: bool  # another pixel scale put on the model's pixel grid


#: Radius (arcsec) about a stamp's centre that must hold an unmasked pixel in some band, or
#: :func:`_warn_masked_centres` warns: the galaxy galae fits is the one at the centre.
CENTRE_RADIUS_ARCSEC = 1.0


def _warn_masked_centres(mask: Tensor, pixel_scale_arcsec: float) -> None:
    """Warn about stamps whose centre (within :data:`CENTRE_RADIUS_ARCSEC`) is masked in every
    band while other pixels are not: the galaxy at the centre is not in the data (a stamp at
    the edge of a survey frame, a bad column), and its posterior rests on the pixels around it.
    """
    n, _, h, w = mask.shape
    radius = max(1.0, CENTRE_RADIUS_ARCSEC / pixel_scale_arcsec)
    y = torch.arange(h, device=mask.device, dtype=torch.float32) - 0.5 * (h - 1)
    x = torch.arange(w, device=mask.device, dtype=torch.float32) - 0.5 * (w - 1)
    centre = (y[:, None] ** 2 + x[None, :] ** 2) <= radius**2
    seen = (~mask & centre).flatten(1).any(-1)  # (N,): an unmasked central pixel in some band
    some = (~mask).flatten(1).any(-1)  # all masked: warned by make_batch
    rows = torch.nonzero(some & ~seen).flatten().tolist()
    if not rows:
        return
    listed = ", ".join(str(i) for i in rows[:10]) + (", ..." if len(rows) > 10 else "")
    _warn_caller(
        f"{len(rows)} of {n} stamps have every pixel within {CENTRE_RADIUS_ARCSEC:g} arcsec of "
        f"their centre masked in every band (rows {listed}): galae fits the galaxy at the "
        "centre, which is not in these data (a stamp at a frame's edge?); their posteriors rest "
        "on the pixels around it"
    )


def _warn_missing_bands(
    gone: Tensor, refined: Tensor, bands: Sequence[str], trained: int, stand_in: bool
) -> None:
    """Warn about amortized posteriors of galaxies missing more whole bands than the encoder
    was trained without (``gone``: (N, C) bool, a band with no unmasked pixel); ``stand_in``:
    whether the encoder read stand-ins for them (:mod:`galae.data.stand_in`)."""
    k = gone.sum(1).cpu()
    over = (k > trained) & (k < gone.shape[1]) & ~refined.cpu()  # all gone: warned already
    rows = torch.nonzero(over).flatten().tolist()
    if not rows:
        return
    first = gone[rows[0]].cpu().tolist()
    example = ",".join(b for b, g in zip(bands, first, strict=True) if g)
    listed = ", ".join(str(i) for i in rows[:10]) + (", ..." if len(rows) > 10 else "")
    read = (
        "it read stand-ins for the others, interpolated from the neighbouring bands "
        "(galae.data.stand_in), and its amortized posterior for them is less accurate and too "
        "narrow"
        if stand_in
        else "without stand-ins (stand_in_bands=False) its amortized posterior for them is "
        "biased and too narrow"
    )
    _warn_caller(
        f"{len(rows)} of {gone.shape[0]} galaxies miss more than {trained} whole "
        f"band{'' if trained == 1 else 's'} (rows {listed}; row {rows[0]} misses {example}): the "
        f"encoder was trained with at most {trained} missing; {read} "
        f"({MISSING_BANDS_MEASURED[stand_in]}; benchmarks/missing_bands.py); "
        "encode(..., refine_steps=60) fits them through the renderer"
    )


def _rows_and_bands(bad: Tensor, bands: Sequence[str]) -> str:
    """Which galaxies (rows) and bands of an (N, C, H, W) flag array are flagged, in words."""
    rows = torch.nonzero(bad.flatten(1).any(-1)).flatten().tolist()
    in_band = bad.transpose(0, 1).flatten(1).any(-1).tolist()
    return (
        "rows "
        + ", ".join(str(i) for i in rows[:10])
        + (", ..." if len(rows) > 10 else "")
        + "; bands "
        + ",".join(b for b, hit in zip(bands, in_band, strict=True) if hit)
    )


def _warn_caller(message: str) -> None:
    """A RuntimeWarning attributed to the first frame outside galae and torch: the user's call
    of ``encode`` / ``analogues`` / ``make_batch``, not the no-grad decorator around it."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
        "galae",
        "torch",
    ):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def _warn_poor_fits(chi2: Tensor, refined: Tensor) -> None:
    """Warn (at the caller's line) about galaxies with chi2 per pixel over
    :data:`POOR_FIT_CHI2_PER_PIXEL`: one warning for the refined ones, one for the amortized."""
    low = torch.nonzero(chi2.cpu() < LOW_CHI2_PER_PIXEL).flatten().tolist()
    if low:
        rows = ", ".join(str(i) for i in low[:10]) + (", ..." if len(low) > 10 else "")
        _warn_caller(
            f"model fit with chi2 per pixel below {LOW_CHI2_PER_PIXEL:g} for {len(low)} of "
            f"{chi2.numel()} galaxies (rows {rows}): sigma looks too large for these images "
            "(is it the noise's standard deviation in the images' units, not a variance or an "
            "inverse variance?); their posterior is then too wide"
        )
    poor = chi2.cpu() > POOR_FIT_CHI2_PER_PIXEL
    refined = refined.cpu()
    for was_refined in (True, False):
        bad = torch.nonzero(poor & (refined == was_refined)).flatten().tolist()
        if not bad:
            continue
        rows = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        head = (
            f"{POOR_FIT_MESSAGE} {POOR_FIT_CHI2_PER_PIXEL:g} for {len(bad)} of {chi2.numel()} "
            f"galaxies ({'refined; ' if was_refined and not refined.all() else ''}rows {rows}; "
            "Posterior.chi2_per_pixel has them all): "
        )
        if was_refined:
            _warn_caller(
                head + "the model does not describe them to their noise (structure it lacks, "
                "such as spiral arms or bars, or other sources: try mask_neighbours=True)"
            )
        else:
            _warn_caller(
                head + "the amortized posterior is off for them, as for images deeper or "
                "brighter than the encoder was trained on; encode(..., refine_steps=60) fits "
                "them through the renderer (refine_above_chi2=3 refines only such galaxies)"
            )


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _derived_flat(
    renderer: Any, phys: dict[str, Tensor], z: Tensor, batch: Batch, chunk: int = 64
) -> dict[str, Tensor]:
    """Derived observables of k draws of N galaxies at once: phys {name: (k, N)}, z (k, N).

    The k x N draws are flattened into one batch (in chunks of ``chunk``) and rendered PSF-free.
    Returns {name: (k, N)}.
    """
    return _derived_and_map_moments(renderer, phys, z, batch, chunk, map_moments=False)[0]


def _draw_chunks(
    phys: dict[str, Tensor], z: Tensor, batch: Batch, chunk: int
) -> Iterator[tuple[slice, dict[str, Tensor], Observation]]:
    """k draws of N galaxies, phys {name: (k, N)} and z (k, N), flattened (row j * N + i) and cut
    into chunks of ``chunk``: (rows, {name: (rows,)}, the rows' Observation on the stamp)."""
    k, n = z.shape
    flat = {name: v.reshape(k * n) for name, v in phys.items()}
    zf = z.reshape(k * n)
    psf = batch.psf_fwhm_arcsec.repeat(k, 1)
    shape = tuple(batch.images.shape[-2:])
    for sl in _chunks(k * n, chunk):
        obs = Observation(
            zf[sl], GaussianPSF(psf[sl]), batch.pixel_scale_arcsec, shape, batch.bands
        )
        yield sl, {name: v[sl] for name, v in flat.items()}, obs


def _derived_and_map_moments(
    renderer: Any,
    phys: dict[str, Tensor],
    z: Tensor,
    batch: Batch,
    chunk: int = 64,
    map_moments: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """:func:`_derived_flat`, and with ``map_moments`` the per-pixel mean and standard deviation
    over the k draws of every public map (the maps come with the derived observables' PSF-free
    drawing at no extra cost).  The draws come in antithetic pairs, whose mean holds the linear
    part of a function exactly, so the spread is about that mean with divisor k (k - 1 would
    widen it by sqrt(k / (k - 1)): 7% for 8 draws).

    Returns ({name: (k, N)}, {map: (N, H, W)} mean, {map: (N, H, W)} std); the map dicts are
    empty without ``map_moments``.  Sums are kept in float64 (float32 where the device has no
    float64), so the variance of maps of magnitude ~10 keeps its precision.
    """
    k, n = z.shape
    h, w = batch.images.shape[-2:]
    parts: dict[str, list[Tensor]] = {}
    s1: dict[str, Tensor] = {}
    s2: dict[str, Tensor] = {}
    acc = torch.float32 if z.device.type == "mps" else torch.float64
    for sl, params, obs in _draw_chunks(phys, z, batch, chunk):
        d, maps = renderer.derived_and_maps(params, obs, validate=False)
        for name, v in d.items():
            parts.setdefault(name, []).append(v)
        if map_moments:
            galaxy = torch.arange(sl.start, sl.stop, device=z.device) % n  # flat row j * n + i
            for name, v in maps.named().items():
                x = v.to(acc)
                if name not in s1:
                    s1[name] = torch.zeros(n, h, w, dtype=acc, device=x.device)
                    s2[name] = torch.zeros(n, h, w, dtype=acc, device=x.device)
                s1[name].index_add_(0, galaxy, x)
                s2[name].index_add_(0, galaxy, x * x)
    derived = {name: torch.cat(v).reshape(k, n) for name, v in parts.items()}
    mean = {name: (v / k) for name, v in s1.items()}
    std = {name: ((s2[name] - k * m * m) / k).clamp_min(0.0).sqrt() for name, m in mean.items()}
    mean = {name: v.float() for name, v in mean.items()}
    return derived, mean, {name: v.float() for name, v in std.items()}


class GalaeModel:
    """A trained galae model (renderer + encoder + population prior).

    Args:
        model, guide: the Pyro model and guide (from a checkpoint).
        state: the checkpoint dict (config, data description, versions).
        device: where to run.
    """

    def __init__(
        self,
        model: GalaxyModel,
        guide: GalaxyGuide,
        state: dict[str, Any],
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = checked_device(device)
        self.model = model.to(self.device).eval()
        self.guide = guide.to(self.device).eval()
        self.state = state
        info = state["data_info"]
        self.bands: tuple[str, ...] = tuple(info["bands"])
        self.pixel_scale_arcsec: float = float(info["pixel_scale_arcsec"])
        self.shape: tuple[int, int] = tuple(info["shape"])  # type: ignore[assignment]

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> GalaeModel:
        state = load_checkpoint(path, map_location="cpu")
        if state["kind"] != "galae-autoencoder":
            raise CheckpointError(
                f"{path} is a {state['kind']} checkpoint (the supervised map baseline), not an "
                "autoencoder; load it with galae.unet.load_unet"
            )
        model, guide = modules_from_state(state, where=str(path))
        return cls(model, guide, state, device)

    def to(self, device: str | torch.device) -> GalaeModel:
        return GalaeModel(self.model, self.guide, self.state, device)

    @property
    def trained_missing_bands(self) -> int:
        """The most whole bands that a training stamp lacked: 1 when the checkpoint's config
        drops bands (``sleep_missing_band_fraction`` > 0, one band at a time), else 0.
        :meth:`encode` warns about galaxies that miss more."""
        cfg = self.state.get("config") or {}
        return 1 if float(cfg.get("sleep_missing_band_fraction") or 0.0) > 0 else 0

    def __repr__(self) -> str:
        return (
            f"GalaeModel(bands={self.bands}, pixel_scale_arcsec={self.pixel_scale_arcsec}, "
            f"shape={self.shape}, prior={self.state['prior_kind']}, "
            f"trained_with={self.state['loss_terms']}, device={self.device})"
        )

    # ----------------------------------------------------------------------------- inputs
    def make_batch(
        self,
        images: Any,
        sigma: Any,
        psf_fwhm_arcsec: Any = None,
        redshift: Any = None,
        pixel_scale_arcsec: float | None = None,
        mask: Any = None,
        regrid_pixels: bool = False,
        psf_image: Any = None,
    ) -> Batch:
        """Validate user arrays and build a :class:`Batch` (numpy or torch; single image ok).

        NaN/inf pixels are masked (missing data); sigma must be > 0 and finite on every pixel
        that is not masked.  ``sigma`` may be per pixel (N, C, H, W) or per band (N, C).
        ``mask`` (True: left out) is (N, C, H, W), (N, 1, H, W) for every band of each galaxy,
        (1, C, H, W) or (H, W) for every galaxy, or (C, H, W) with a single image.
        ``psf_fwhm_arcsec`` is (N, C), (1, C) or (C,) for every galaxy, or a scalar; with
        N = C > 1 a one-dimensional PSF of unequal values is ambiguous and refused.
        ``psf_image`` (N, C, h, w), or (C, h, w) for every galaxy, replaces it: point-source
        images at the stamps' pixel scale (:func:`_psf_images`).
        """
        x = as_tensor(images, "images", torch.float32, self.device)
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
        n, c, h, w = x.shape
        if n == 0:
            raise ValueError("images hold no galaxies (N = 0)")
        if c != len(self.bands):
            raise ValueError(
                f"images have {c} bands; this model expects {len(self.bands)} bands "
                f"in the order {','.join(self.bands)} (for a band you do not have, pass a plane "
                "of NaN or an infinite sigma there: it is masked, and the model was trained "
                "with missing bands)"
            )
        if sigma is None:
            raise ValueError("sigma is required (per-pixel or per-band noise in nanomaggies)")
        s = as_tensor(sigma, "sigma", torch.float32, self.device)
        if s.dim() == x.dim() - 1 and s.shape == x.shape[1:]:
            s = s.unsqueeze(0)
        if s.dim() == 1 and n == 1 and s.shape[0] == c:
            s = s.unsqueeze(0)
        if s.dim() == 2:
            if s.shape != (n, c):
                raise ValueError(
                    f"per-band sigma must be (N, C) = ({n}, {c}), got {tuple(s.shape)}"
                )
            s = s[..., None, None].expand(n, c, h, w)
        if s.shape != x.shape:
            raise ValueError(f"sigma shape {tuple(s.shape)} does not match images {tuple(x.shape)}")
        m = torch.zeros_like(x, dtype=torch.bool)
        if mask is not None:
            m = m | _mask_for(mask, x, single, self.device)
        bad = ~torch.isfinite(x)
        if bad.any():
            _warn_caller(
                f"{int(bad.sum())} NaN/inf pixels masked ({_rows_and_bands(bad, self.bands)})"
            )
        brightest = float(torch.where(bad, 0.0, x.abs()).max())
        if brightest > MAX_PIXEL_NMGY:
            raise ValueError(
                f"images hold pixels of {brightest:.3g} nanomaggies (AB magnitude "
                f"{22.5 - 2.5 * math.log10(brightest):.1f} in one pixel): these are not galaxy "
                "images in nanomaggies (a wrong unit or zero point, or an overflow?)"
            )
        bad_s = ~torch.isfinite(s) & ~m & ~bad
        if bad_s.any():
            _warn_caller(
                f"{int(bad_s.sum())} pixels of NaN/inf sigma masked "
                f"({_rows_and_bands(bad_s, self.bands)})"
            )
        m = m | bad | bad_s  # every non-finite sigma, the ones already masked included
        good_s = s[~m]
        if (good_s <= 0).any():
            raise ValueError("sigma must be > 0 on every unmasked pixel (mask the others)")
        empty = torch.nonzero(m.flatten(1).all(-1)).flatten().tolist()
        if empty:
            _warn_caller(
                f"{len(empty)} of {n} galaxies have no unmasked pixel (rows "
                + ", ".join(str(i) for i in empty[:10])
                + (", ..." if len(empty) > 10 else "")
                + "): their posterior is the encoder's guess from nothing, and their "
                "chi2_per_pixel is NaN"
            )
        x = torch.where(m, torch.zeros_like(x), x)
        s = torch.where(m, torch.ones_like(s), s)

        scale = _pixel_scale(pixel_scale_arcsec, self.pixel_scale_arcsec)
        psf_img = None
        if psf_image is not None:
            if psf_fwhm_arcsec is not None:
                raise ValueError(
                    "give psf_fwhm_arcsec or psf_image, not both: with a PSF image the encoder "
                    "is told the FWHM of the Gaussian of the image's half-light radius "
                    "(galae.render.psf.gaussian_equivalent_fwhm_arcsec), and the likelihood "
                    "uses the image"
                )
            psf_img = _psf_images(psf_image, n, c, self.device)
            psf_fwhm_arcsec = gaussian_equivalent_fwhm_arcsec(psf_img, scale).float()
        elif psf_fwhm_arcsec is None:
            try:
                psf_fwhm_arcsec = median_psf_fwhm_arcsec(self.bands)
            except ValueError:
                raise ValueError(
                    f"psf_fwhm_arcsec is required for bands {self.bands}: (N, C), (C,) or a scalar"
                ) from None
            _warn_caller(
                "psf_fwhm_arcsec not given: assuming the median SDSS seeing, FWHM "
                + ", ".join(
                    f"{b} {f:.2f}" for b, f in zip(self.bands, psf_fwhm_arcsec, strict=True)
                )
                + " arcsec; pass the PSF of these images for a fit that is not biased by it"
            )
        p = as_tensor(psf_fwhm_arcsec, "psf_fwhm_arcsec", torch.float32, self.device)
        if p.dim() == 1 and p.shape[0] == 1:
            p = p.reshape(())
        if p.dim() == 1 and n == c and n > 1 and not bool((p == p[0]).all()):
            raise ValueError(
                f"psf_fwhm_arcsec of shape ({c},) is ambiguous for {n} galaxies of {c} bands: "
                f"pass (N, C) = ({n}, {c}) (np.repeat(psf[:, None], {c}, 1) for one FWHM per "
                f"galaxy) or (1, {c}) for the same per-band FWHM for every galaxy"
            )
        if (
            p.dim() > 2
            or (p.dim() == 1 and p.shape[0] != c)
            or (p.dim() == 2 and p.shape not in ((n, c), (1, c)))
        ):
            raise ValueError(
                f"psf_fwhm_arcsec must be a scalar, per band (C,) = ({c},) or per galaxy and band "
                f"(N, C) = ({n}, {c}), got {tuple(p.shape)}"
            )
        p = p.expand(n, c)
        if not torch.isfinite(p).all() or (p <= 0).any():
            raise ValueError("psf_fwhm_arcsec must be finite and > 0")

        if redshift is None:
            z = torch.full((n,), float("nan"), device=self.device)
        else:
            z = as_tensor(redshift, "redshift", torch.float32, self.device).reshape(-1)
            if z.numel() == 1 and n > 1:
                z = z.expand(n)
            if z.shape != (n,):
                raise ValueError(f"redshift must be (N,) = ({n},), got {tuple(z.shape)}")
            if torch.isinf(z).any():
                raise ValueError("redshift must be finite (NaN = unknown), got inf")
            if (z[torch.isfinite(z)] <= 0).any():
                raise ValueError("redshift must be > 0 (NaN = unknown)")
            z_max = float(self.model.renderer.sps.redshift_range[1])
            if (z[torch.isfinite(z)] > z_max + 1e-6).any():
                raise ValueError(
                    f"redshift must be <= {z_max:g}, the range of this model's stellar-population "
                    f"table, got {float(z[torch.isfinite(z)].max()):g} (NaN = unknown)"
                )
        if not self._same_scale(scale) and not regrid_pixels:
            _warn_caller(
                f"pixel scale {scale} differs from the training pixel scale "
                f"{self.pixel_scale_arcsec}; the renderer handles it but the encoder was not "
                "trained for it (encode's regrid_pixels shows it the model's pixel grid)"
            )
        return Batch(
            x, s, m, p, z, scale, self.bands, torch.arange(n, device=self.device), psf_image=psf_img
        )

    # ----------------------------------------------------------------------------- encode
    @torch.no_grad()
    def encode(
        self,
        images: Any,
        sigma: Any,
        psf_fwhm_arcsec: Any = None,
        redshift: Any = None,
        pixel_scale_arcsec: float = 0.396,
        mask: Any = None,
        n_mc: int = 256,
        n_mc_derived: int = 8,
        batch_size: int = 256,
        seed: int = 0,
        refine_steps: int = 0,
        refine_lr: float = REFINE_LR,
        mask_neighbours: bool = False,
        refine_above_chi2: float | None = None,
        flips: bool = False,
        stand_in_bands: bool = True,
        regrid_pixels: bool = True,
        psf_image: Any = None,
    ) -> Posterior:
        """Amortized posterior for N images (see DESIGN.md's contract).

        With ``refine_steps > 0`` the posterior is semi-amortized (:mod:`galae.refine`): its mean
        is moved by that many Adam steps to the mode of -log p(image | u) - log q(u | image)
        (the likelihood through the renderer, with the encoder's posterior as the prior), and
        its covariance is the Laplace approximation there, with calibrated widths, each
        between half and the calibration's ceiling (1.5) times the amortized one.

        Without ``psf_fwhm_arcsec`` the PSF is taken to be the median SDSS seeing in every band
        (:func:`galae.data.conditions.median_psf_fwhm_arcsec`), with a warning: the fitted sizes
        and the maps then carry the error of that guess.

        ``psf_image`` (N, C, h, w) or (C, h, w), instead of ``psf_fwhm_arcsec``: the images of
        a point source (a survey's PSF model at each galaxy, on the stamps' pixels, centred on
        their geometric centre).  The likelihood then convolves with them (the refinement,
        ``model_images`` and ``chi2_per_pixel``), and the encoder, trained on Gaussian PSFs, is
        told the FWHM of the Gaussian with each image's half-light radius
        (:func:`galae.render.psf.gaussian_equivalent_fwhm_arcsec`).  Seeing has power-law
        wings; told only the FWHM of a Moffat PSF (beta 2.5-4.8), the packaged model's r-band
        half-light radii come out 10-26% too large, refined or not, at an unchanged chi2
        (``benchmarks/psf_shape.py``).

        With ``mask_neighbours`` other sources in the stamps (foreground stars, neighbouring
        galaxies) are found by segmentation (:func:`galae.data.segmentation.neighbour_mask`)
        and masked on top of ``mask``.

        Stamps of another size than the model's training stamps (``self.shape``) are put in a
        frame (:meth:`_frame`): a smaller one is centred in masked pixels of the model's size; of
        a larger one the encoder reads the centre cut of the model's size, while the renderer
        (the refinement's likelihood, ``model_images`` and the maps) covers the whole stamp.
        ``model_images``, ``maps`` and ``mask`` have the stamps' size, and ``dx_arcsec`` and
        ``dy_arcsec`` are offsets from the stamps' centre ((W - 1) / 2, (H - 1) / 2).

        Posterior means and standard deviations of the latents come from ``n_mc`` draws pushed
        through the bijection; those of the derived observables, and the per-pixel ones of the
        maps (``maps``, ``maps_std``), from ``n_mc_derived`` draws rendered PSF-free (more
        draws are made when ``n_mc_derived > n_mc``).  Galaxies with unknown redshift (None or
        NaN) get the joint posterior of latents and redshift, q(z | x) q(u | x, z), from the
        encoder's photometric-redshift head and the encoder told each of
        :data:`PHOTO_Z_NODES` redshifts (:class:`PhotoZMixture`); their ``model_maps`` and
        ``model_images`` are rendered at the photo-z median.

        A warning names the galaxies whose ``model_images`` fit them with a chi2 per pixel above
        :data:`POOR_FIT_CHI2_PER_PIXEL` (:attr:`Posterior.chi2_per_pixel`); for an amortized
        posterior it suggests ``refine_steps``.

        With ``refine_above_chi2`` (and ``refine_steps > 0``) only the galaxies that the
        amortized posterior fits with a chi2 per pixel above it are refined; the others keep the
        amortized posterior, exactly as ``encode`` without ``refine_steps`` gives it.  With
        ``encode``'s defaults refining 60 steps costs about 6 times an amortized encode per
        galaxy, and at SDSS depth about one galaxy in ten is refined, so this runs at a third
        of the cost of refining every galaxy (``benchmarks/refine_poor_fits.py``;
        docs/results.md, issue 4).  :attr:`Posterior.refined` says which were refined.

        With ``flips`` the encoder reads each stamp four times, as given and mirrored
        (:data:`FLIPS`), and its posterior means are averaged in the stamp's frame (the
        position angle as an axial mean), as is its photo-z posterior; the latents'
        covariance is that of the stamp as given.  The
        convolutional encoder is not exactly mirror-symmetric, and its estimates of a galaxy
        and of its mirror image differ (by 0.09 dex in stellar mass on the particle mocks, 0.03
        on the analytic ones); the average is mirror-equivariant and lowers that part of the
        error, for four times the encoder's cost (docs/results.md, issue 4).

        A galaxy that misses more whole bands (every pixel masked or NaN) than the encoder was
        trained without (:attr:`trained_missing_bands`) is shown to the encoder, with
        ``stand_in_bands``, with stand-ins for the extra ones: its neighbouring bands' light
        interpolated in log wavelength, at three times their noise (:mod:`galae.data.stand_in`); the
        likelihood never sees them.  Without stand-ins the packaged model's amortized magnitudes
        of grz data are 0.5 mag off; a warning names such galaxies either way
        (``benchmarks/missing_bands.py``).

        Stamps of another pixel scale than the model's (DECaLS 0.262", HSC 0.168") are shown to
        the encoder, with ``regrid_pixels``, on the model's pixel grid, by flux-conserving area
        weighting about the stamp's centre (:mod:`galae.render.regrid`); the likelihood stays on
        the stamp's own pixels.

        ``n_mc`` must be at least 2, ``n_mc_derived`` 0 or at least 2 (a spread needs two
        draws); with ``n_mc_derived = 0`` no draws are rendered, so ``params`` holds the latents
        and redshift but not the derived observables, and ``maps_std`` is empty.  ``seed``
        None draws fresh randomness.
        """
        n_mc = _integer(n_mc, "n_mc", 2)
        n_mc_derived = _integer(n_mc_derived, "n_mc_derived", 0)
        if n_mc_derived == 1:
            raise ValueError(
                "n_mc_derived must be 0 (no rendered draws) or >= 2 (a spread needs two draws)"
            )
        batch_size = _integer(batch_size, "batch_size", 1)
        refine_steps = _integer(refine_steps, "refine_steps", 0)
        seed = _seed(seed)
        if refine_above_chi2 is not None:
            if not (math.isfinite(float(refine_above_chi2)) and float(refine_above_chi2) > 0):
                raise ValueError(
                    f"refine_above_chi2 must be a positive chi2 per pixel, got {refine_above_chi2}"
                )
            if refine_steps <= 0:
                raise ValueError(
                    "refine_above_chi2 chooses which galaxies to refine: it needs refine_steps > 0"
                )
        view = _ViewOptions(bool(stand_in_bands), bool(regrid_pixels))
        full = self.make_batch(
            images,
            sigma,
            psf_fwhm_arcsec,
            redshift,
            pixel_scale_arcsec,
            mask,
            regrid_pixels,
            psf_image,
        )
        bands_gone = full.mask.flatten(2).all(-1)  # (N, C): bands without an unmasked pixel
        if mask_neighbours:
            full = self._mask_neighbours(full)
        _warn_masked_centres(full.mask, full.pixel_scale_arcsec)
        full, crop, shift = self._frame(full)
        known = torch.isfinite(full.redshift)
        everyone = torch.ones_like(known)

        def encode_rows(rows: Tensor, steps: int) -> tuple[list[Tensor], list[dict[str, Any]]]:
            # split into runs of known / unknown redshift, then into chunks
            parts = []
            for flag in (True, False):
                idx = torch.nonzero(rows & (known == flag)).flatten()
                for sl in _chunks(idx.numel(), batch_size):
                    parts.append(idx[sl])
            pieces = [
                self._encode_part(
                    full, ix, n_mc, n_mc_derived, seed, steps, refine_lr, flips, view=view
                )
                for ix in parts
            ]
            return parts, pieces

        if refine_above_chi2 is None:
            parts, pieces = encode_rows(everyone, refine_steps)
            post = self._assemble(
                full, crop, shift, known, parts, pieces, [refine_steps] * len(parts)
            )
        else:
            parts, pieces = encode_rows(everyone, 0)
            post = self._assemble(full, crop, shift, known, parts, pieces, [0] * len(parts))
            poor = post.chi2_per_pixel.to(known.device) > float(refine_above_chi2)
            if bool(poor.any()):
                more, refined = encode_rows(poor, refine_steps)
                steps = [0] * len(parts) + [refine_steps] * len(more)
                post = self._assemble(
                    full, crop, shift, known, parts + more, pieces + refined, steps
                )
        _warn_poor_fits(post.chi2_per_pixel, post.refined)
        _warn_missing_bands(
            bands_gone, post.refined, self.bands, self.trained_missing_bands, view.stand_in
        )
        return post

    def _assemble(
        self,
        full: Batch,
        crop: tuple[slice, slice],
        shift: tuple[float, float],
        known: Tensor,
        parts: list[Tensor],
        pieces: list[dict[str, Any]],
        steps: list[int],
    ) -> Posterior:
        """One :class:`Posterior` from the encoded parts (``parts[i]``: the galaxy indices of
        ``pieces[i]``, encoded with ``steps[i]`` refine steps).  Every galaxy is in at least one
        part; where it is in several, the last one counts."""
        n = known.numel()
        dev = known.device
        pos = torch.full((n,), -1, dtype=torch.long, device=dev)
        refined = torch.zeros(n, dtype=torch.bool, device=dev)
        offset = 0
        # the rows of the galaxies of unknown redshift in the concatenated photo-z mixtures
        mix_pos = torch.full((n,), -1, dtype=torch.long, device=dev)
        mix_offset = 0
        for ix, piece, k in zip(parts, pieces, steps, strict=True):
            pos[ix] = offset + torch.arange(ix.numel(), device=dev)
            refined[ix] = k > 0
            offset += ix.numel()
            if piece["mix"] is not None:
                mix_pos[ix] = mix_offset + torch.arange(ix.numel(), device=dev)
                mix_offset += ix.numel()
        if bool((pos < 0).any()):  # pragma: no cover - the callers cover every galaxy
            raise RuntimeError("internal error: a galaxy was not encoded")

        def cat(key: str) -> dict[str, Tensor]:
            names = pieces[0][key].keys()
            return {nm: torch.cat([p[key][nm] for p in pieces])[pos] for nm in names}

        loc = torch.cat([p["loc"] for p in pieces])[pos]
        # the refined posterior's covariance factor may have another rank than the amortized
        # one's: zero columns, which leave the covariance as it is, make them one shape
        fac = torch.cat(_same_rank([p["fac"] for p in pieces]))[pos]
        diag = torch.cat([p["diag"] for p in pieces])[pos]
        zl = torch.cat([p["zloc"] for p in pieces])[pos]
        zs = torch.cat([p["zscale"] for p in pieces])[pos]
        rec = torch.cat([p["rec"] for p in pieces])[pos][..., crop[0], crop[1]]
        # the joint photo-z posteriors of the galaxies of unknown redshift, in their order
        mixture, mixture_index = None, None
        if not bool(known.all()):
            mixture_index = torch.nonzero(~known).flatten()
            mixture = PhotoZMixture.cat([p["mix"] for p in pieces if p["mix"] is not None])
            mixture = mixture.take(mix_pos[mixture_index])
        return Posterior(
            params=_shift_centre(cat("mean"), shift),
            std=cat("std"),
            maps={k: v[..., crop[0], crop[1]] for k, v in cat("maps").items()},
            maps_std={k: v[..., crop[0], crop[1]] for k, v in cat("maps_std").items()},
            model_maps={k: v[..., crop[0], crop[1]] for k, v in cat("model_maps").items()},
            model_images=rec,
            mask=full.mask[..., crop[0], crop[1]],
            _owner=self,
            _batch=full,
            _loc=loc,
            _cov_factor=fac,
            _cov_diag=diag,
            _z_dist=(zl, zs),
            _mixture=mixture,
            _mixture_index=mixture_index,
            _crop=crop,
            _shift_arcsec=shift,
            _refined=refined,
            model_params=_shift_centre(cat("model_params"), shift),
        )

    def _frame(self, b: Batch) -> tuple[Batch, tuple[slice, slice], tuple[float, float]]:
        """The stamps in the frame the model works on, and where they lie in it.

        The encoder was trained on stamps of ``self.shape``; at another size its pooled features
        mean something else (a 51 x 51 SDSS stamp came out 5 magnitudes off).  So along each
        axis a smaller stamp is centred in a frame of the model's size, and a larger one gets
        one masked row (column) when the difference is odd, so that the model's stamp is an
        exact centre cut of the frame (:meth:`_encoder_view`: the encoder reads that cut).
        The padding is masked (no data: the likelihood ignores it).  The renderer draws the
        whole frame, and the outputs are cut back to the stamps.

        Returns:
            the framed batch; the (rows, columns) slices of the stamps in it; and the (x, y)
            offset in arcsec of the frame's centre from the stamps' centre (0 or half a
            pixel), which turns the frame's ``dx_arcsec``/``dy_arcsec`` into the stamps'.
        """
        h, w = b.images.shape[-2:]
        mh, mw = self.shape

        def axis(size: int, model: int) -> tuple[int, int, float]:
            """(padding before, padding after, frame centre - stamp centre in pixels)."""
            before = (model - size) // 2 if size <= model else 0
            after = model - size - before if size <= model else (size - model) % 2
            frame = size + before + after
            return before, after, (frame - 1) / 2 - before - (size - 1) / 2

        top, bottom, sy = axis(h, mh)
        left, right, sx = axis(w, mw)
        scale = b.pixel_scale_arcsec
        shift = (sx * scale, sy * scale)
        crop = (slice(top, top + h), slice(left, left + w))
        if top == bottom == left == right == 0:
            return b, crop, shift
        pads = (left, right, top, bottom)
        framed = replace(
            b,
            images=torch.nn.functional.pad(b.images, pads, value=0.0),
            sigma=torch.nn.functional.pad(b.sigma, pads, value=1.0),
            mask=torch.nn.functional.pad(b.mask, pads, value=True),
        )
        return framed, crop, shift

    def _encoder_view(self, b: Batch, opts: _ViewOptions) -> Batch:
        """What the encoder reads of a framed batch (:meth:`_frame`): the centre cut of the
        model's stamp size, or with ``opts.regrid`` and another pixel scale the stamp on the
        model's pixel grid (:mod:`galae.render.regrid`); with ``opts.stand_in``, stand-ins for
        the bands a galaxy misses beyond :attr:`trained_missing_bands`
        (:mod:`galae.data.stand_in`)."""
        if opts.regrid and not self._same_scale(b.pixel_scale_arcsec):
            from galae.render.regrid import regrid

            x, s, m = regrid(
                b.images, b.sigma, b.mask, b.pixel_scale_arcsec, self.pixel_scale_arcsec, self.shape
            )
            view = replace(b, images=x, sigma=s, mask=m, pixel_scale_arcsec=self.pixel_scale_arcsec)
        else:
            view = self._centre_cut(b)
        # the encoder reads psf_fwhm_arcsec (a PSF image's Gaussian equivalent); an image at the
        # stamp's pixel scale would not describe a regridded view
        view = replace(view, psf_image=None)
        gone = view.mask.flatten(2).all(-1).sum(1)
        if not opts.stand_in or not bool((gone > self.trained_missing_bands).any()):
            return view
        from galae.data import stand_in as standin

        si = standin.stand_in_bands(
            view.images,
            view.sigma,
            view.mask,
            view.psf_fwhm_arcsec,
            self.band_wavelengths_aa,
            self.trained_missing_bands,
            noise_factor=standin.STAND_IN_NOISE_FACTOR,  # read now: benchmarks vary it
        )
        return replace(
            view, images=si.images, sigma=si.sigma, mask=si.mask, psf_fwhm_arcsec=si.psf_fwhm_arcsec
        )

    def _same_scale(self, scale: float) -> bool:
        """Whether a pixel scale is the model's, to 1%."""
        return abs(scale / self.pixel_scale_arcsec - 1) <= 0.01

    @functools.cached_property
    def band_wavelengths_aa(self) -> tuple[float, ...]:
        """Effective wavelengths of the model's bands, Angstrom (speclite's filter curves)."""
        from galae.physics.bands import load_filters

        names = self.model.renderer.sps.filter_names
        return tuple(float(w.value) for w in load_filters(",".join(names)).effective_wavelengths)

    def _centre_cut(self, b: Batch) -> Batch:
        """The centre cut of a framed batch of the model's stamp size (:meth:`_encoder_view`)."""
        h, w = b.images.shape[-2:]
        mh, mw = self.shape
        if (h, w) == (mh, mw):
            return b
        if h < mh or w < mw or (h - mh) % 2 or (w - mw) % 2:  # pragma: no cover - _frame's job
            raise RuntimeError(f"internal error: a {h}x{w} frame for a {mh}x{mw} encoder")
        top, left = (h - mh) // 2, (w - mw) // 2
        rows, cols = slice(top, top + mh), slice(left, left + mw)
        return replace(
            b,
            images=b.images[..., rows, cols],
            sigma=b.sigma[..., rows, cols],
            mask=b.mask[..., rows, cols],
        )

    @staticmethod
    def _mask_neighbours(b: Batch) -> Batch:
        """``b`` with other sources masked (:func:`galae.data.segmentation.neighbour_mask`)."""
        from galae.data.segmentation import neighbour_mask

        other = neighbour_mask(b.images.cpu().numpy(), b.sigma.cpu().numpy(), b.mask.cpu().numpy())
        return b.with_mask(torch.as_tensor(other, device=b.mask.device))

    def _sub(self, b: Batch, ix: Tensor) -> Batch:
        return Batch(
            b.images[ix],
            b.sigma[ix],
            b.mask[ix],
            b.psf_fwhm_arcsec[ix],
            b.redshift[ix],
            b.pixel_scale_arcsec,
            b.bands,
            torch.arange(ix.numel(), device=ix.device),
            psf_image=None if b.psf_image is None else b.psf_image[ix],
        )

    def _refine(self, out: EncoderOutput, b: Batch, steps: int, lr: float) -> EncoderOutput:
        """The semi-amortized posterior (:func:`galae.refine.refine_posterior`)."""
        from galae.refine import (
            REFINED_SCALE_FORM,
            REFINED_WIDTH_CEILING,
            REFINED_WIDTH_FLOOR,
            refine_posterior,
        )

        cal = self.state.get("refined_posterior_calibration")
        if cal is None:
            _warn_caller(
                "this checkpoint's refined posterior is not calibrated: its Laplace widths are "
                "likely too narrow (python -m galae.calibrate --refine-steps N)"
            )
        elif int(cal.get("refine_steps", steps)) != steps:
            _warn_caller(
                f"the refined posterior's widths were calibrated for "
                f"{cal['refine_steps']} refine steps, not {steps}: they may be off"
            )
        elif (floor := float(cal.get("width_floor", 0.0))) != REFINED_WIDTH_FLOOR:
            _warn_caller(
                f"the refined posterior's widths were calibrated with a width floor of "
                f"{floor}, not galae's {REFINED_WIDTH_FLOOR}: they "
                "may be off (python -m galae.calibrate --refine-steps N again)"
            )
        # unknown redshifts: the photo-z posterior's median (its logit-normal has no closed mean)
        z = b.redshift if b.redshift_known else _z_transform()(out.z_loc)
        # the scales' form is the calibration's own (those that do not record it: covariance)
        form = REFINED_SCALE_FORM if cal is None else cal.get("scale_form", "covariance")
        # and so is the widths' ceiling (calibrations made before it was introduced: none), per
        # latent where the calibration left some latents without it
        ceiling = REFINED_WIDTH_CEILING if cal is None else cal.get("width_ceiling")
        if cal is not None and "width_ceiling_per_latent" in cal:
            ceiling = cal["width_ceiling_per_latent"]
        if isinstance(ceiling, dict):
            ceiling = [float(ceiling[n]) for n in REGISTRY.names]
        return refine_posterior(
            self.model, self.guide, out, b, steps, lr, z, scale_form=form, width_ceiling=ceiling
        )

    def _encode_part(
        self,
        full: Batch,
        ix: Tensor,
        n_mc: int,
        n_mc_derived: int,
        seed: int,
        refine_steps: int = 0,
        refine_lr: float = REFINE_LR,
        flips: bool = False,
        *,
        view: _ViewOptions,
    ) -> dict[str, Any]:
        b = self._sub(full, ix)
        g = _generator(seed, self.device)
        mix = None
        if b.redshift_known:
            out = photo = (
                self._flip_averaged(b, view)
                if flips
                else self.guide.encode(self._encoder_view(b, view))
            )
            if refine_steps > 0:
                out = self._refine(out, b, refine_steps, refine_lr)
            u = _draw(out, max(n_mc, n_mc_derived), g, antithetic=True)  # (k, B, D)
            z_all = b.redshift.expand(u.shape[0], -1)
            n_derived = n_mc_derived
            z_render = b.redshift
        else:
            # unknown redshift: q(z | x) q(u | x, z) on the photo-z nodes (PhotoZMixture)
            photo, mix = self._photo_z_mixture(b, refine_steps, refine_lr, flips, opts=view)
            # every node and whole antithetic pairs: a multiple of 2K derived draws
            n_derived = 2 * mix.n_nodes * math.ceil(n_mc_derived / (2 * mix.n_nodes))
            n_derived = n_derived if n_mc_derived > 0 else 0
            u, z_all = mix.draw(max(n_mc, n_derived), g, antithetic=True)
            out = mix.component(mix.n_nodes // 2)  # at the photo-z median
            z_render = mix.z[mix.n_nodes // 2]
        phys = REGISTRY.from_unconstrained(u)
        # antithetic draws: spreads about their mean with divisor k (_derived_and_map_moments)
        mean = {k: v.mean(0) for k, v in phys.items()}
        std = {k: v.std(0, correction=0) for k, v in phys.items()}
        if mix is None:
            mean["redshift"], std["redshift"] = b.redshift, torch.zeros_like(b.redshift)
        else:
            mean["redshift"], std["redshift"] = z_all.mean(0), z_all.std(0, correction=0)
        # derived observables and maps: averages over a few rendered draws
        map_mean: dict[str, Tensor] = {}
        map_std: dict[str, Tensor] = {}
        if n_derived > 0:
            dv, map_mean, map_std = _derived_and_map_moments(
                self.model.renderer,
                {k: v[:n_derived] for k, v in phys.items()},
                z_all[:n_derived],
                b,
            )
            for k, st in dv.items():
                mean[k] = st.mean(0)
                std[k] = st.std(0, correction=0)
        ren = self.model.render(out.loc, b, z_render)
        # the parameters of that one model (model_images, model_maps): its derived observables
        # from one more PSF-free drawing
        at_loc = REGISTRY.from_unconstrained(out.loc)
        model_params = dict(at_loc)
        model_params["redshift"] = z_render
        if n_derived > 0:
            one = _derived_flat(
                self.model.renderer, {k: v[None] for k, v in at_loc.items()}, z_render[None], b
            )
            model_params.update({k: v[0] for k, v in one.items()})
        return {
            "mean": mean,
            "model_params": model_params,
            "std": std,
            "maps": map_mean or ren.maps.named(),
            "maps_std": map_std,
            "model_maps": ren.maps.named(),
            "rec": ren.images,
            "loc": out.loc,
            "fac": out.cov_factor,
            "diag": out.cov_diag,
            "zloc": photo.z_loc,
            "zscale": photo.z_scale,
            "mix": mix,
        }

    def _flip_averaged(self, b: Batch, opts: _ViewOptions) -> EncoderOutput:
        """The encoder's output averaged over the mirrored stamps (:data:`FLIPS`,
        :func:`_flip_average`)."""
        view = self._encoder_view(b, opts)
        return _flip_average([self.guide.encode(_flipped(view, fx, fy)) for fx, fy in FLIPS], FLIPS)

    def _photo_z_mixture(
        self,
        b: Batch,
        refine_steps: int = 0,
        refine_lr: float = REFINE_LR,
        flips: bool = False,
        *,
        opts: _ViewOptions,
    ) -> tuple[EncoderOutput, PhotoZMixture]:
        """The encoder's output for an unknown redshift (its photo-z head) and the joint
        posterior q(z | x) q(u | x, z) of these galaxies (:class:`PhotoZMixture`).  The CNN runs
        once (once per mirrored stamp with ``flips``, the outputs averaged as in
        :meth:`_flip_averaged`); its head runs once per photo-z node, told that redshift (and,
        with ``refine_steps``, the refinement runs at each node)."""
        if not float(self.state["config"].get("sleep_photo_z_fraction", 0.0)) > 0:
            _warn_caller(
                "this checkpoint's photometric-redshift head was not trained on simulations "
                "(sleep_photo_z_fraction = 0); unless its training data had unknown redshifts "
                "(the ELBO then trains it), the photo-z of galaxies without a redshift is not "
                "reliable"
            )
        enc = self.guide.encoder
        frames = FLIPS if flips else FLIPS[:1]
        trunks = []
        view = self._encoder_view(b, opts)
        for fx, fy in frames:
            bf = _flipped(view, fx, fy)
            trunks.append(enc.trunk(bf.images, bf.sigma, bf.mask, bf.psf_fwhm_arcsec, None))
        photo = _flip_average([enc.head_outputs(feat, cond) for feat, cond in trunks], frames)
        nodes = photo_z_nodes(photo.z_loc, photo.z_scale, PHOTO_Z_NODES)  # (K, B)
        k, n = nodes.shape
        # node-major rows j*n + i: galaxy i told redshift z_j
        outs = [
            enc.head_outputs(
                feat.repeat(k, 1), enc.with_redshift(cond.repeat(k, 1), nodes.reshape(-1))
            )
            for feat, cond in trunks
        ]
        out = _flip_average(outs, frames)  # (its photo-z fields are not used: photo's are)
        if refine_steps > 0:
            rep = torch.arange(n, device=nodes.device).repeat(k)
            bk = replace(self._sub(b, rep), redshift=nodes.reshape(-1))
            out = self._refine(out, bk, refine_steps, refine_lr)
        d = out.loc.shape[-1]
        return photo, PhotoZMixture(
            nodes,
            out.loc.reshape(k, n, d),
            out.cov_factor.reshape(k, n, d, -1),
            out.cov_diag.reshape(k, n, d),
            photo.z_loc,
            photo.z_scale,
        )

    @torch.no_grad()
    def _posterior_draws(
        self, post: Posterior, k: int, seed: int | None, derived: bool
    ) -> dict[str, Tensor]:
        # latents and redshifts from one seeded stream (u = post.unconstrained_samples(k, seed))
        b = post._batch
        u, z = post._joint_draws(k, _generator(seed, post._loc.device))  # (k, N, D), (k, N)
        phys = REGISTRY.from_unconstrained(u)
        out = dict(phys)
        out["redshift"] = z
        if derived:
            out.update(_derived_flat(self.model.renderer, phys, z, b))
        return _shift_centre(out, post._shift_arcsec)

    @torch.no_grad()
    def _map_draws(
        self,
        post: Posterior,
        k: int,
        seed: int | None,
        names: str | Sequence[str] | None,
        chunk: int = 64,
    ) -> dict[str, Tensor]:
        k = _integer(k, "k", 1)
        if names is None:
            names = list(MAP_UNITS)
        else:  # one name or several
            names = [names] if isinstance(names, str) else list(names)
        unknown = sorted(set(names) - set(MAP_UNITS))
        if unknown:
            raise ValueError(f"unknown map name(s) {unknown}; the maps are {sorted(MAP_UNITS)}")
        u, z = post._joint_draws(k, _generator(seed, post._loc.device))  # (k, N, D), (k, N)
        phys = REGISTRY.from_unconstrained(u)
        rows, cols = post._crop
        parts: dict[str, list[Tensor]] = {nm: [] for nm in names}
        for _, params, obs in _draw_chunks(phys, z, post._batch, chunk):
            named = self.model.renderer.light(params, obs, validate=False)[1].named()
            for nm in names:
                parts[nm].append(named[nm][..., rows, cols])
        n = z.shape[1]
        return {nm: torch.cat(v).reshape(k, n, *v[0].shape[-2:]) for nm, v in parts.items()}

    # ----------------------------------------------------------------------------- sampling
    def conditions(self, n: int, seed: int) -> ObservingConditions:
        """SDSS-like observing conditions for n generated galaxies."""
        return sample_sdss_conditions(n, np.random.default_rng(seed), self.bands)

    @torch.no_grad()
    def render_samples(
        self,
        u: Tensor,
        redshift: Tensor,
        psf_fwhm_arcsec: Tensor,
        sky_sigma_nmgy: Tensor,
        gain_e_per_nmgy: Tensor | None,
        generator: torch.Generator,
        shape: tuple[int, int] | None = None,
        with_derived: bool = True,
        pixel_scale_arcsec: float | None = None,
        psf_image: Tensor | None = None,
    ) -> Samples:
        """Render unconstrained latents u (n, D) under the given conditions, with noise, on
        pixels of ``pixel_scale_arcsec`` (default the model's), through Gaussian PSFs of
        ``psf_fwhm_arcsec`` or, when given, the point-source images ``psf_image`` (n, C, h, w)."""
        shape = self.shape if shape is None else shape
        scale = self.pixel_scale_arcsec if pixel_scale_arcsec is None else pixel_scale_arcsec
        params = REGISTRY.from_unconstrained(u)
        psf = GaussianPSF(psf_fwhm_arcsec) if psf_image is None else PixelPSF(psf_image, scale)
        obs = Observation(redshift, psf, scale, shape, self.bands)
        ren = self.model.renderer(params, obs, validate=False)
        noisy, sig = add_noise(
            ren.images,
            sky_sigma_nmgy=sky_sigma_nmgy,
            gain_e_per_nmgy=gain_e_per_nmgy,
            generator=generator,
        )
        out_params = dict(params)
        out_params["redshift"] = redshift
        if with_derived:
            out_params.update(self.model.renderer.derived(params, obs, validate=False))
        return Samples(
            noisy,
            ren.images,
            sig,
            out_params,
            ren.maps.named(),
            redshift,
            psf_fwhm_arcsec,
            self.bands,
        )

    @torch.no_grad()
    def sample(
        self,
        n: int = 100,
        seed: int = 0,
        redshift: Any = None,
        psf_fwhm_arcsec: Any = None,
        sky_sigma_nmgy: Any = None,
        shape: tuple[int, int] | None = None,
        batch_size: int = 256,
        with_derived: bool = True,
    ) -> Samples:
        """Draw n new galaxies from the learned population prior.

        Observing conditions are inputs, not part of the population: ``redshift`` (n,) or scalar,
        ``psf_fwhm_arcsec`` (n, C) / (C,) / scalar, ``sky_sigma_nmgy`` (n, C) / (C,); whatever is
        not given is drawn from SDSS-like conditions with the same seed.  Work is done in chunks
        of ``batch_size`` so memory stays constant in n.
        """
        n = _integer(n, "n", 1)
        batch_size = _integer(batch_size, "batch_size", 1)
        seed = _seed(seed)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if shape is not None:
            if (
                not isinstance(shape, Sequence)
                or len(shape) != 2
                or not all(isinstance(v, int | np.integer) and v >= 1 for v in shape)
            ):
                raise ValueError(f"shape must be (H, W), two positive integers, got {shape!r}")
            shape = (int(shape[0]), int(shape[1]))
        cond = self.conditions(n, seed)
        dev, f32 = self.device, torch.float32
        c = len(self.bands)

        def pick(user: Any, default: np.ndarray, name: str, per_band: bool) -> Tensor:
            if user is None:
                return torch.as_tensor(default, dtype=f32, device=dev)
            t = as_tensor(user, name, f32, dev)
            target = (n, c) if per_band else (n,)
            if per_band and t.dim() == 1 and n == c and n > 1 and not bool((t == t[0]).all()):
                raise ValueError(
                    f"{name} of shape ({c},) is ambiguous for {n} galaxies of {c} bands: pass "
                    f"(n, C) = ({n}, {c}), or (1, {c}) for the same per-band value for all"
                )
            try:
                return t.expand(target).contiguous()
            except RuntimeError:
                raise ValueError(
                    f"{name} must broadcast to {target}, got {tuple(t.shape)}"
                ) from None

        z = pick(redshift, cond.redshift, "redshift", False)
        psf = pick(psf_fwhm_arcsec, cond.psf_fwhm_arcsec, "psf_fwhm_arcsec", True)
        sky = pick(sky_sigma_nmgy, cond.sky_sigma_nmgy, "sky_sigma_nmgy", True)
        gain = torch.as_tensor(cond.gain_e_per_nmgy, dtype=f32, device=dev)
        g = torch.Generator(device=dev).manual_seed(seed)
        parts = []
        for sl in _chunks(n, batch_size):
            u = self.model.prior.sample(sl.stop - sl.start, generator=g)
            parts.append(
                self.render_samples(u, z[sl], psf[sl], sky[sl], gain[sl], g, shape, with_derived)
            )
        return _cat_samples(parts)

    @torch.no_grad()
    def analogues(
        self,
        image: Any,
        sigma: Any,
        n: int = 100,
        psf_fwhm_arcsec: Any = None,
        redshift: Any = None,
        pixel_scale_arcsec: float | None = None,
        mask: Any = None,
        seed: int = 0,
        batch_size: int = 256,
        refine_steps: int = 0,
        mask_neighbours: bool = False,
        posterior: Posterior | None = None,
        psf_image: Any = None,
    ) -> Samples:
        """n galaxies drawn from the posterior of one observed image, rendered under its
        conditions (same PSF, redshift and per-band noise level) on a stamp of its size.

        The posterior is :meth:`encode`'s for this image, with the same ``refine_steps`` and
        ``mask_neighbours``; with the redshift unknown the draws are joint in latents and
        redshift (:class:`PhotoZMixture`).  The noise level of each band is the median sigma
        of its unmasked pixels.  Without ``psf_fwhm_arcsec`` the median SDSS seeing is assumed,
        with a warning, as in :meth:`encode`; ``psf_image`` (C, h, w) instead of it is the PSF
        as an image, as in :meth:`encode`, and the analogues are drawn through it.  They are
        drawn on the image's pixels (its ``pixel_scale_arcsec``).

        ``posterior``: :meth:`encode`'s posterior of this same image (with the same arguments),
        when the caller has it already; the image is then not encoded again, and
        ``refine_steps`` and ``mask_neighbours`` must be left at their defaults (they are the
        posterior's).  It must come from this model and hold this one galaxy: the same images,
        sigma, PSF and redshift."""
        n = _integer(n, "n", 1)
        batch_size = _integer(batch_size, "batch_size", 1)
        refine_steps = _integer(refine_steps, "refine_steps", 0)
        seed = _seed(seed)
        if posterior is not None and not isinstance(posterior, Posterior):
            raise ValueError(
                f"analogues: posterior must be a Posterior from encode, got "
                f"{type(posterior).__name__}"
            )
        b = self.make_batch(
            image,
            sigma,
            psf_fwhm_arcsec,
            redshift,
            pixel_scale_arcsec,
            mask,
            regrid_pixels=True,
            psf_image=psf_image,
        )
        if b.size != 1:
            raise ValueError(f"analogues takes one image, got {b.size}")
        if posterior is not None:
            if refine_steps != 0 or mask_neighbours:
                raise ValueError(
                    "analogues: refine_steps and mask_neighbours are the given posterior's; "
                    "pass them to encode, not here"
                )
            if posterior.model is not self:
                raise ValueError("analogues: the posterior was made by another GalaeModel")
            if posterior.mask.shape[0] != 1 or tuple(posterior.mask.shape[-2:]) != tuple(
                b.images.shape[-2:]
            ):
                raise ValueError(
                    f"analogues: the posterior holds {posterior.mask.shape[0]} galaxies on "
                    f"{tuple(posterior.mask.shape[-2:])} stamps; the image is one galaxy on "
                    f"{tuple(b.images.shape[-2:])}"
                )
            if bool(posterior.redshift_given[0]) != bool(torch.isfinite(b.redshift[0])):
                raise ValueError(
                    "analogues: the posterior and the call disagree on whether the redshift "
                    "is known"
                )
            rows, cols = posterior._crop
            pb = posterior._batch
            # compared where the posterior used the pixels: mask_neighbours set the others
            # (other sources) to image 0 and sigma 1 in the posterior's batch, not in the call's
            used = ~pb.mask[..., rows, cols]
            differ = [
                name
                for name, mine, theirs in (
                    ("images", pb.images[..., rows, cols][used], b.images[used]),
                    ("sigma", pb.sigma[..., rows, cols][used], b.sigma[used]),
                    ("psf_fwhm_arcsec", pb.psf_fwhm_arcsec, b.psf_fwhm_arcsec),
                    ("redshift", pb.redshift, b.redshift),
                )
                if not torch.allclose(mine, theirs, equal_nan=True)
            ]
            if (pb.psf_image is None) != (b.psf_image is None) or (
                b.psf_image is not None
                and (
                    pb.psf_image.shape != b.psf_image.shape
                    or not torch.allclose(pb.psf_image, b.psf_image)
                )
            ):
                differ.append("psf_image")
            if differ:
                raise ValueError(
                    f"analogues: the posterior was not encoded from this image (its "
                    f"{', '.join(differ)} differ from the call's)"
                )
        sky = torch.stack(
            [
                torch.median(b.sigma[0, i][~b.mask[0, i]])
                if (~b.mask[0, i]).any()
                else torch.tensor(1.0, device=self.device)
                for i in range(b.images.shape[1])
            ]
        )
        post = (
            posterior
            if posterior is not None
            else self.encode(
                b.images,
                b.sigma,
                psf_fwhm_arcsec=b.psf_fwhm_arcsec if b.psf_image is None else None,
                psf_image=b.psf_image,
                redshift=b.redshift,
                pixel_scale_arcsec=b.pixel_scale_arcsec,
                mask=b.mask,
                n_mc=2,
                n_mc_derived=0,
                seed=seed,
                refine_steps=refine_steps,
                mask_neighbours=mask_neighbours,
            )
        )
        # one stream: the posterior draws, then the noise of their images
        g = _generator(seed, post._loc.device)
        u, z = post._joint_draws(n, g)  # (n, 1, D), (n, 1)
        psf = b.psf_fwhm_arcsec.expand(n, -1)
        psf_img = None if b.psf_image is None else b.psf_image.expand(n, -1, -1, -1)
        shape = tuple(post._batch.images.shape[-2:])
        parts = []
        for sl in _chunks(n, batch_size):
            k = sl.stop - sl.start
            parts.append(
                self.render_samples(
                    u[sl, 0],
                    z[sl, 0],
                    psf[sl],
                    sky.expand(k, -1),
                    None,
                    g,
                    shape,
                    pixel_scale_arcsec=b.pixel_scale_arcsec,
                    psf_image=None if psf_img is None else psf_img[sl],
                )
            )
        out = _cat_samples(parts)
        rows, cols = post._crop
        return replace(
            out,
            images=out.images[..., rows, cols],
            model_images=out.model_images[..., rows, cols],
            sigma=out.sigma[..., rows, cols],
            params=_shift_centre(out.params, post._shift_arcsec),
            maps={k: v[..., rows, cols] for k, v in out.maps.items()},
        )


def _draw(q: Any, k: int, g: torch.Generator, antithetic: bool = False) -> Tensor:
    """k reparameterised draws from a low-rank Gaussian with an explicit generator.

    ``q`` is anything with ``loc`` (B, D), ``cov_factor`` (B, D, r) and ``cov_diag`` (B, D): a
    ``LowRankMultivariateNormal`` or an :class:`~galae.encoder.EncoderOutput` (no Cholesky
    factor is formed, so the full-rank refined posteriors of :mod:`galae.refine` draw exactly).

    With ``antithetic`` the draws come in mirrored pairs ``loc + d, loc - d`` (the last one
    unpaired when k is odd).  Each draw is still distributed as q, so averages over them stay
    unbiased estimates of posterior means, but the part of a function that is linear in the
    latents cancels within each pair: for the smooth derived observables this cuts the Monte Carlo
    error of a mean over a few rendered draws several-fold.
    """
    loc, fac, diag = q.loc, q.cov_factor, q.cov_diag
    k_eps = (k + 1) // 2 if antithetic else k
    eps_w = torch.randn(k_eps, *loc.shape[:-1], fac.shape[-1], generator=g, device=loc.device)
    eps_d = torch.randn(k_eps, *loc.shape, generator=g, device=loc.device)
    d = (fac @ eps_w.unsqueeze(-1)).squeeze(-1) + diag.sqrt() * eps_d
    if antithetic:
        d = torch.stack([d, -d], 1).flatten(0, 1)[:k]
    return loc + d


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device``, seeded with ``seed`` (None: a fresh random seed)."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(_integer(seed, "seed", 0))
    return g


def _z_transform() -> Any:
    from galae.model import redshift_transform

    return redshift_transform()


def _cat_samples(parts: list[Samples]) -> Samples:
    def cat_dict(key: str) -> dict[str, Tensor]:
        return {k: torch.cat([getattr(p, key)[k] for p in parts]) for k in getattr(parts[0], key)}

    return Samples(
        images=torch.cat([p.images for p in parts]),
        model_images=torch.cat([p.model_images for p in parts]),
        sigma=torch.cat([p.sigma for p in parts]),
        params=cat_dict("params"),
        maps=cat_dict("maps"),
        redshift=torch.cat([p.redshift for p in parts]),
        psf_fwhm_arcsec=torch.cat([p.psf_fwhm_arcsec for p in parts]),
        bands=parts[0].bands,
    )


_DEFAULT: dict[str, GalaeModel] = {}


def load(path: str | Path | None = None, device: str | torch.device = "cpu") -> GalaeModel:
    """Load a checkpoint, or the packaged default model when ``path`` is None."""
    if path is None:
        p = default_model_path()
        if not p.is_file():
            raise FileNotFoundError(
                f"the packaged default model is missing ({p}); train one with "
                "`python -m galae.train --config configs/quickstart.yaml` and load it by path"
            )
        key = f"default:{device}"
        if key not in _DEFAULT:
            _DEFAULT[key] = GalaeModel.from_checkpoint(p, device)
        return _DEFAULT[key]
    return GalaeModel.from_checkpoint(path, device)


def sample(
    n: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    model: str | Path | None = None,
    **conditions: Any,
) -> Samples:
    """``galae.sample(n=100, seed=0)``: n galaxies from the packaged default model's prior."""
    return load(model, device).sample(n=n, seed=seed, **conditions)


def fit_population_prior(
    model: GalaxyModel,
    guide: GalaxyGuide,
    loader: Any,
    cfg: Any,
    device: torch.device,
    draws_per_galaxy: int = 4,
    flow: Any = None,
    epochs: int | None = None,
    install: bool = True,
) -> Any:
    """Fit a :class:`~galae.prior.FlowPrior` to the aggregate posterior of the training set.

    This is the prior's update in wake-sleep: maximising the ELBO over the prior's parameters
    is maximum likelihood of the prior on draws from q(u | x) over the data.

    Args:
        flow: a fitted flow to warm-start (its standardisation is kept); None makes a new one.
        epochs: default ``cfg.prior_epochs``.
        install: set ``model.prior`` to the fitted flow.
    Returns:
        the fitted flow.
    """
    from galae.prior import FlowPrior, fit_flow_prior

    was_training = guide.training
    guide.eval()
    with torch.no_grad():
        locs, facs, diags = [], [], []
        for batch in loader:
            out = guide.encode(batch.to(device))
            locs.append(out.loc)
            facs.append(out.cov_factor)
            diags.append(out.cov_diag)
        loc, fac, diag = torch.cat(locs), torch.cat(facs), torch.cat(diags)
    guide.train(was_training)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 17)
    q = torch.distributions.LowRankMultivariateNormal(loc, fac, diag)

    def draws() -> Iterator[Tensor]:
        u = _draw(q, draws_per_galaxy, gen).reshape(-1, loc.shape[-1])
        perm = torch.randperm(u.shape[0], generator=gen, device=device)
        for sl in _chunks(u.shape[0], 512):
            yield u[perm[sl]]

    warm = flow is not None
    if flow is None:
        flow = FlowPrior(loc.shape[-1], n_layers=cfg.prior_layers).to(device)
    fit_flow_prior(
        flow,
        draws,
        epochs=cfg.prior_epochs if epochs is None else epochs,
        progress=cfg.progress,
        standardise=not warm,
    )
    if install:
        model.prior = flow
    return flow
