"""Which summary of the map posterior to report: four estimators on particle mocks.

For each galaxy, k posterior draws of the stellar-mass and SFR maps (``post.map_samples``) give

* ``model_maps``: the maps at the posterior mean latent (one model; additive);
* ``mean_log``: the per-pixel posterior mean of the log map (``post.maps``);
* ``log_mean``: the log of the per-pixel posterior mean surface density (additive);
* ``mean_log_aperture`` (within 2 r_half only): the posterior mean, draw by draw, of the log of
  the aperture sum.

and the script reports, for each, the scatter of log M* and log SFR inside 2 r_half and the
per-pixel scatter over the well-sampled pixels (``galae.evaluate.map_metrics``).  galae reports
``mean_log`` per pixel and ``model_maps`` inside apertures (docs/results.md, issue 6).

    python benchmarks/map_estimators.py --checkpoint src/galae/default_model/model.pt \\
        --data data/particles_test.h5 --n 128 --refine-steps 60 --name refined_test

Writes ``benchmarks/results/map_estimators_<name>.json``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import write_result

import galae
from galae.data.hdf5 import read_h5
from galae.evaluate import (
    APERTURE_MAPS,
    SAMPLING_MAPS,
    aperture_geometry,
    aperture_log_ratio,
    map_metrics,
)

ESTIMATORS = ("model_maps", "mean_log", "log_mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the packaged model")
    ap.add_argument("--data", required=True, help="particle mocks (HDF5 with truth maps)")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--draws", type=int, default=32)
    ap.add_argument("--refine-steps", type=int, default=0)
    ap.add_argument("--no-mask-neighbours", action="store_true")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", required=True, help="results/map_estimators_NAME.json")
    a = ap.parse_args()
    model = galae.load(a.checkpoint)
    names = list(APERTURE_MAPS)
    truth: dict[str, list[np.ndarray]] = {}
    counts: dict[str, list[np.ndarray]] = {}
    params: dict[str, list[np.ndarray]] = {}
    pred: dict[str, dict[str, list[np.ndarray]]] = {e: {} for e in ESTIMATORS}
    aperture: dict[str, list[np.ndarray]] = {}
    scale = 0.396
    for start in range(0, a.n, a.batch_size):
        rows = np.arange(start, min(a.n, start + a.batch_size))
        d = read_h5(a.data, rows, with_maps=True, expected_bands=model.bands)
        scale = float(np.atleast_1d(d["pixel_scale_arcsec"])[0])
        post = model.encode(
            d["images"],
            d["sigma"],
            psf_fwhm_arcsec=d["psf_fwhm_arcsec"],
            redshift=d["redshift"],
            pixel_scale_arcsec=scale,
            mask=d["mask"],
            n_mc_derived=0,
            seed=a.seed,
            refine_steps=a.refine_steps,
            mask_neighbours=not a.no_mask_neighbours,
        )
        draws = {k: v.double().numpy() for k, v in post.map_samples(a.draws, a.seed, names).items()}
        tp = d["truth"]["params"]
        rad, r_half_pix = aperture_geometry(tp, d["images"].shape[-2:], scale, len(rows))
        for k in names:
            truth.setdefault(k, []).append(d["truth"]["maps"][k])
            x = draws[k]
            pred["model_maps"].setdefault(k, []).append(post.model_maps[k].numpy())
            pred["mean_log"].setdefault(k, []).append(x.mean(0))
            pred["log_mean"].setdefault(k, []).append(np.log10(np.mean(10.0**x, 0)))
            lr = [aperture_log_ratio(truth[k][-1], x[j], rad, r_half_pix) for j in range(len(x))]
            aperture.setdefault(k, []).append(np.mean(lr, 0))
        for k in SAMPLING_MAPS:
            if k in d["truth"]["maps"]:
                counts.setdefault(k, []).append(d["truth"]["maps"][k])
        for k, v in tp.items():
            params.setdefault(k, []).append(v)
        print(f"{rows[-1] + 1}/{a.n}", flush=True)

    def cat(x: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in x.items()}

    tm, cm, tp_all = cat(truth), cat(counts), cat(params)
    shape = tm[names[0]].shape[1:]
    results: dict[str, dict[str, float]] = {}
    for e in ESTIMATORS:
        m = map_metrics(tm, cat(pred[e]), tp_all, shape, scale, a.n, counts=cm)
        results[e] = {
            "log10_mstar_2rhalf_scatter_dex": m["log10_mstar_2rhalf"]["scatter_dex"],
            "log10_sfr_2rhalf_scatter_dex": m["log10_sfr_2rhalf"]["scatter_dex"],
            "mstar_map_per_pixel_scatter_well_sampled_dex": m[names[0]][
                "per_pixel_scatter_well_sampled"
            ],
            "sfr_map_per_pixel_scatter_well_sampled_dex": m[names[1]][
                "per_pixel_scatter_well_sampled"
            ],
        }
    ap_lr = cat(aperture)
    results["mean_log_aperture"] = {
        f"{APERTURE_MAPS[k]}_scatter_dex": float(np.nanstd(v)) for k, v in ap_lr.items()
    }
    write_result(
        f"map_estimators_{a.name}",
        {
            "command": "python benchmarks/map_estimators.py "
            + " ".join(f"{k}={v}" for k, v in vars(a).items()),
            "checkpoint": a.checkpoint or "packaged default model",
            "data": a.data,
            "n_galaxies": a.n,
            "draws": a.draws,
            "refine_steps": a.refine_steps,
            "mask_neighbours": not a.no_mask_neighbours,
            "estimators": results,
        },
    )


if __name__ == "__main__":
    main()
