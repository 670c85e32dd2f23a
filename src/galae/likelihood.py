"""Pixel likelihoods: (model, data, sigma, mask) -> log p.

Two families, registered by name:

* ``"gaussian"``: independent Gaussian pixels with the given per-pixel sigma;
* ``"student_t"``: Student-t pixels (``df`` degrees of freedom, scale sigma), whose heavy tails
  let a fit survive foreground stars and neighbours that the model does not contain.

``mask`` follows the numpy.ma convention: True marks a pixel to ignore.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import Tensor

__all__ = ["pixel_distribution", "log_likelihood", "chi2_per_pixel", "LIKELIHOODS", "check_data"]


def _gaussian(model: Tensor, sigma: Tensor, df: float) -> dist.Distribution:
    return dist.Normal(model, sigma)


def _student_t(model: Tensor, sigma: Tensor, df: float) -> dist.Distribution:
    return dist.StudentT(torch.as_tensor(df, dtype=model.dtype, device=model.device), model, sigma)


LIKELIHOODS: dict[str, Callable[[Tensor, Tensor, float], dist.Distribution]] = {
    "gaussian": _gaussian,
    "student_t": _student_t,
}


def check_data(images: Tensor, sigma: Tensor, mask: Tensor | None) -> None:
    """Raise ValueError for inconsistent shapes, non-finite unmasked pixels or sigma <= 0."""
    if images.shape != sigma.shape:
        raise ValueError(f"sigma shape {tuple(sigma.shape)} != images shape {tuple(images.shape)}")
    if mask is not None and mask.shape != images.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != images shape {tuple(images.shape)}")
    good = torch.ones_like(images, dtype=torch.bool) if mask is None else ~mask
    if not torch.isfinite(images[good]).all():
        raise ValueError("images have NaN/inf pixels that are not masked")
    s = sigma[good]
    if not torch.isfinite(s).all() or (s <= 0).any():
        raise ValueError("sigma must be finite and > 0 on every unmasked pixel")


def pixel_distribution(
    model: Tensor,
    sigma: Tensor,
    mask: Tensor | None = None,
    family: str = "gaussian",
    df: float = 4.0,
) -> dist.Distribution:
    """A distribution over images (B, C, H, W) with event shape (C, H, W).

    Masked pixels contribute nothing (their sigma is replaced by 1 so no NaN leaks into gradients).
    """
    try:
        make = LIKELIHOODS[family]
    except KeyError:
        raise ValueError(
            f"unknown likelihood {family!r}; known: {', '.join(LIKELIHOODS)}"
        ) from None
    if mask is not None:
        sigma = torch.where(mask, torch.ones_like(sigma), sigma)
    d = make(model, sigma, df)
    if mask is not None:
        d = d.mask(~mask)
    return d.to_event(3)


def log_likelihood(
    model: Tensor,
    data: Tensor,
    sigma: Tensor,
    mask: Tensor | None = None,
    family: str = "gaussian",
    df: float = 4.0,
) -> Tensor:
    """log p(data | model) per galaxy: (B,)."""
    if mask is not None:
        data = torch.where(mask, torch.zeros_like(data), data)
    return pixel_distribution(model, sigma, mask, family, df).log_prob(data)


def chi2_per_pixel(
    model: Tensor, data: Tensor, sigma: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Reduced chi^2 per galaxy over unmasked pixels: (B,); NaN for a galaxy with none."""
    r2 = ((data - model) / sigma) ** 2
    if mask is not None:
        r2 = torch.where(mask, torch.zeros_like(r2), r2)
        n = (~mask).flatten(1).sum(-1)
        return torch.where(n > 0, r2.flatten(1).sum(-1) / n.clamp_min(1), float("nan"))
    n = torch.full((r2.shape[0],), r2[0].numel(), device=r2.device)
    return r2.flatten(1).sum(-1) / n
