"""Mock galaxies with truth: ``python -m galae.mock --config configs/mock_analytic.yaml``.

Two generators, registered by name:

* ``analytic`` - galaxies drawn from the broad physical population
  (:func:`galae.physics.population.sample_population`) and drawn by galae's own renderer;
* ``particles`` - star-particle galaxies with spiral arms, bars, clumps, non-parametric
  histories, foreground stars and neighbours (:mod:`galae.data.particles`), which the analytic
  model cannot represent exactly.

Both observe under SDSS-like conditions (:mod:`galae.data.conditions`) and write the HDF5 layout
of :mod:`galae.data.hdf5` in chunks.  Each chunk has its own seed derived from (seed, chunk
index), so the output is the same for any number of worker processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from galae.config import config_to_dict, load_config, parse_overrides
from galae.data.conditions import ConditionsConfig, add_noise, sample_sdss_conditions
from galae.data.hdf5 import H5Writer
from galae.physics.dust import LEGACY_BIRTH_CLOUDS
from galae.physics.sfh import LEGACY_DISK_HISTORY
from galae.runtime import cli_errors, tune_cpu_allocator

__all__ = [
    "MockConfig",
    "GENERATORS",
    "generate_chunk",
    "run_mock",
    "main",
    "MOCK_PHYSICS",
    "mock_physics",
    "warn_physics_mismatch",
]

#: Float knobs of :class:`MockConfig` (all must be finite).
_FLOAT_KNOBS = (
    "pixel_scale_arcsec",
    "redshift_min",
    "redshift_max",
    "log10_mstar_min",
    "log10_mstar_max",
    "seeing_r_median_arcsec",
    "sky_sigma_scale",
)
#: Smallest stamp side the renderer draws (galae.render.observation.Observation).
_MIN_SIDE = 4


@dataclass(frozen=True)
class MockConfig:
    """Every knob of a mock data set."""

    generator: str = "analytic"  # a key of GENERATORS
    n: int = 1000
    seed: int = 0
    out: str = "data/analytic.h5"
    shape: tuple[int, ...] = (64, 64)
    pixel_scale_arcsec: float = 0.396
    bands: tuple[str, ...] = ("u", "g", "r", "i", "z")
    redshift_min: float = 0.01
    redshift_max: float = 0.25
    redshift_distribution: str = "uniform"
    log10_mstar_min: float = 8.5
    log10_mstar_max: float = 11.7
    chunk: int = 128  # galaxies per generated/written chunk
    workers: int = 1  # generator processes
    overwrite: bool = False
    particles: dict | None = None  # options of the particle generator (ParticleMockConfig keys)
    # ---- shifted observing conditions (for robustness tests) ----
    seeing_r_median_arcsec: float = 1.32  # median r-band PSF FWHM (SDSS: 1.32")
    sky_sigma_scale: float = 1.0  # multiplies the sky noise (2.0 = four times the exposure lost)
    # bands whose pixels are all masked: one ("u") or several, comma-separated ("u,i": grz data)
    missing_band: str | None = None
    # ---- physics of the analytic generator ----
    disk_history: str = "tau"  # the disk's older stars (galae.physics.sfh.DISK_HISTORIES)
    # the young stars' extra dust, both generators (galae.physics.dust.BIRTH_CLOUDS)
    birth_clouds: str = "effective"
    # the population's central face-on A_V (galae.physics.population.POPULATION_DUST): the
    # analytic generator's latent; the particle generator draws its dust from its gas anyway
    population_dust: str = "empirical"

    @property
    def missing_bands(self) -> tuple[str, ...]:
        """``missing_band`` as a tuple of band names (empty when None)."""
        value = self.missing_band
        if value is None:
            return ()
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(b).strip() for b in items if str(b).strip())

    def __post_init__(self) -> None:
        """Check every knob here, before a file is made (run_mock also checks the tables)."""
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown generator {self.generator!r}; known: {sorted(GENERATORS)}")
        from galae.physics.dust import check_birth_clouds
        from galae.physics.population import check_log10_mstar_range, check_population_dust
        from galae.physics.sfh import check_disk_history

        check_disk_history(self.disk_history)
        check_birth_clouds(self.birth_clouds)
        check_population_dust(self.population_dust)
        nested = (self.particles or {}).get("birth_clouds", self.birth_clouds)
        if nested != self.birth_clouds:
            raise ValueError(
                f"particles.birth_clouds={nested!r} contradicts birth_clouds="
                f"{self.birth_clouds!r}: set it once, at the top level"
            )
        if self.n < 1 or self.chunk < 1 or self.workers < 1:
            raise ValueError("n, chunk and workers must be >= 1")
        for name in _FLOAT_KNOBS:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if len(self.shape) != 2 or min(self.shape) < _MIN_SIDE:
            raise ValueError(
                f"shape must be [H, W] with H, W >= {_MIN_SIDE} pixels, got {list(self.shape)}"
            )
        if not self.pixel_scale_arcsec > 0:
            raise ValueError(f"pixel_scale_arcsec must be > 0, got {self.pixel_scale_arcsec:g}")
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ValueError(f"bands must be distinct band names, got {list(self.bands)}")
        for band in self.missing_bands:
            if band not in self.bands:
                raise ValueError(f"missing_band {band!r} is not one of {self.bands}")
        if len(set(self.missing_bands)) == len(self.bands):
            raise ValueError(f"missing_band {self.missing_band!r} leaves no band")
        if not 0.0 < self.redshift_min < self.redshift_max:
            raise ValueError(
                f"need 0 < redshift_min < redshift_max, got redshift_min={self.redshift_min:g} "
                f"and redshift_max={self.redshift_max:g}"
            )
        check_log10_mstar_range(self.log10_mstar_min, self.log10_mstar_max)
        seeing_min = ConditionsConfig.seeing_min_arcsec
        if not self.seeing_r_median_arcsec >= seeing_min:
            raise ValueError(
                f"seeing_r_median_arcsec must be >= {seeing_min:g} (the smallest seeing the "
                f"conditions sampler draws), got {self.seeing_r_median_arcsec:g}"
            )
        if not self.sky_sigma_scale > 0:
            raise ValueError("sky_sigma_scale must be > 0")
        self.conditions_config()  # the rest (e.g. an unknown redshift_distribution)
        if self.generator == "particles":
            _particle_config(self)  # the particle generator's own knobs

    def conditions_config(self) -> ConditionsConfig:
        return ConditionsConfig(
            seeing_r_median_arcsec=self.seeing_r_median_arcsec,
            seeing_max_arcsec=max(3.5, 2.0 * self.seeing_r_median_arcsec),
            redshift_min=self.redshift_min,
            redshift_max=self.redshift_max,
            redshift_distribution=self.redshift_distribution,
            pixel_scale_arcsec=self.pixel_scale_arcsec,
        )


def _chunk_seeds(cfg: MockConfig, chunk_index: int) -> tuple[np.random.Generator, torch.Generator]:
    ss = np.random.SeedSequence([cfg.seed, chunk_index])
    rng = np.random.default_rng(ss)
    tg = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] % (2**63)))
    return rng, tg


def _conditions(cfg: MockConfig, rng: np.random.Generator, count: int) -> Any:
    cond = sample_sdss_conditions(count, rng, cfg.bands, cfg.conditions_config())
    if cfg.sky_sigma_scale != 1.0:
        cond = replace(cond, sky_sigma_nmgy=cond.sky_sigma_nmgy * cfg.sky_sigma_scale)
    return cond


def _drop_band(cfg: MockConfig, batch: dict[str, Any]) -> dict[str, Any]:
    """Mask every pixel of ``cfg.missing_bands`` (the bands are absent from the observation)."""
    for band in cfg.missing_bands:
        i = list(cfg.bands).index(band)
        batch["mask"][:, i] = True
        batch["images"][:, i] = 0.0
    return batch


_RENDERERS: dict[tuple[str, str], Any] = {}


def _renderer(cfg: MockConfig) -> Any:
    """The analytic renderer of ``cfg``'s physics (one per physics, kept for the process)."""
    key = (cfg.disk_history, cfg.birth_clouds)
    if key not in _RENDERERS:
        from galae.render.renderer import GalaxyRenderer

        _RENDERERS[key] = GalaxyRenderer(disk_history=key[0], birth_clouds=key[1])
    return _RENDERERS[key]


