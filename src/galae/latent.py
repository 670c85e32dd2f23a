"""The latent registry: every physical parameter of galae's galaxy model, declared once.

Each :class:`Param` carries its unit (in its name and in ``unit``), its physical range, a plot
label, its scale (linear or log) and its variational family.  Everything else - the broad prior,
the guide, plot labels, the checkpoint layout - reads this registry.

Constrained <-> unconstrained bijection (per parameter, elementwise)::

    g(x) = x            (scale "linear")     or  log(x)  (scale "log")
    s    = (g(x) - g(low)) / (g(high) - g(low))          in (0, 1)
    u    = logit(s)                                      in R

so a standard logistic distribution on ``u`` is the uniform distribution on ``g(x)`` over the
range.  The inverse is ``x = g^-1(g(low) + sigmoid(u) (g(high) - g(low)))``.

Observing conditions (redshift, pixel scale, bands, PSF) are not latents: they come with an
image.  Redshift has a fallback range (:data:`REDSHIFT_FALLBACK_RANGE`) used when it is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from galae.render._tensors import to_tensor

__all__ = [
    "Param",
    "LatentRegistry",
    "Latent",
    "REGISTRY",
    "PARAMS",
    "REDSHIFT_FALLBACK_RANGE",
    "GROUPS",
    "DERIVED_UNITS",
    "BAND_DERIVED_UNITS",
    "unit_of",
]

#: Redshift range assumed when an image comes without a redshift.
REDSHIFT_FALLBACK_RANGE: tuple[float, float] = (0.01, 0.3)


@dataclass(frozen=True)
class Param:
    """One named physical parameter.

    Attributes:
        name: identifier, carrying the unit where it is not obvious.
        unit: unit string (astropy-style; "" for dimensionless).
        low, high: physical range (inclusive bounds of the support).
        label: plot label (matplotlib mathtext).
        group: which part of the galaxy it describes ("geometry", "bulge", "disk", "dust").
        scale: "linear" or "log" - the space in which the broad prior is uniform.
        family: variational family of the guide's marginal in unconstrained space.
        description: one line of meaning.
        period: for an angle, the period in its unit after which it repeats (a position angle
            is an axis: 180 deg); errors and intervals of such a latent are taken on the circle
            (``galae.evaluate``, ``galae.calibrate``).  None for the others.
    """

    name: str
    unit: str
    low: float
    high: float
    label: str
    group: str
    scale: str = "linear"
    family: str = "normal"
    description: str = ""
    period: float | None = None

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"{self.name}: low must be < high")
        if self.scale not in _SCALES:
            raise ValueError(f"{self.name}: unknown scale {self.scale!r}")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"{self.name}: log scale needs low > 0")

    @property
    def g_low(self) -> float:
        return _SCALES[self.scale][0](self.low)

    @property
    def g_high(self) -> float:
        return _SCALES[self.scale][0](self.high)

    def to_unconstrained(self, x: Tensor, eps: float = 1e-6) -> Tensor:
        """Map a physical value (any shape) to R; values are clipped to eps inside the range."""
        g = _SCALES[self.scale][1](x)
        s = (g - self.g_low) / (self.g_high - self.g_low)
        s = s.clamp(eps, 1.0 - eps)
        return torch.logit(s)

    def from_unconstrained(self, u: Tensor) -> Tensor:
        """Map R to the physical range (any shape)."""
        g = self.g_low + torch.sigmoid(u) * (self.g_high - self.g_low)
        return _SCALES[self.scale][2](g)

    def log_abs_det_jacobian(self, u: Tensor) -> Tensor:
        """log |dx/du| at u, elementwise."""
        s = torch.sigmoid(u)
        log_dg_du = torch.log(s) + torch.log1p(-s) + math.log(self.g_high - self.g_low)
        if self.scale == "log":
            # x = exp(g): dx/dg = x
            log_dg_du = log_dg_du + (self.g_low + s * (self.g_high - self.g_low))
        return log_dg_du


def _t_identity(x: Tensor) -> Tensor:
    return x


# scale name -> (float map for bounds, tensor map g, tensor inverse g^-1)
_SCALES = {
    "linear": (lambda v: float(v), _t_identity, _t_identity),
    "log": (math.log, torch.log, torch.exp),
}


# --------------------------------------------------------------------------------------------
# The parameters of the v1 physical model (DESIGN.md, "The physical model").
# Ranges cover the observed galaxy population at z < 0.3 with margin:
#   masses: 1e7-1e12 Msun per component; sizes: Shen et al. (2003) mass-size relation;
#   SFR: -3..1.5 dex spans quenched to starburst at these masses (Renzini & Peng 2015);
#   stellar metallicity: Gallazzi et al. (2005) mass-metallicity relation, -1..+0.4 dex;
#   gas metallicity 12+log(O/H): Tremonti et al. (2004), 7.8-9.2;
#   metallicity gradients: Sanchez et al. (2014) CALIFA, about -0.1..0 dex/kpc;
#   face-on A_V up to 3 mag (Driver et al. 2007 central face-on opacity).
# --------------------------------------------------------------------------------------------
PARAMS: tuple[Param, ...] = (
    # geometry
    Param(
        "dx_arcsec",
        "arcsec",
        -2.0,
        2.0,
        r"$\Delta x$ [arcsec]",
        "geometry",
        description="centre offset along +x (columns) from the stamp centre",
    ),
    Param(
        "dy_arcsec",
        "arcsec",
        -2.0,
        2.0,
        r"$\Delta y$ [arcsec]",
        "geometry",
        description="centre offset along +y (rows) from the stamp centre",
    ),
    Param(
        "pa_deg",
        "deg",
        0.0,
        180.0,
        r"PA [deg]",
        "geometry",
        description="position angle, counter-clockwise from +x to the major axis",
        period=180.0,
    ),
    Param(
        "inclination_deg",
        "deg",
        0.0,
        85.0,
        r"$i$ [deg]",
        "geometry",
        description="disk inclination (0 = face-on)",
    ),
    # bulge
    Param(
        "log10_mstar_bulge_msun",
        "dex(Msun)",
        7.0,
        12.0,
        r"$\log M_{\star,\rm b}$",
        "bulge",
        description="bulge stellar mass",
    ),
    Param(
        "r_eff_bulge_kpc",
        "kpc",
        0.1,
        8.0,
        r"$R_{\rm e,b}$ [kpc]",
        "bulge",
        scale="log",
        description="bulge half-mass radius along the major axis",
    ),
    Param(
        "sersic_n_bulge",
        "",
        0.5,
        6.0,
        r"$n_{\rm b}$",
        "bulge",
        scale="log",
        description="bulge Sersic index",
    ),
    Param(
        "q_bulge", "", 0.4, 1.0, r"$q_{\rm b}$", "bulge", description="bulge projected axis ratio"
    ),
    Param(
        "age_bulge_gyr",
        "Gyr",
        1.0,
        11.0,
        r"age$_{\rm b}$ [Gyr]",
        "bulge",
        scale="log",
        description="age of the bulge's single stellar population",
    ),
    Param(
        "log10_zstar_bulge_zsun",
        "dex(Zsun)",
        -1.0,
        0.4,
        r"$\log Z_{\rm b}/Z_\odot$",
        "bulge",
        description="bulge stellar metallicity",
    ),
    # disk
    Param(
        "log10_mstar_disk_msun",
        "dex(Msun)",
        7.0,
        12.0,
        r"$\log M_{\star,\rm d}$",
        "disk",
        description="disk stellar mass",
    ),
    Param(
        "r_d_kpc",
        "kpc",
        0.3,
        12.0,
        r"$R_{\rm d}$ [kpc]",
        "disk",
        scale="log",
        description="exponential scale length of the disk's stellar mass",
    ),
    Param(
        "log10_sfr_msun_per_yr",
        "dex(Msun/yr)",
        -3.0,
        1.5,
        r"$\log$ SFR",
        "disk",
        description="star-formation rate averaged over 100 Myr",
    ),
    Param(
        "r_sfr_kpc",
        "kpc",
        0.3,
        15.0,
        r"$R_{\rm SFR}$ [kpc]",
        "disk",
        scale="log",
        description="exponential scale length of star formation",
    ),
    Param(
        "age_disk_gyr",
        "Gyr",
        0.3,
        10.0,
        r"age$_{\rm d}$ [Gyr]",
        "disk",
        scale="log",
        description="age of the disk's (older-than-100 Myr) stellar population",
    ),
    Param(
        "log10_zstar_disk_zsun",
        "dex(Zsun)",
        -1.0,
        0.4,
        r"$\log Z_{\rm d,0}/Z_\odot$",
        "disk",
        description="disk stellar metallicity at the centre",
    ),
    Param(
        "zstar_grad_dex_per_kpc",
        "dex/kpc",
        -0.15,
        0.05,
        r"$\nabla \log Z_\star$ [dex/kpc]",
        "disk",
        description="radial gradient of the disk's stellar metallicity",
    ),
    Param(
        "oh12_gas",
        "dex",
        7.8,
        9.2,
        r"$12+\log({\rm O/H})_0$",
        "disk",
        description="gas-phase oxygen abundance at the centre",
    ),
    Param(
        "oh12_grad_dex_per_kpc",
        "dex/kpc",
        -0.15,
        0.05,
        r"$\nabla$(O/H) [dex/kpc]",
        "disk",
        description="radial gradient of the gas-phase oxygen abundance",
    ),
    Param(
        "av_face_on_mag",
        "mag",
        0.0,
        3.0,
        r"$A_{V,0}$ [mag]",
        "dust",
        description="central face-on V-band optical depth of the disk, in magnitudes",
    ),
)

GROUPS: tuple[str, ...] = ("geometry", "bulge", "disk", "dust")

#: Units of the posterior's derived observables that are not latents (``Posterior.params``
#: holds them beside the registry's parameters).
DERIVED_UNITS: dict[str, str] = {
    "log10_mstar_msun": "dex(Msun)",
    "redshift": "",
}
#: Units of the per-band derived observables, by name prefix (the band follows it).
BAND_DERIVED_UNITS: dict[str, str] = {
    "mag_": "AB mag",
    "r_half_arcsec_": "arcsec",
    "bulge_to_total_": "",
}


def unit_of(name: str) -> str:
    """The unit of a latent or a derived observable of ``Posterior.params`` ("" if none).

    Raises:
        KeyError: an unknown name (listing the latents).
    """
    if name in REGISTRY:
        return REGISTRY[name].unit
    if name in DERIVED_UNITS:
        return DERIVED_UNITS[name]
    for prefix, unit in BAND_DERIVED_UNITS.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return unit
    derived = [*DERIVED_UNITS, *(f"{p}<band>" for p in BAND_DERIVED_UNITS)]
    raise KeyError(
        f"unknown parameter {name!r}: not a latent ({', '.join(REGISTRY.names)}) nor a derived "
        f"observable ({', '.join(derived)})"
    )


class LatentRegistry:
    """An ordered collection of :class:`Param` with vectorised bijections.

    The unconstrained vector layout ``(..., D)`` follows :attr:`names`; this order is part of the
    checkpoint layout (checkpoints store the names and refuse to load against another order).
    """

    def __init__(self, params: tuple[Param, ...]) -> None:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError("duplicate parameter names in registry")
        self.params = params
        self._by_name = {p.name: p for p in params}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def dim(self) -> int:
        return len(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Param:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"unknown parameter {name!r}; known parameters: {', '.join(self.names)}"
            ) from None

    def index(self, name: str) -> int:
        return self.names.index(self[name].name)

    def bounds(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """(low, high), each (D,)."""
        lo = torch.tensor([p.low for p in self.params], dtype=dtype)
        hi = torch.tensor([p.high for p in self.params], dtype=dtype)
        return lo, hi

    def check(self, values: Mapping[str, Tensor], *, complete: bool = True) -> None:
        """Raise ``ValueError``/``KeyError`` naming the offending parameter.

        Unknown names, missing names (when ``complete``), non-finite values and values outside
        ``[low, high]`` (with a relative tolerance of 1e-5 of the range) are errors.
        """
        for name in values:
            if name not in self._by_name:
                raise KeyError(
                    f"unknown parameter {name!r}; known parameters: {', '.join(self.names)}"
                )
        if complete:
            missing = [n for n in self.names if n not in values]
            if missing:
                raise KeyError(f"missing parameters: {', '.join(missing)}")
        for name, v in values.items():
            p = self._by_name[name]
            v = torch.as_tensor(v)
            if not torch.isfinite(v).all():
                raise ValueError(f"parameter {name!r} has non-finite values")
            tol = 1e-5 * (p.high - p.low)
            lo, hi = v.min().item(), v.max().item()
            if lo < p.low - tol or hi > p.high + tol:
                raise ValueError(
                    f"parameter {name!r} out of range: got [{lo:.4g}, {hi:.4g}], "
                    f"valid range [{p.low:g}, {p.high:g}] {p.unit}"
                )

    def to_unconstrained(self, values: Mapping[str, Tensor]) -> Tensor:
        """Stack physical values ``{name: (...)}`` into unconstrained ``(..., D)``."""
        self.check(values)
        return torch.stack([p.to_unconstrained(torch.as_tensor(values[p.name])) for p in self], -1)

    def from_unconstrained(self, u: Tensor) -> dict[str, Tensor]:
        """Unconstrained ``(..., D)`` -> physical ``{name: (...)}``."""
        if u.shape[-1] != self.dim:
            raise ValueError(f"expected last dimension {self.dim}, got {tuple(u.shape)}")
        return {p.name: p.from_unconstrained(u[..., i]) for i, p in enumerate(self.params)}

    def log_abs_det_jacobian(self, u: Tensor) -> Tensor:
        """Sum over parameters of log |dx/du|: (..., D) -> (...)."""
        return sum(p.log_abs_det_jacobian(u[..., i]) for i, p in enumerate(self.params))

    def labels(self) -> dict[str, str]:
        return {p.name: p.label for p in self.params}

    def midpoint(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """The parameter set at u = 0 (centre of each range in its scale), shape (batch,)."""
        return self.from_unconstrained(torch.zeros(batch, self.dim, dtype=dtype))


REGISTRY = LatentRegistry(PARAMS)


class Latent(Mapping[str, Tensor]):
    """A batch of galaxies' physical parameters: an immutable mapping ``{name: (B,)}``.

    Validates names and ranges on construction (``validate=True``) so that a bad value is
    reported by name before it reaches the renderer.
    """

    def __init__(
        self,
        values: Mapping[str, Tensor],
        registry: LatentRegistry = REGISTRY,
        validate: bool = True,
    ) -> None:
        vals = {k: to_tensor(v, k) for k, v in values.items()}
        if validate:
            registry.check(vals)
        shapes = {tuple(v.shape) for v in vals.values()}
        batch = shapes - {()}
        if len(batch) > 1:
            listed = ", ".join(f"{k} {tuple(v.shape)}" for k, v in vals.items() if v.dim())
            raise ValueError(
                f"parameters of different batch shapes ({listed}): give every parameter the "
                "same shape (B,), or a scalar to share it"
            )
        if len(shapes) > 1:
            vals = dict(zip(vals, torch.broadcast_tensors(*vals.values()), strict=True))
        self._values = vals
        self.registry = registry

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(
                f"unknown parameter {name!r}; known: {', '.join(self._values)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def batch_shape(self) -> torch.Size:
        return next(iter(self._values.values())).shape

    def to(self, *args: object, **kwargs: object) -> Latent:
        return Latent(
            {k: v.to(*args, **kwargs) for k, v in self._values.items()},
            self.registry,
            validate=False,
        )

    def unconstrained(self) -> Tensor:
        return self.registry.to_unconstrained(self._values)

    @classmethod
    def from_unconstrained(cls, u: Tensor, registry: LatentRegistry = REGISTRY) -> Latent:
        return cls(registry.from_unconstrained(u), registry, validate=False)

    def __repr__(self) -> str:
        return f"Latent(batch_shape={tuple(self.batch_shape)}, names={list(self._values)})"
