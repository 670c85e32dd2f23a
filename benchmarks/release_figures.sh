#!/bin/bash
# The README's figures that read the packaged encoder, drawn again for a new release: the real
# Stripe-82 galaxy (reconstruction, corner plot, analogues), a particle mock's maps with their
# posterior sigma, and the comparison report of the refined, masked autoencoder against the
# U-Net.  Needs the particle mocks of benchmarks/ae_vs_unet.sh and the reports of
# benchmarks/packaged_release.sh (runs/eval_new).  About 5 minutes on 2 CPU cores.
set -e
P=python
S=runs/s82.h5
mkdir -p runs
# the Stripe-82 stamp of tests/data/celeste_sdss (see its ATTRIBUTION.md) as a galae data set
$P - "$S" <<'PY'
import sys
from pathlib import Path

from galae.data.fits import cutouts_to_h5, load_fits_cutouts

d = Path("tests/data/celeste_sdss")
cut = load_fits_cutouts({b: d / f"stamp-{b}-5.0073-0.0739.fits" for b in "ugriz"}, ivar_hdu=1)
cutouts_to_h5(sys.argv[1], [cut], overwrite=True)
PY
$P -m galae.plots reconstruct --data $S --n 1 --refine-steps 60 --mask-neighbours --out runs/s82_reconstruct.png
cp runs/s82_reconstruct.png docs/reconstruct_sdss.png
$P -m galae.plots corner --data $S --params redshift log10_mstar_msun mag_r r_half_arcsec_r --k 1000 --mask-neighbours --out docs/corner_sdss.png
$P -m galae.plots analogues --data $S --refine-steps 60 --mask-neighbours --params log10_mstar_msun redshift mag_r r_half_arcsec_r --out docs/analogues_sdss.png
# the maps figure of row 15 (written beside the reconstruction as <out>_maps.png)
$P -m galae.plots reconstruct --data data/particles_test.h5 --n 16 --maps-of 15 --refine-steps 60 --mask-neighbours --out runs/particles_test_reconstruct.png
cp runs/particles_test_reconstruct_maps.png docs/maps_particles.png
O=runs/eval_new
$P -m galae.evaluate --compare $O/ae_refined_masked_particles_test/metrics.json $O/unet_particles_test/metrics.json --out runs/compare_release
cp runs/compare_release/compare.png docs/compare_particles_test.png
cp runs/compare_release/compare_radial.png docs/compare_particles_test_radial.png