def _analytic(cfg: MockConfig, chunk_index: int, count: int) -> dict[str, Any]:
    from galae.physics.population import sample_population
    from galae.render.observation import Observation

    rng, tg = _chunk_seeds(cfg, chunk_index)
    renderer = _renderer(cfg)
    params = sample_population(
        count,
        tg,
        log10_mstar_range=(cfg.log10_mstar_min, cfg.log10_mstar_max),
        population_dust=cfg.population_dust,
    )
    cond = _conditions(cfg, rng, count)
    obs = Observation.create(
        cond.redshift,
        cond.psf_fwhm_arcsec,
        pixel_scale_arcsec=cfg.pixel_scale_arcsec,
        shape=tuple(cfg.shape),
        bands=cfg.bands,
    )
    with torch.no_grad():
        ren = renderer(params, obs)
        noisy, sigma = add_noise(ren.images, cond, generator=tg)
        derived = renderer.derived(params, obs)
    truth_params = {k: v.numpy() for k, v in params.items()}
    truth_params.update({k: v.numpy() for k, v in derived.items()})
    return {
        "images": noisy.numpy(),
        "sigma": sigma.numpy(),
        "mask": np.zeros(noisy.shape, dtype=bool),
        "psf_fwhm_arcsec": cond.psf_fwhm_arcsec.astype(np.float32),
        "redshift": cond.redshift.astype(np.float32),
        "model_images": ren.images.numpy(),
        "truth": {
            "params": truth_params,
            "maps": {k: v.numpy() for k, v in ren.maps.named().items()},
        },
    }


