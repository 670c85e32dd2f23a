"""The encoder: images (+ sigma, mask, PSF, redshift) -> the parameters of q(latent | image).

Noise-aware input scaling: each band is divided by its typical pixel noise and compressed with
asinh, so the network sees signal-to-noise, not flux::

    x = asinh(image / s) / ASINH_SOFTENING,   s = median over unmasked pixels of sigma

Observing conditions (log s, PSF FWHM, redshift and whether it is known) enter as a vector that is
concatenated to the pooled image features.  A residual CNN (GroupNorm, SiLU, strided stages) is
followed by an MLP that returns a low-rank-plus-diagonal Gaussian in the latent's unconstrained
space (so the posterior can hold the age-metallicity-dust degeneracy), and a Gaussian over
logit-redshift (a photometric-redshift head, used when the redshift is unknown).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EncoderConfig", "EncoderOutput", "GalaxyEncoder", "prepare_inputs", "ASINH_SOFTENING"]

ASINH_SOFTENING: float = 3.0
_LOG_SIGMA_CENTER: float = -2.0  # log10 of a typical SDSS sky sigma in nmgy per pixel
_PSF_CENTER_ARCSEC: float = 1.4
_LOC_BOUND: float = 15.0


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of :class:`GalaxyEncoder`.

    Attributes:
        n_bands: number of image bands C.
        latent_dim: D, the number of latents.
        widths: channels of the CNN stages; every stage after the first halves the resolution.
        blocks_per_stage: residual blocks per stage.
        hidden: width of the MLP head.
        rank: rank of the low-rank covariance factor.
        pool: the feature map is average-pooled to pool x pool before the MLP (keeps position).
        groups: GroupNorm groups.
        stem_stride: stride of the first convolution (2 halves the resolution at once: the PSF
            spans several pixels, and the encoder's cost drops about fourfold).
    """

    n_bands: int = 5
    latent_dim: int = 20
    widths: tuple[int, ...] = (32, 64, 96, 128)
    blocks_per_stage: int = 1
    hidden: int = 256
    rank: int = 4
    pool: int = 4
    groups: int = 8
    stem_stride: int = 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


@dataclass(frozen=True)
class EncoderOutput:
    """Parameters of q.

    Attributes:
        loc: (B, D) mean of the unconstrained latent.
        cov_factor: (B, D, rank) low-rank factor W of the covariance W W^T + diag(cov_diag).
        cov_diag: (B, D) positive diagonal.
        z_loc, z_scale: (B,) Gaussian over logit of the redshift within its fallback range.
    """

    loc: Tensor
    cov_factor: Tensor
    cov_diag: Tensor
    z_loc: Tensor
    z_scale: Tensor

    def distribution(self) -> torch.distributions.LowRankMultivariateNormal:
        return torch.distributions.LowRankMultivariateNormal(
            self.loc, self.cov_factor, self.cov_diag
        )

    def marginal_variance(self, dtype: torch.dtype | None = None) -> Tensor:
        """(B, D) the diagonal of W W^T + diag(cov_diag), computed in ``dtype`` (default the
        factor's)."""
        factor, diag = self.cov_factor, self.cov_diag
        if dtype is not None:
            factor, diag = factor.to(dtype), diag.to(dtype)
        return (factor**2).sum(-1) + diag


