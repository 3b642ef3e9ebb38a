"""Recover a known 3-D blur kernel from synthetic volumes by gradient descent.

A microscope or scanner blurs every volume it records with its point-spread
function.  Given pairs of sharp and blurred volumes, the kernel can be learned
back: this script builds random sharp volumes (Gaussian blobs of assorted
sizes, float64), blurs them with a known anisotropic 5x5x5 Gaussian, and fits
a ``numbaconv.nn.Conv3d(1, 1, 5, padding=2, bias=False)`` layer to the pairs
with Adam (written in NumPy) on the mean squared error.  It prints the loss
every few steps and the final relative error of the kernel, and saves a
figure: the loss per step (log axis) and the central slices of the true and
learned kernels.

Run it with::

    python examples/recover_blur_kernel.py --steps 250 --out recover_blur_kernel.png

matplotlib is needed for the figure only: ``pip install "numbaconv[examples]"``.
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from numbaconv import conv3d
from numbaconv.nn import Conv3d

KERNEL = 5
SIGMAS = (0.7, 1.0, 1.4)  # voxels, along depth, height and width


def gaussian_kernel(size: int = KERNEL, sigmas: Sequence[float] = SIGMAS) -> np.ndarray:
    """A normalised anisotropic Gaussian of shape (size, size, size)."""
    r = np.arange(size) - (size - 1) / 2
    axes = [np.exp(-0.5 * (r / s) ** 2) for s in sigmas]
    k = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return k / k.sum()


def make_volumes(count: int, size: int, blobs: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``count`` sharp volumes of shape (1, size, size, size): sums of
    Gaussian blobs with random centres, widths (0.4 to 2 voxels) and signed
    amplitudes, on a fine white-noise texture (which carries the high
    frequencies that make the kernel identifiable)."""
    grid = np.arange(size, dtype=np.float64)
    out = np.empty((count, 1, size, size, size))
    for v in range(count):
        vol = 0.3 * rng.standard_normal((size, size, size))
        for _ in range(blobs):
            c = rng.uniform(0, size, 3)
            s = rng.uniform(0.4, 2.0)
            a = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5)
            g = [np.exp(-0.5 * ((grid - c[i]) / s) ** 2) for i in range(3)]
            vol += a * g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
        out[v, 0] = vol
    return out


class Adam:
    """Adam on a list of arrays, updated in place."""

    def __init__(self, params: List[np.ndarray], lr: float = 1e-3,
                 betas=(0.9, 0.999), eps: float = 1e-12):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: List[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def fit(sharp: np.ndarray, blurred: np.ndarray, steps: int, lr: float, seed: int,
        log_every: int, verbose: bool = True):
    """Fit a Conv3d layer mapping ``sharp`` to ``blurred``; return it and the
    loss per step."""
    layer = Conv3d(1, 1, KERNEL, padding=KERNEL // 2, bias=False,
                   dtype=np.float64, rng=seed)
    opt = Adam([layer.weight], lr=lr)
    losses = []
    for step in range(steps):
        residual = layer(sharp) - blurred
        losses.append(0.5 * float(np.mean(residual ** 2)))
        layer.zero_grad()
        layer.backward(residual / residual.size)  # d(loss)/d(output)
        opt.step([layer.weight_grad])
        if verbose and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}   loss {losses[-1]:.3e}")
    return layer, losses


def import_pyplot():
    """matplotlib's pyplot on a file-only backend, or a clear exit."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("this example draws its figure with matplotlib, which "
                         "is not installed: pip install \"numbaconv[examples]\" "
                         "(or pip install matplotlib)") from None
    return plt


def plot(plt, losses: List[float], true: np.ndarray, learned: np.ndarray,
         out: str) -> None:
    """Loss curve and central slices of the true and learned kernels."""
    c = true.shape[0] // 2
    slices = [("depth slice (H, W)", lambda k: k[c, :, :]),
              ("height slice (D, W)", lambda k: k[:, c, :]),
              ("width slice (D, H)", lambda k: k[:, :, c])]
    fig = plt.figure(figsize=(11, 6.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 4, width_ratios=[1.6, 1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    ax.semilogy(np.arange(len(losses)), losses)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (half mean squared error)")
    ax.set_title("training loss")
    ax.grid(True, which="both", alpha=0.3)
    vmax = max(true.max(), learned.max())
    vmin = min(0.0, learned.min())
    for col, (title, cut) in enumerate(slices, start=1):
        for row, (label, k) in enumerate((("true", true), ("learned", learned))):
            a = fig.add_subplot(grid[row, col])
            im = a.imshow(cut(k), vmin=vmin, vmax=vmax, cmap="viridis")
            a.set_title(f"{label}: {title}", fontsize=9)
            a.set_xticks([])
            a.set_yticks([])
    fig.colorbar(im, ax=fig.axes[1:], shrink=0.8, label="kernel weight")
    error = np.linalg.norm(learned - true) / np.linalg.norm(true)
    fig.suptitle(f"Recovering a {true.shape[0]}^3 blur kernel with Conv3d: "
                 f"relative error {error:.1e} after {len(losses)} steps")
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Run the example; returns the losses, the kernel error and the figure path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250,
                        help="gradient-descent steps (default 250)")
    parser.add_argument("--lr", type=float, default=5e-3,
                        help="Adam learning rate (default 5e-3)")
    parser.add_argument("--volumes", type=int, default=4,
                        help="number of training volumes (default 4)")
    parser.add_argument("--size", type=int, default=20,
                        help="edge length of each cubic volume (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--log-every", type=int, default=25,
                        help="print the loss every N steps (default 25)")
    parser.add_argument("--out", default="recover_blur_kernel.png",
                        help="where to save the figure (PNG)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.volumes < 1 or args.size < KERNEL:
        parser.error(f"--steps and --volumes must be positive and --size at "
                     f"least {KERNEL}")
    plt = import_pyplot()  # fail before training, not after

    rng = np.random.default_rng(args.seed)
    true = gaussian_kernel()
    sharp = make_volumes(args.volumes, args.size, blobs=3 * args.size, rng=rng)
    blurred = conv3d(sharp, true[None, None], padding=KERNEL // 2)
    print(f"{args.volumes} volumes of {args.size}^3 voxels, blurred with a "
          f"{KERNEL}^3 Gaussian of sigmas {SIGMAS}")

    start = time.perf_counter()
    layer, losses = fit(sharp, blurred, args.steps, args.lr, args.seed,
                        max(args.log_every, 1))
    elapsed = time.perf_counter() - start
    learned = layer.weight[0, 0]
    error = float(np.linalg.norm(learned - true) / np.linalg.norm(true))
    print(f"{args.steps} steps in {elapsed:.1f} s; relative error of the "
          f"kernel: {error:.2e}")

    plot(plt, losses, true, learned, args.out)
    print(f"figure saved to {args.out}")
    return {"losses": losses, "relative_error": error, "out": args.out,
            "kernel": learned}


if __name__ == "__main__":
    main()
