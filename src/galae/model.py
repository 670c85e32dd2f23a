"""The Pyro model and guide of galae.

:class:`GalaxyModel` tells the generative story of a survey stamp; :class:`GalaxyGuide` is the
amortized posterior given by the encoder.  Both are ``PyroModule``s whose parameters stay local
to the modules (``pyro.settings`` ``module_local_params``): there is no global param store, and
training uses ``Trace_ELBO().differentiable_loss`` with an ordinary torch optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import Tensor

from galae.encoder import EncoderOutput, GalaxyEncoder
from galae.latent import REDSHIFT_FALLBACK_RANGE, REGISTRY, LatentRegistry
from galae.likelihood import pixel_distribution
from galae.render.observation import Observation
from galae.render.psf import GaussianPSF, PixelPSF
from galae.render.renderer import GalaxyRenderer, Rendering

__all__ = ["Batch", "GalaxyModel", "GalaxyGuide", "redshift_transform"]

# Keep PyroModule parameters inside their modules (no global param store).
pyro.settings.set(module_local_params=True)


@dataclass(frozen=True)
class Batch:
    """A batch of observed stamps.

    Attributes:
        images: (B, C, H, W) nanomaggies.
        sigma: (B, C, H, W) per-pixel noise, nanomaggies.
        mask: (B, C, H, W) bool, True = ignore the pixel.
        psf_fwhm_arcsec: (B, C).
        redshift: (B,), NaN where unknown.
        pixel_scale_arcsec: pixel side.
        bands: band names in the order of axis 1.
        index: (B,) long, position of each galaxy in its data set (plate subsample indices).
        truth_u: (B, D) unconstrained truth latents when the data set has them (only the
            optional supervised term reads them), else None.
        psf_image: (B, C, h, w) point-source images at ``pixel_scale_arcsec``
            (:class:`galae.render.psf.PixelPSF`'s convention) when the PSF is known as an
            image: the renderer (the likelihood) uses them, and ``psf_fwhm_arcsec`` is what the
            encoder is told (:func:`galae.render.psf.gaussian_equivalent_fwhm_arcsec`); None:
            a Gaussian PSF of ``psf_fwhm_arcsec``.
    """

    images: Tensor
    sigma: Tensor
    mask: Tensor
    psf_fwhm_arcsec: Tensor
    redshift: Tensor
    pixel_scale_arcsec: float
    bands: tuple[str, ...]
    index: Tensor
    truth_u: Tensor | None = None
    psf_image: Tensor | None = None

    @property
    def size(self) -> int:
        return self.images.shape[0]

    @property
    def redshift_known(self) -> bool:
        """True when every galaxy of the batch has a redshift; mixed batches are split upstream."""
        known = torch.isfinite(self.redshift)
        if bool(known.any()) and not bool(known.all()):
            raise ValueError("a batch must have all redshifts known or all unknown")
        return bool(known.all())

    def observation(self, redshift: Tensor | None = None) -> Observation:
        z = self.redshift if redshift is None else redshift
        h, w = self.images.shape[-2:]
        psf = (
            GaussianPSF(self.psf_fwhm_arcsec)
            if self.psf_image is None
            else PixelPSF(self.psf_image, self.pixel_scale_arcsec)
        )
        return Observation(z, psf, self.pixel_scale_arcsec, (h, w), self.bands)

    def with_mask(self, extra: Tensor) -> Batch:
        """The batch with the ``extra`` (B, C, H, W) pixels masked too, in the convention of
        :meth:`galae.sampling.GalaeModel.make_batch`: image 0 and sigma 1 on masked pixels."""
        mask = self.mask | extra
        return replace(
            self,
            mask=mask,
            images=torch.where(mask, 0.0, self.images),
            sigma=torch.where(mask, 1.0, self.sigma),
        )

    def to(self, device: torch.device | str) -> Batch:
        return replace(
            self,
            images=self.images.to(device),
            sigma=self.sigma.to(device),
            mask=self.mask.to(device),
            psf_fwhm_arcsec=self.psf_fwhm_arcsec.to(device),
            redshift=self.redshift.to(device),
            index=self.index.to(device),
            truth_u=None if self.truth_u is None else self.truth_u.to(device),
            psf_image=None if self.psf_image is None else self.psf_image.to(device),
        )


def _galaxy_plate(batch: Batch, n_total: int | None) -> pyro.plate:
    """The plate over galaxies: the whole batch, or a subsample of a data set of n_total."""
    if n_total is None:
        return pyro.plate("galaxies", batch.size)
    return pyro.plate("galaxies", n_total, subsample=batch.index)


def redshift_transform() -> dist.transforms.Transform:
    """logit-space -> redshift within :data:`REDSHIFT_FALLBACK_RANGE`."""
    lo, hi = REDSHIFT_FALLBACK_RANGE
    return dist.transforms.ComposeTransform(
        [dist.transforms.SigmoidTransform(), dist.transforms.AffineTransform(lo, hi - lo)]
    )


class GalaxyModel(PyroModule):
    """Generative story of a batch of galaxy stamps.

    For each galaxy n (a plate over the data set, subsampled by the batch):

    1. its unconstrained latent u_n ~ p(u), the population prior (broad or learned);
    2. its physical parameters are theta_n = b(u_n), the registry's bijection;
    3. its redshift is the observed one, or z_n ~ Uniform(fallback range) when unknown;
    4. the renderer draws the noiseless image m_n = R(theta_n, z_n, PSF_n);
    5. each unmasked pixel is x_nbij ~ Normal(m_nbij, sigma_nbij) (or Student-t).

    Args:
        renderer: the decoder.
        prior: a prior module with ``dist(n)`` (see :mod:`galae.prior`).
        likelihood: "gaussian" or "student_t".
        df: Student-t degrees of freedom.
    """

    def __init__(
        self,
        renderer: GalaxyRenderer,
        prior: torch.nn.Module,
        likelihood: str = "gaussian",
        df: float = 4.0,
        registry: LatentRegistry = REGISTRY,
    ) -> None:
        super().__init__()
        self.renderer = renderer
        self.prior = prior
        self.likelihood = likelihood
        self.df = df
        self.registry = registry

    def prior_dist(self, n: int) -> dist.Distribution:
        """p(u): batch (n,), event (D,)."""
        return self.prior.dist(n)

    def redshift_prior_dist(self, like: Tensor) -> dist.Distribution:
        """p(z) when unknown: uniform over the fallback range, batch (B,)."""
        lo, hi = REDSHIFT_FALLBACK_RANGE
        return dist.Uniform(torch.full_like(like, lo), torch.full_like(like, hi))

    def likelihood_dist(self, model_images: Tensor, batch: Batch) -> dist.Distribution:
        """p(x | m): event (C, H, W)."""
        return pixel_distribution(model_images, batch.sigma, batch.mask, self.likelihood, self.df)

    def render(self, u: Tensor, batch: Batch, redshift: Tensor | None = None) -> Rendering:
        params = self.registry.from_unconstrained(u)
        return self.renderer(params, batch.observation(redshift), validate=False)

    def render_images(self, u: Tensor, batch: Batch, redshift: Tensor | None = None) -> Tensor:
        """The noiseless images alone (``GalaxyRenderer.images``: no maps, faster)."""
        params = self.registry.from_unconstrained(u)
        return self.renderer.images(params, batch.observation(redshift), validate=False)

    def forward(self, batch: Batch, n_total: int | None = None) -> Tensor:
        b = batch.size
        with _galaxy_plate(batch, n_total):
            u = pyro.sample("u", self.prior_dist(b))
            z = None
            if not batch.redshift_known:
                z = pyro.sample("redshift", self.redshift_prior_dist(batch.redshift))
            model_images = self.render_images(u, batch, z)
            data = torch.where(batch.mask, torch.zeros_like(batch.images), batch.images)
            pyro.sample("obs", self.likelihood_dist(model_images, batch), obs=data)
        return model_images


class GalaxyGuide(PyroModule):
    """Amortized posterior q(u, z | x) = N(u; mu(x), W(x)W(x)^T + diag(d(x))) [x q(z | x)].

    The redshift factor is used only for galaxies without a redshift.
    """

    def __init__(self, encoder: GalaxyEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def encode(self, batch: Batch) -> EncoderOutput:
        return self.encoder(
            batch.images,
            batch.sigma,
            batch.mask,
            batch.psf_fwhm_arcsec,
            batch.redshift if batch.redshift_known else None,
        )

    @staticmethod
    def posterior_dist(out: EncoderOutput) -> dist.Distribution:
        """q(u | x): batch (B,), event (D,)."""
        return dist.LowRankMultivariateNormal(out.loc, out.cov_factor, out.cov_diag)

    @staticmethod
    def redshift_dist(out: EncoderOutput) -> dist.Distribution:
        """q(z | x): batch (B,), a logit-normal within the fallback range."""
        return dist.TransformedDistribution(
            dist.Normal(out.z_loc, out.z_scale), redshift_transform()
        )

    def forward(self, batch: Batch, n_total: int | None = None) -> EncoderOutput:
        out = self.encode(batch)
        with _galaxy_plate(batch, n_total):
            pyro.sample("u", self.posterior_dist(out))
            if not batch.redshift_known:
                pyro.sample("redshift", self.redshift_dist(out))
        return out