def _particle_config(cfg: MockConfig) -> Any:
    """The :class:`galae.data.particles.ParticleMockConfig` of a mock config (validated)."""
    from galae.data.particles import ParticleMockConfig

    return ParticleMockConfig.from_dict(
        {
            **(cfg.particles or {}),
            "shape": list(cfg.shape),
            "pixel_scale_arcsec": cfg.pixel_scale_arcsec,
            "bands": list(cfg.bands),
            "log10_mstar_min": cfg.log10_mstar_min,
            "log10_mstar_max": cfg.log10_mstar_max,
            "birth_clouds": cfg.birth_clouds,
        }
    )


def _particles(cfg: MockConfig, chunk_index: int, count: int) -> dict[str, Any]:
    from galae.data.particles import generate_particle_mocks

    rng, _ = _chunk_seeds(cfg, chunk_index)
    pcfg = _particle_config(cfg)
    cond = _conditions(cfg, rng, count)
    seed = int(np.random.SeedSequence([cfg.seed, chunk_index]).generate_state(1)[0])
    return generate_particle_mocks(count, seed, pcfg, _renderer(cfg).sps, conditions=cond)


GENERATORS: dict[str, Callable[[MockConfig, int, int], dict[str, Any]]] = {
    "analytic": _analytic,
    "particles": _particles,
}


def generate_chunk(cfg: MockConfig, chunk_index: int, count: int) -> dict[str, Any]:
    """Generate one chunk (deterministic given cfg.seed and chunk_index)."""
    if cfg.workers > 1:
        torch.set_num_threads(1)
    return _drop_band(cfg, GENERATORS[cfg.generator](cfg, chunk_index, count))


def _chunks(cfg: MockConfig) -> Iterator[tuple[int, int]]:
    for i, start in enumerate(range(0, cfg.n, cfg.chunk)):
        yield i, min(cfg.chunk, cfg.n - start)


def _check_tables(cfg: MockConfig) -> None:
    """Check the bands and redshifts against the renderer's stellar-population table."""
    sps = _renderer(cfg).sps
    if tuple(cfg.bands) != tuple(sps.bands):
        raise ValueError(
            f"bands [{','.join(cfg.bands)}]: mocks are rendered in the bands of the "
            f"stellar-population table, [{','.join(sps.bands)}] in this order (missing_band "
            "masks one of them)"
        )
    z_lo, z_hi = sps.redshift_range
    if cfg.redshift_max > z_hi + 1e-6 or cfg.redshift_min < z_lo - 1e-6:
        raise ValueError(
            f"redshift_min={cfg.redshift_min:g}, redshift_max={cfg.redshift_max:g}: the "
            f"stellar-population table covers redshifts {z_lo:g} to {z_hi:g}"
        )


