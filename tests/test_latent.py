"""The latent registry: bijections, Jacobians, validation, container."""

import math

import pytest
import torch

from galae.latent import PARAMS, REGISTRY, Latent, LatentRegistry, Param


def test_every_param_declared_once_with_unit_and_label():
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names)) == REGISTRY.dim
    for p in PARAMS:
        assert p.label and p.group in ("geometry", "bulge", "disk", "dust")
        assert p.low < p.high


def test_roundtrip_constrained_unconstrained_float64():
    u = torch.randn(200, REGISTRY.dim, dtype=torch.float64) * 3
    phys = REGISTRY.from_unconstrained(u)
    REGISTRY.check(phys)  # in range by construction
    u2 = REGISTRY.to_unconstrained(phys)
    torch.testing.assert_close(u2, u, rtol=1e-7, atol=1e-7)


def test_zero_maps_to_midpoint_in_scale():
    mid = REGISTRY.midpoint(1, torch.float64)
    for p in PARAMS:
        want = math.sqrt(p.low * p.high) if p.scale == "log" else 0.5 * (p.low + p.high)
        assert mid[p.name].item() == pytest.approx(want, rel=1e-9)


def test_log_abs_det_jacobian_matches_autograd():
    u = torch.randn(REGISTRY.dim, dtype=torch.float64)
    for i, p in enumerate(PARAMS):
        ui = u[i].clone().requires_grad_(True)
        x = p.from_unconstrained(ui)
        (dx,) = torch.autograd.grad(x, ui)
        assert p.log_abs_det_jacobian(u[i]).item() == pytest.approx(
            math.log(abs(dx.item())), rel=1e-9, abs=1e-9
        )


def test_logistic_u_is_uniform_in_scale():
    torch.manual_seed(0)
    s = torch.rand(100_000, dtype=torch.float64)
    u = torch.logit(s)
    p = REGISTRY["r_d_kpc"]  # log scale
    x = p.from_unconstrained(u)
    frac_below_mid = (x < math.sqrt(p.low * p.high)).double().mean().item()
    assert frac_below_mid == pytest.approx(0.5, abs=0.01)


def test_out_of_range_names_parameter():
    vals = REGISTRY.midpoint(2)
    vals["sersic_n_bulge"] = torch.tensor([2.0, 9.0])
    with pytest.raises(ValueError, match="sersic_n_bulge"):
        REGISTRY.check(vals)


def test_unknown_and_missing_parameter_names():
    vals = REGISTRY.midpoint(1)
    vals["not_a_param"] = torch.zeros(1)
    with pytest.raises(KeyError, match="not_a_param"):
        REGISTRY.check(vals)
    vals = REGISTRY.midpoint(1)
    del vals["q_bulge"]
    with pytest.raises(KeyError, match="q_bulge"):
        REGISTRY.check(vals)
    with pytest.raises(KeyError, match="unknown parameter"):
        REGISTRY["nope"]


def test_nan_is_an_error():
    vals = REGISTRY.midpoint(1)
    vals["pa_deg"] = torch.tensor([float("nan")])
    with pytest.raises(ValueError, match="pa_deg.*non-finite"):
        REGISTRY.check(vals)


def test_latent_container():
    lat = Latent(REGISTRY.midpoint(3))
    assert lat.batch_shape == (3,)
    assert set(lat) == set(REGISTRY.names)
    u = lat.unconstrained()
    assert u.shape == (3, REGISTRY.dim)
    assert torch.allclose(u, torch.zeros_like(u), atol=1e-5)
    back = Latent.from_unconstrained(u)
    assert torch.allclose(back["r_d_kpc"], lat["r_d_kpc"])


def test_bad_param_declarations():
    with pytest.raises(ValueError):
        Param("x", "", 1.0, 0.0, "x", "disk")
    with pytest.raises(ValueError):
        Param("x", "", 0.0, 1.0, "x", "disk", scale="log")
    with pytest.raises(ValueError):
        LatentRegistry((PARAMS[0], PARAMS[0]))