def prepare_inputs(
    images: Tensor,
    sigma: Tensor,
    mask: Tensor | None,
    psf_fwhm_arcsec: Tensor,
    redshift: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Scaled image tensor (B, C+3, H, W) and conditioning vector (B, 2C+2).

    Image channels: asinh-scaled bands, a "masked in any band" channel, x and y coordinates
    in [-1, 1] (so that position survives pooling).  Masked pixels are zero.
    """
    b, c, h, w = images.shape
    good = torch.ones_like(images, dtype=torch.bool) if mask is None else ~mask
    sig = torch.where(good, sigma, torch.full_like(sigma, float("nan")))
    s = torch.nanmedian(sig.flatten(2), dim=-1).values  # (B, C)
    s = torch.where(torch.isfinite(s), s, torch.ones_like(s)).clamp_min(1e-12)
    x = torch.asinh(images / s[..., None, None]) / ASINH_SOFTENING
    x = torch.where(good, x, torch.zeros_like(x))
    any_masked = (~good).any(1, keepdim=True).to(images.dtype)
    yy = torch.linspace(-1, 1, h, dtype=images.dtype, device=images.device)
    xx = torch.linspace(-1, 1, w, dtype=images.dtype, device=images.device)
    coords = torch.stack(torch.meshgrid(yy, xx, indexing="ij")).expand(b, 2, h, w)
    img_in = torch.cat([x, any_masked, coords], 1)

    cond = torch.cat(
        [
            torch.log10(s) - _LOG_SIGMA_CENTER,
            psf_fwhm_arcsec / _PSF_CENTER_ARCSEC - 1.0,
            redshift_conditioning(redshift, b, images),
        ],
        -1,
    )
    return img_in, cond


def redshift_conditioning(redshift: Tensor | None, b: int, like: Tensor) -> Tensor:
    """The conditioning vector's last two columns (B, 2): z / 0.1 and "known" (1 or 0).

    ``redshift`` (B,) with NaN where unknown, or None (all unknown: zeros); ``like`` gives the
    dtype and device.
    """
    if redshift is None:
        return torch.zeros(b, 2, dtype=like.dtype, device=like.device)
    known = torch.isfinite(redshift)
    z = torch.where(known, redshift, torch.zeros_like(redshift))
    return torch.stack([z / 0.1, known.to(z.dtype)], -1).to(like.dtype)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.n1 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.silu(self.n1(self.conv1(x)))
        y = self.n2(self.conv2(y))
        return F.silu(y + self.skip(x))


class GalaxyEncoder(nn.Module):
    """Residual CNN + MLP head returning :class:`EncoderOutput`."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.n_bands + 3, cfg.widths[0], 3, cfg.stem_stride, 1, bias=False),
            nn.GroupNorm(min(cfg.groups, cfg.widths[0]), cfg.widths[0]),
            nn.SiLU(),
        ]
        c_prev = cfg.widths[0]
        for i, wdt in enumerate(cfg.widths):
            for j in range(cfg.blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(_ResBlock(c_prev, wdt, stride, cfg.groups))
                c_prev = wdt
        layers.append(nn.AdaptiveAvgPool2d(cfg.pool))
        self.cnn = nn.Sequential(*layers)
        d, r = cfg.latent_dim, cfg.rank
        n_cond = 2 * cfg.n_bands + 2
        self.head = nn.Sequential(
            nn.Linear(c_prev * cfg.pool * cfg.pool + n_cond, cfg.hidden),
            nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.SiLU(),
        )
        self.out_loc = nn.Linear(cfg.hidden, d)
        self.out_factor = nn.Linear(cfg.hidden, d * r)
        self.out_diag = nn.Linear(cfg.hidden, d)
        self.out_z = nn.Linear(cfg.hidden, 2)
        for lin in (self.out_loc, self.out_factor, self.out_diag, self.out_z):
            nn.init.zeros_(lin.bias)
            lin.weight.data.mul_(0.1)
        # Per-latent widening (> 1) or narrowing (< 1) of q's marginal widths, fitted after
        # training by simulation (galae.calibrate); ones leave q as trained.
        self.register_buffer("posterior_scale", torch.ones(d))
        # The same for the refined (semi-amortized) posterior, galae.refine's Laplace widths
        # (galae.calibrate --refine-steps N); ones leave them as computed.
        self.register_buffer("refined_posterior_scale", torch.ones(d))
        # Mixed precision: the CNN trunk and MLP head run under autocast to this dtype (e.g.
        # torch.bfloat16 on CUDA; None = full precision).  The output layers, and so q's
        # parameters and its Cholesky factor, stay float32.  Set by the trainer, not saved.
        self.autocast_dtype: torch.dtype | None = None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # checkpoints written before the calibration existed: uncalibrated (ones)
        state_dict.setdefault(prefix + "posterior_scale", torch.ones_like(self.posterior_scale))
        state_dict.setdefault(
            prefix + "refined_posterior_scale", torch.ones_like(self.refined_posterior_scale)
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        images: Tensor,
        sigma: Tensor,
        mask: Tensor | None,
        psf_fwhm_arcsec: Tensor,
        redshift: Tensor | None,
    ) -> EncoderOutput:
        """images, sigma, mask: (B, C, H, W); psf_fwhm_arcsec: (B, C); redshift: (B,) or None."""
        return self.head_outputs(*self.trunk(images, sigma, mask, psf_fwhm_arcsec, redshift))

    def trunk(
        self,
        images: Tensor,
        sigma: Tensor,
        mask: Tensor | None,
        psf_fwhm_arcsec: Tensor,
        redshift: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """The CNN's pooled features (B, F) and the conditioning vector (B, 2C+2).

        The CNN sees the images alone; the redshift enters only the conditioning vector, so
        the same features serve a known and an unknown redshift (:meth:`photo_z`).
        """
        if images.shape[1] != self.config.n_bands:
            raise ValueError(f"encoder expects {self.config.n_bands} bands, got {images.shape[1]}")
        img_in, cond = prepare_inputs(images, sigma, mask, psf_fwhm_arcsec, redshift)
        amp = self.autocast_dtype
        with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
            feat = self.cnn(img_in).flatten(1)
        return feat, cond

    def head_outputs(self, feat: Tensor, cond: Tensor) -> EncoderOutput:
        """q's parameters from the trunk's features and the conditioning vector."""
        hdn = self._hidden(feat, cond)
        with torch.autocast(feat.device.type, enabled=False):
            return self._outputs(hdn, feat.shape[0])

    @staticmethod
    def with_redshift(cond: Tensor, redshift: Tensor | None) -> Tensor:
        """``cond`` (from :meth:`trunk`) told another redshift (B,) (NaN or None: unknown)."""
        return torch.cat([cond[:, :-2], redshift_conditioning(redshift, cond.shape[0], cond)], -1)

    def photo_z(self, feat: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """The photometric-redshift head alone, on inputs that carry no gradient.

        ``feat``, ``cond``: from :meth:`trunk` (with or without a redshift: its entries of the
        conditioning vector are set to "unknown" here).  Returns (z_loc, z_scale), each (B,): the
        logit-normal q(z | x) that :meth:`forward` gives for an unknown redshift, with the MLP
        head under ``no_grad``, so that a loss on it trains ``out_z`` only and leaves the latent
        posterior where it is.
        """
        with torch.no_grad():
            hdn = self._hidden(feat.detach(), self.with_redshift(cond, None))
        with torch.autocast(feat.device.type, enabled=False):
            return self._z_params(hdn)

    def _hidden(self, feat: Tensor, cond: Tensor) -> Tensor:
        """The MLP head's features (B, hidden), under autocast, returned in float32."""
        amp = self.autocast_dtype
        with torch.autocast(feat.device.type, dtype=amp, enabled=amp is not None):
            hdn = self.head(torch.cat([feat, cond], -1))
        return hdn.float()

    def _z_params(self, hdn: Tensor) -> tuple[Tensor, Tensor]:
        """(z_loc, z_scale) of the photo-z head from the head's features (B, hidden)."""
        z_out = self.out_z(hdn)
        return z_out[:, 0], F.softplus(z_out[:, 1] + 0.5413) + 1e-3

    def _outputs(self, hdn: Tensor, b: int) -> EncoderOutput:
        """q's parameters from the head's features (B, hidden), in float32."""
        d, r = self.config.latent_dim, self.config.rank
        z_loc, z_scale = self._z_params(hdn)
        # Bounded outputs keep the low-rank Cholesky well conditioned in float32: |loc| < 15
        # (the registry's ranges sit within |u| < 10), factor entries in (-2, 2), diag >= 1e-3.
        # The calibration scales S = diag(posterior_scale) act as S (W W^T + diag) S.
        scale = self.posterior_scale
        factor = 2.0 * torch.tanh(0.5 * self.out_factor(hdn)).view(b, d, r)
        diag = F.softplus(self.out_diag(hdn) + 0.5413) + 1e-3  # softplus(0.5413) = 1
        return EncoderOutput(
            loc=_LOC_BOUND * torch.tanh(self.out_loc(hdn) / _LOC_BOUND),
            cov_factor=scale[:, None] * factor,
            cov_diag=scale**2 * diag,
            z_loc=z_loc,
            z_scale=z_scale,
        )
