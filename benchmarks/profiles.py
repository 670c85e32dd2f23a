"""Timing of the Sersic rasteriser and the PSF convolutions (CPU, float32).

    python benchmarks/profiles.py [--batch 256] [--size 64] [--bands 5] [--repeat 5]

Prints wall and CPU milliseconds per batch and microseconds per galaxy for: sersic_image,
sersic_pixel_moments, a forward+backward pass of sersic_image, convolve (separable Gaussian,
FFT Gaussian, FFT Moffat) and convolve_moments.  Numbers depend on the machine and its load;
compare on the same one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from galae.render.psf import GaussianPSF, MoffatPSF, convolve, convolve_moments
from galae.render.raster import sersic_image, sersic_pixel_moments
from galae.settings import DEFAULT_SETTINGS


def _time_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time and median process CPU time of fn(), milliseconds (after a warm-up).

    On a busy machine the CPU time (all threads) is the steadier measure of the work.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    walls.sort()
    cpus.sort()
    return 1e3 * walls[len(walls) // 2], 1e3 * cpus[len(cpus) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--bands", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    batch, size = args.batch, args.size

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(batch, generator=gen)

    params = (
        uniform(0.5, 8.0),
        uniform(0.5, 6.5),
        uniform(0.3, 1.0),
        uniform(0.0, 3.14),
        uniform(size / 2 - 1.5, size / 2),
        uniform(size / 2 - 1.5, size / 2),
    )
    shape = (size, size)
    images = torch.rand(batch, args.bands, size, size, generator=gen)
    moments = torch.rand(batch, args.bands, 6, size, size, generator=gen)
    gauss = GaussianPSF(1.0 + torch.rand(batch, args.bands, generator=gen))
    moffat = MoffatPSF(1.0 + torch.rand(batch, args.bands, generator=gen), 3.5)
    fft_settings = DEFAULT_SETTINGS.with_(separable_psf_convolution=False)
    grad_params = [p.clone().requires_grad_(True) for p in params]

    def forward_backward() -> None:
        sersic_image(*grad_params, shape).square().sum().backward()

    rows = {
        "sersic_image": lambda: sersic_image(*params, shape),
        "sersic_pixel_moments": lambda: sersic_pixel_moments(*params, shape),
        "sersic_image fwd+bwd": forward_backward,
        f"convolve gaussian separable ({args.bands} bands)": lambda: convolve(images, gauss, 0.396),
        f"convolve gaussian FFT ({args.bands} bands)": lambda: convolve(
            images, gauss, 0.396, fft_settings
        ),
        f"convolve moffat FFT ({args.bands} bands)": lambda: convolve(images, moffat, 0.396),
        f"convolve_moments gaussian separable ({args.bands} bands)": lambda: convolve_moments(
            moments, gauss, 0.396
        ),
    }
    print(f"batch {batch}, {size}x{size}, threads {torch.get_num_threads()}")
    print(f"{'':52s} {'wall ms':>9s} {'us/gal':>8s} {'cpu ms':>9s} {'cpu us/gal':>10s}")
    for name, fn in rows.items():
        wall, cpu = _time_ms(fn, args.repeat)
        print(
            f"{name:52s} {wall:9.1f} {1e3 * wall / batch:8.1f} {cpu:9.1f} {1e3 * cpu / batch:10.1f}"
        )


if __name__ == "__main__":
    main()