def run_mock(
    config: str | Path | MockConfig | None = None,
    out: str | Path | None = None,
    n: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """Generate a mock data set; returns the output path.

    The whole configuration is checked before anything is written.  The file is written under
    a temporary name beside ``out`` and renamed when complete, so that a run that fails (or is
    interrupted) leaves no incomplete file behind, and an existing file it was to replace
    unchanged.

    Raises:
        FileExistsError: ``out`` exists and the config does not say ``overwrite``.
        ValueError: a bad knob (naming it), bands or redshifts the renderer cannot draw.
    """
    cfg = config if isinstance(config, MockConfig) else load_config(MockConfig, config, overrides)
    changes = {k: v for k, v in (("out", out), ("n", n), ("seed", seed)) if v is not None}
    cfg = replace(cfg, **{k: (str(v) if k == "out" else v) for k, v in changes.items()})
    path = Path(cfg.out)
    if path.exists() and not cfg.overwrite:
        raise FileExistsError(f"{path}: file exists (pass overwrite=True to replace it)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not an output file")
    _check_tables(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    writer = H5Writer(
        partial,
        bands=cfg.bands,
        pixel_scale_arcsec=cfg.pixel_scale_arcsec,
        generator=f"galae.mock.{cfg.generator}",
        generator_config=json.dumps(config_to_dict(cfg), sort_keys=True),
        capacity=cfg.n,
        overwrite=True,
    )
    try:
        with (
            writer,
            tqdm(
                total=cfg.n, desc=f"mock {cfg.generator}", unit="gal", disable=not progress
            ) as bar,
        ):
            if cfg.workers == 1:
                for i, count in _chunks(cfg):
                    writer.append(generate_chunk(cfg, i, count))
                    bar.update(count)
            else:
                ctx = get_context("spawn")
                with ProcessPoolExecutor(cfg.workers, mp_context=ctx) as pool:
                    pending: list[tuple[Future, int]] = []
                    for i, count in _chunks(cfg):
                        pending.append((pool.submit(generate_chunk, cfg, i, count), count))
                        if len(pending) >= 2 * cfg.workers:
                            fut, c = pending.pop(0)
                            writer.append(fut.result())
                            bar.update(c)
                    for fut, c in pending:
                        writer.append(fut.result())
                        bar.update(c)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)  # no incomplete file left to block a rerun
        raise
    return path


#: The physics choices of a mock file's generator config: name -> (the generators it applies
#: to, its value in files written before the choice existed).
MOCK_PHYSICS: dict[str, tuple[tuple[str, ...], str]] = {
    "disk_history": (("galae.mock.analytic",), LEGACY_DISK_HISTORY),
    "birth_clouds": (("galae.mock.analytic", "galae.mock.particles"), LEGACY_BIRTH_CLOUDS),
}


def mock_physics(attrs: dict[str, Any]) -> dict[str, str]:
    """The physics choices (:data:`MOCK_PHYSICS`) a galae mock file was made with, read from
    its generator config; choices that do not apply to its generator (or a file not made by
    ``python -m galae.mock``) are absent."""
    generator = attrs.get("generator")
    cfg = json.loads(str(attrs.get("generator_config", "{}")) or "{}")
    return {
        name: str(cfg.get(name, legacy))
        for name, (generators, legacy) in MOCK_PHYSICS.items()
        if generator in generators
    }


def warn_physics_mismatch(
    attrs: dict[str, Any],
    renderer: Any,
    data: str,
    generators: tuple[str, ...] = ("galae.mock.analytic",),
) -> list[str]:
    """Warn (RuntimeWarning) when a mock file of one of ``generators`` (by default the analytic
    mocks, the model's own family; particle mocks are by design not the model's) was made with
    other physics than ``renderer`` renders, and return the names that differ.

    Args:
        attrs: the file's attributes (:func:`galae.data.hdf5.inspect_h5`).
        renderer: anything with the attributes named in :data:`MOCK_PHYSICS` (a
            :class:`~galae.render.renderer.GalaxyRenderer`, or the training config that will
            build one).
        data: the file's name, for the message.
        generators: the generators whose files are checked.
    """
    if attrs.get("generator") not in generators:
        return []
    data_physics = mock_physics(attrs)
    differ = [k for k, v in data_physics.items() if getattr(renderer, k) != v]
    if differ:
        theirs = ", ".join(f"{k}={data_physics[k]!r}" for k in differ)
        ours = " ".join(f"{k}={getattr(renderer, k)}" for k in differ)
        warnings.warn(
            f"{data} holds mocks made with {theirs}, but the model renders {ours}: this is not "
            f"an evaluation in the model's own family (regenerate the mocks with python -m "
            f"galae.mock ... {ours})",
            RuntimeWarning,
            stacklevel=3,
        )
    return differ


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m galae.mock", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML config (keys of MockConfig)")
    ap.add_argument("--n", type=int, help="number of galaxies")
    ap.add_argument("--out", help="output HDF5 file")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("overrides", nargs="*", help="key=value overrides")
    a = ap.parse_args(argv)
    tune_cpu_allocator()
    ov = parse_overrides(a.overrides)
    if a.workers is not None:
        ov["workers"] = a.workers
    if a.overwrite:
        ov["overwrite"] = True
    cfg = load_config(MockConfig, a.config, ov)
    out = Path(a.out if a.out is not None else cfg.out)
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{out}: file exists (pass --overwrite to replace it)")
    path = run_mock(cfg, out=a.out, n=a.n, seed=a.seed)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    with cli_errors("python -m galae.mock"):
        main()
