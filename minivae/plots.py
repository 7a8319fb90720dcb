r"""Figures of a trained VAE (reconstructions, samples, the latent space, the 2-D manifold), and
of the examples' experiments.

Each ``plot_*`` function takes host or device arrays, brings what it draws to the host with
:func:`~minivae.backend.to_host`, writes one small PNG to ``path`` and returns ``Path(path)``.
Figures are made with ``matplotlib.figure.Figure`` and the Agg canvas, so no pyplot state
is touched and no display is needed.  matplotlib is imported only when a figure is drawn:
``import minivae`` never imports this module, and the NumPy helpers here need no matplotlib.

    image_grid(images, rows, cols)        (N, 784), (N, 28, 28) or (N, 3, h, w) -> one tiled image
    principal_components(a, n)            projection on the top-n PCs and their variance ratios
    normal_ppf(p)                         Phi^{-1}(p), the standard normal quantile (no scipy)

    plot_reconstructions(model, x, path)  inputs over decode(mu(x))
    plot_samples(model, path, rng)        decode(z), z ~ N(0, I), on an n x n grid
    plot_latent_space(model, x, labels, path)   mu(x) (or its top 2 PCs) coloured by class
    plot_manifold(model, path)            decode(z) on a grid of normal quantiles (D = 2 only)
    plot_interpolations(model, x, path)   decode((1 - t) mu_a + t mu_b) between pairs of inputs
    plot_training_curves(history, path)   training loss and test NELBO against epoch
    plot_learned_std(x, m, logvar, path)  a learned-variance decoder's means over its std per pixel
    plot_kl_per_unit(kls, variances, ...) the KL of each latent unit, sorted, one panel per model
    plot_gradient_variance(rows, path, R) gradient estimators' variance and SNR against K
    labelled_grid(tiles, path, labels, title)   rows of images, a label per row

Images are pixel means in [0, 1] drawn with ``cmap="gray"`` on a fixed 0..1 scale (white = 1),
without interpolation, so an untrained decoder's flat grey looks flat and not contrast-stretched.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .backend import to_host
from .checkpoint import write_atomically

DPI = 100
MAX_PIXEL_SCALE = 3      # screen pixels per image pixel in small tiled figures ...
GRID_PIXELS = 720        # ... fewer in large ones: the grid's longest side stays <= 720 px
SEPARATOR = 0.75         # grey of the lines between tiles (0 black, 1 white)


# ---------------------------------------------------------------- pure NumPy helpers
def image_grid(images, rows: int, cols: int, gap: int = 1, fill: float = SEPARATOR,
               shape=None) -> np.ndarray:
    r"""Tile N images row by row into one array, ``gap`` pixels of ``fill`` between tiles.

    ``images`` is (N, h, w) grey, (N, 3, h, w) colour (channels first, as the models see them),
    or (N, P) rows: of ``shape`` = (C, h, w) when given, else P = side^2 grey pixels (MNIST's
    (N, 784) -> 28 x 28 tiles).  Image i lands at row ``i // cols``, column ``i % cols``; cells
    beyond N stay ``fill``.

    Returns a float array (rows h + (rows - 1) gap, cols w + (cols - 1) gap), with a trailing
    axis of 3 for colour images (what ``imshow`` draws as RGB).
    """
    images = to_host(images)
    if images.ndim == 2 and shape is not None:
        images = images.reshape(-1, *shape)
    elif images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"Rows of {images.shape[1]} pixels are not square images: pass "
                             f"(N, h, w) arrays or the images' shape.")
        images = images.reshape(-1, side, side)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]                                   # one channel: grey
    elif images.ndim == 4 and images.shape[1] == 3:
        images = images.transpose(0, 2, 3, 1)                   # (N, h, w, 3) for imshow
    if images.ndim != 3 and not (images.ndim == 4 and images.shape[-1] == 3):
        raise ValueError(f"images has shape {images.shape}; expected (N, h, w), (N, 1 or 3, h, w) "
                         f"or (N, P).")
    n, h, w = images.shape[:3]
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows} x {cols} grid: ask for at least "
                         f"{n} cells.")
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, *images.shape[3:]),
                   fill, dtype=np.result_type(images.dtype, np.float32))
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = r * (h + gap), c * (w + gap)
        grid[top: top + h, left: left + w] = images[i]
    return grid


def image_shape(model) -> tuple:
    """(C, h, w) of the model's images: its ``image_shape``, else square grey rows of x_dim."""
    shape = getattr(model, "image_shape", None)
    if shape is None:
        side = math.isqrt(model.x_dim)
        shape = (1, side, side)
    return tuple(shape)


def principal_components(a, n: int = 2):
    r"""Project the rows of ``a`` (N, D) onto its first ``n`` principal components.

    With the centred data A_c = A - mean(A) = U S V^T (thin SVD, singular values descending):

        projection = A_c V[:, :n] = U[:, :n] S[:n]                        (N, n)
        explained variance ratio_j = S_j^2 / sum_i S_i^2                  (n,)

    Computed in float64.  Each component's sign is whatever the SVD returns.
    """
    a = np.asarray(to_host(a), dtype=np.float64)
    if a.ndim != 2 or n > min(a.shape):
        raise ValueError(f"Cannot take {n} principal components of an array of shape "
                         f"{a.shape}: it needs at least {n} rows and {n} columns.")
    centred = a - a.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    variance = s ** 2
    total = variance.sum()
    ratio = variance[:n] / total if total > 0 else np.zeros(n)
    return centred @ vt[:n].T, ratio


def normal_cdf(x: float) -> float:
    """Phi(x) = (1/2) erfc(-x / sqrt 2), accurate in the lower tail too."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_ppf(p: float) -> float:
    r"""The standard normal quantile Phi^{-1}(p) for 0 < p < 1, by bisection on Phi.

    Phi is increasing, Phi(-40) underflows to 0 and Phi(40) rounds to 1, so [-40, 40] brackets
    the answer for every float p in (0, 1); 64 halvings leave it 80 / 2^64 ~ 4e-18 wide.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_ppf needs 0 < p < 1, got {p}.")
    lo, hi = -40.0, 40.0
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        if normal_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------- figure plumbing
def figure(width_in: float, height_in: float, layout: str | None = "tight"):
    """A matplotlib Figure on an Agg canvas (no pyplot), with a clear error if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"minivae.plots needs matplotlib ({err}): install it with "
                          f'pip install "minivae[plot]".') from None
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path) -> Path:
    """Render ``fig`` and write a compact PNG: 8-bit grey if every pixel is grey, else 256 colours.

    matplotlib's own PNGs are RGBA.  Figures of decoded images are grey and compress about
    three times better as one channel; a scatter of 10,000 semi-transparent points shrinks
    about threefold when quantised to a 256-colour palette, with no visible change.
    (Pillow ships with matplotlib.)  Written atomically
    (:func:`minivae.checkpoint.write_atomically`).
    """
    from PIL import Image

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]               # (H, W, 3) uint8, opaque
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        image = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))    # mode "L"
    else:
        image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(256, dither=0)  # no dither
    # atomically, like every file minivae writes: a full disk leaves the old figure, not half a PNG
    return write_atomically(path, lambda f: image.save(f, format="PNG", optimize=True))


def _to_device(model, x):
    """x (host or device) as the model's dtype on the model's device."""
    return model.backend.asarray(x, dtype=model.dtype)


def grid_figure(grid: np.ndarray, title: str | None = None, left: int = 10, bottom: int = 10):
    r"""A figure showing ``grid`` at a whole number of screen pixels per image pixel.

    The scale is the largest integer <= MAX_PIXEL_SCALE that keeps the grid's longest side
    within GRID_PIXELS (at least 1), so every tile and separator line is drawn the same
    width.  The axes are placed by hand, in pixels, for the same reason: a layout engine
    would resize them by fractions of a pixel.  ``left`` and ``bottom`` are margins in
    pixels for row labels and axis labels.
    """
    h, w = grid.shape[:2]
    scale = max(1, min(MAX_PIXEL_SCALE, GRID_PIXELS // max(h, w)))   # screen px per image px
    top, right = (28 if title else 10), 10
    width, height = left + scale * w + right, bottom + scale * h + top
    fig = figure(width / DPI, height / DPI, layout=None)
    ax = fig.add_axes((left / width, bottom / height, scale * w / width, scale * h / height))
    ax.imshow(np.clip(grid, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest",
              aspect="auto")                             # grey (H, W) or RGB (H, W, 3)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax


def label_rows(ax, labels, tile: int, gap: int = 1) -> None:
    """Name each row of tiles with a y tick at its centre."""
    ax.set_yticks([r * (tile + gap) + (tile - 1) / 2 for r in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=9)
    ax.tick_params(axis="y", length=0)


# ---------------------------------------------------------------- the figures
def plot_reconstructions(model, x, path, n: int = 10) -> Path:
    """The first n inputs (top row, "input") over decode(mu(x)) (bottom row, "reconstruction")."""
    x = x[:n]
    recon = model.reconstruct(_to_device(model, x))                  # (n, P)
    n = x.shape[0]
    shape = image_shape(model)
    grid = image_grid(np.concatenate([to_host(x), to_host(recon)]).astype(np.float32), 2, n,
                      shape=shape)
    fig, ax = grid_figure(grid, left=110)
    label_rows(ax, ["input", "reconstruction"], shape[1])
    return save(fig, path)


def plot_samples(model, path, rng, n: int = 8) -> Path:
    """An n x n grid of decode(z), z ~ N(0, I): ``model.sample(n * n, rng)``."""
    grid = image_grid(model.sample(n * n, rng), n, n, shape=image_shape(model))
    fig, _ = grid_figure(grid, title="samples  E[x | z],  z ~ N(0, I)")
    return save(fig, path)


def encode_means(model, x, batch_size: int = 1000) -> np.ndarray:
    """mu(x) (N, D) on the host, encoding ``batch_size`` rows at a time (bounded device memory)."""
    mus = []
    for start in range(0, x.shape[0], batch_size):
        mu, _ = model.encode(_to_device(model, x[start: start + batch_size]))
        mus.append(to_host(mu))
    return np.concatenate(mus) if mus else np.zeros((0, model.latent_dim), model.dtype)


def plot_latent_space(model, x, labels, path, class_names=None, batch_size: int = 1000) -> Path:
    r"""The encoder means mu(x), coloured by class (tab10).

    D = 2: mu itself.  D > 2: mu projected onto its first two principal components, with the
    share of the variance of mu each one explains in the axis label.
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    if model.latent_dim < 2:
        raise ValueError(f"plot_latent_space needs at least 2 latent dimensions; this model "
                         f"has {model.latent_dim}.")
    mu = encode_means(model, x, batch_size)                           # (N, D)
    labels = to_host(labels).astype(int).ravel()
    if labels.shape[0] != mu.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {mu.shape[0]} inputs: pass one label "
                         f"per row of x.")
    if model.latent_dim == 2:
        points, axis_names = mu, (r"$\mu_1$", r"$\mu_2$")
    else:
        points, ratio = principal_components(mu, 2)
        axis_names = tuple(f"PC{j + 1} ({100 * r:.0f}%)" for j, r in enumerate(ratio))
    classes = np.unique(labels)
    if class_names is None:
        class_names = [str(c) for c in range(max(10, classes.max(initial=0) + 1))]

    cmap = colormaps["tab10"]
    fig = figure(6.4, 5.0)
    ax = fig.add_subplot()
    ax.scatter(points[:, 0], points[:, 1], c=cmap(labels % 10), s=2, alpha=0.6)
    handles = [Line2D([], [], linestyle="", marker="o", markersize=5, color=cmap(c % 10),
                      label=class_names[c]) for c in classes]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              frameon=False, handletextpad=0.2)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    title = "encoder means" if model.latent_dim == 2 else \
        f"encoder means, first 2 of {model.latent_dim} principal components"
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def plot_manifold(model, path, n: int = 20) -> Path:
    r"""decode(z) on an n x n grid of z (Kingma & Welling 2013, fig. 4); D = 2 only.

    Both coordinates run over the normal quantiles Phi^{-1}(linspace(0.05, 0.95, n)), so each
    tile covers an equal share of the prior's mass.  z1 grows to the right, z2 upwards.
    """
    if model.latent_dim != 2:
        raise ValueError(f"plot_manifold draws a 2-D latent space, but this model has "
                         f"latent_dim={model.latent_dim}: use plot_latent_space or "
                         f"plot_samples instead.")
    q = np.array([normal_ppf(p) for p in np.linspace(0.05, 0.95, n)])  # (n,)
    z1, z2 = np.meshgrid(q, q[::-1])                                    # row 0 is the top: largest z2
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)                      # (n*n, 2)
    grid = image_grid(model.decode(_to_device(model, z)), n, n, shape=image_shape(model))
    side = image_shape(model)[1]
    fig, ax = grid_figure(grid, title="decode(z) on normal quantiles", left=64, bottom=40)
    ends = [0, n - 1]
    centres = [i * (side + 1) + (side - 1) / 2 for i in ends]
    ax.set_xticks(centres, [f"{q[i]:.2f}" for i in ends], fontsize=8)
    ax.set_yticks(centres, [f"{q[::-1][i]:.2f}" for i in ends], fontsize=8)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return save(fig, path)


def plot_interpolations(model, x, path, pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)),
                        steps: int = 10, method: str = "linear", row_labels=None,
                        title: str = "input, decoded path between encoder means, input") -> Path:
    r"""For each pair (a, b): x_a, decode(z(t)) for t in linspace(0, 1, steps), x_b.

    z(t) runs from mu_a to mu_b along a line, (1 - t) mu_a + t mu_b, or with ``method="spherical"``
    along a great circle (:func:`minivae.analysis.interpolate`).  One row per pair, steps + 2
    tiles wide; the real inputs sit at the row's ends; rows are labelled "a -> b" unless
    ``row_labels`` are given.
    """
    from .analysis import interpolate

    pairs = [(int(a), int(b)) for a, b in pairs]
    used = sorted({i for pair in pairs for i in pair})
    if used and (used[0] < 0 or used[-1] >= x.shape[0]):
        raise ValueError(f"pairs index images {used[0]}..{used[-1]} but x has {x.shape[0]} rows.")
    ia, ib = [a for a, _ in pairs], [b for _, b in pairs]
    xa, xb = to_host(x[ia]), to_host(x[ib])                              # (R, P) each
    mu_a, _ = model.encode(_to_device(model, xa))                        # (R, D)
    mu_b, _ = model.encode(_to_device(model, xb))
    z = interpolate(mu_a, mu_b, steps, method)                          # (R, S, D)
    path_x = to_host(model.decode(z.reshape(-1, model.latent_dim)))     # (R S, P)
    rows = np.concatenate([xa[:, None], path_x.reshape(len(pairs), steps, -1), xb[:, None]],
                          axis=1)                                       # (R, S + 2, P)
    shape = image_shape(model)
    grid = image_grid(rows.reshape(-1, rows.shape[-1]).astype(np.float32), len(pairs), steps + 2,
                      shape=shape)
    fig, ax = grid_figure(grid, title=title, left=60)
    label_rows(ax, row_labels or [f"{a} \u2192 {b}" for a, b in pairs], shape[1])
    return save(fig, path)


def plot_training_curves(history, path) -> Path:
    """Training loss and test NELBO (nats per example) against epoch.

    ``history`` is a list of dicts with ``epoch``, ``train_loss`` and ``test_nelbo``; an entry
    without a value (missing or None, e.g. no evaluation that epoch) is skipped for that curve.
    """
    fig = figure(6.4, 4.0)
    ax = fig.add_subplot()
    for key, name, style in (("train_loss", "train loss", "-"), ("test_nelbo", "test NELBO", "o-")):
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            epochs, values = zip(*points)
            ax.plot(epochs, values, style, markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    return save(fig, path)


def plot_learned_std(x, m, logvar, path) -> Path:
    r"""A learned-variance Gaussian decoder at n inputs x (n, P): the inputs and its means m (grey,
    clipped to 0..1) over its per-pixel standard deviation exp(logvar / 2) (log colour scale)."""
    from matplotlib.colors import LogNorm

    n, P = x.shape
    top = image_grid(np.concatenate([to_host(x), np.clip(to_host(m), 0, 1)]), 2, n)
    std = image_grid(np.exp(0.5 * to_host(logvar).astype(np.float64)), 1, n, fill=np.nan)
    fig = figure(1.0 + 0.75 * n, 3.6)
    ax_top, ax_std = fig.subplots(2, 1, height_ratios=[2, 1.25])
    ax_top.imshow(top, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    label_rows(ax_top, ["input", "mean m"], math.isqrt(P))
    ax_top.set_xticks([])
    ax_top.set_title("learned decoder: mean and standard deviation exp(v/2) per pixel", fontsize=10)
    image = ax_std.imshow(std, cmap="magma", norm=LogNorm(), interpolation="nearest")
    ax_std.set_xticks([])
    ax_std.set_yticks([])
    ax_std.set_ylabel("std", fontsize=9)
    fig.colorbar(image, ax=ax_std, fraction=0.05, pad=0.01)
    return save(fig, path)


def plot_kl_per_unit(kls, variances, titles, path, threshold: float = 1e-2) -> Path:
    r"""One panel per model: the KL of each latent unit in nats (``kls[i]``, (D,)), sorted, most
    informative first; active units (Cov_x E_q[z_d], ``variances[i]``, above ``threshold``) dark,
    inactive ones light."""
    fig = figure(2.6 * len(kls) + 0.6, 3.0)
    axes = fig.subplots(1, len(kls), sharey=True, squeeze=False)[0]
    for ax, kl, var, title in zip(axes, kls, variances, titles):
        kl = np.asarray(kl)
        order = np.argsort(kl)[::-1]                                     # most informative first
        active = np.asarray(var)[order] > threshold
        ax.bar(np.arange(len(kl)), kl[order], color=np.where(active, "tab:blue", "lightgray"))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latent unit (sorted)", fontsize=8)
        ax.set_xticks([])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("KL per unit (nats)")
    return save(fig, path)


def plot_gradient_variance(rows, path, repeats: int) -> Path:
    r"""Each gradient estimator's total variance and mean signal-to-noise ratio against K (log-log).

    ``rows`` are examples/gradient_variance.py's: one per K, ``{"k": K, name: {"total_variance",
    "snr"}}`` for each estimator measured at that K.  A 1/K line runs through the
    reparameterisation's first point; the SNR panel marks sqrt(2 / (pi R)), what an entry with zero
    mean reads after R = ``repeats`` repeats.
    """
    fig = figure(10, 4)
    ax_var, ax_snr = fig.subplots(1, 2)
    names = {"reparameterization": "reparam", "score_function": "score fn",
             "score_function_baseline": "score fn+b"}
    for (name, label), style in zip(names.items(), ("o-", "s-", "^-")):
        points = [(r["k"], r[name]) for r in rows if name in r]
        if not points:
            continue
        ks = [k for k, _ in points]
        ax_var.plot(ks, [s["total_variance"] for _, s in points], style, ms=4, label=label)
        ax_snr.plot(ks, [s["snr"] for _, s in points], style, ms=4, label=label)
    ks = np.array([r["k"] for r in rows], dtype=float)
    v0 = rows[0]["reparameterization"]["total_variance"] * ks[0]
    ax_var.plot(ks, v0 / ks, "k:", lw=1, label="1/K")
    ax_snr.axhline(math.sqrt(2 / (math.pi * repeats)), color="k", ls=":", lw=1,
                   label="zero-mean floor")
    for ax in (ax_var, ax_snr):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K (samples per estimate)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(frameon=False, fontsize=9)
    ax_var.set_ylabel("total variance of the encoder gradient")
    ax_var.set_title(f"variance over {repeats} repeats", fontsize=10)
    ax_snr.set_ylabel("mean |mean| / std over entries")
    ax_snr.set_title("signal-to-noise ratio", fontsize=10)
    return save(fig, path)


def plot_gradient_snr(results, path) -> Path:
    r"""Each estimator's gradient SNR against k (log-log): the encoder's and the decoder's panels.

    ``results`` are examples/gradient_snr.py's: ``{estimator: [{"k": k, "encoder": {"snr", ...},
    "decoder": {"snr", ...}}, ...]}`` (:func:`minivae.estimators.gradient_snr` per k).  Dotted
    lines of slope -1/2 and +1/2 run through the first point of the first estimator in each panel
    (Rainforth et al. 2018: IWAE's encoder SNR ~ k^(-1/2), its decoder's ~ k^(+1/2)); a grey line
    marks sqrt(2 / (pi R)), what an entry with zero mean reads after R repeats.
    """
    fig = figure(10, 4)
    axes = dict(zip(("encoder", "decoder"), fig.subplots(1, 2)))
    styles = ("o-", "s-", "^-", "v-", "D-", "x-")
    for (name, rows), style in zip(results.items(), styles):
        ks = [r["k"] for r in rows]
        for group, ax in axes.items():
            ax.plot(ks, [r[group]["snr"] for r in rows], style, ms=4, label=name)
    rows = next(iter(results.values()))
    ks = np.array([r["k"] for r in rows], dtype=float)
    repeats = rows[0]["encoder"]["repeats"]
    for group, ax in axes.items():
        s0 = rows[0][group]["snr"]
        ax.plot(ks, s0 * (ks / ks[0]) ** -0.5, "k:", lw=1, label="k^(-1/2)")
        ax.plot(ks, s0 * (ks / ks[0]) ** 0.5, "k--", lw=1, label="k^(+1/2)")
        ax.axhline(math.sqrt(2 / (math.pi * repeats)), color="0.6", lw=1,
                   label="zero-mean floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("k (samples per estimate)")
        ax.set_ylabel("mean |mean| / std over entries")
        ax.set_title(f"{group} gradient SNR, {repeats} repeats", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(frameon=False, fontsize=8)
    return save(fig, path)


def labelled_grid(tiles, path, row_labels, title, col_labels=None, left: int | None = None,
                  shape=None):
    """tiles (R, C, P) as an R x C grid of images of ``shape`` (C, h, w) (default: square grey)
    with a label per row (and per column); ``left`` pixels of margin for the row labels (default:
    enough for the longest)."""
    R, C, P = tiles.shape
    grid = image_grid(tiles.reshape(R * C, P).astype(np.float32), R, C, shape=shape)
    side = (grid.shape[0] + 1) // R - 1                               # tile height
    if left is None:
        left = 12 + 7 * max(len(label) for label in row_labels)     # room for the row labels
    fig, ax = grid_figure(grid, title=title, left=left, bottom=30 if col_labels else 10)
    label_rows(ax, row_labels, side)
    if col_labels:
        ax.set_xticks([c * (side + 1) + (side - 1) / 2 for c in range(C)], col_labels, fontsize=8)
    return save(fig, path)


__all__ = ["image_grid", "principal_components", "normal_cdf", "normal_ppf", "encode_means",
           "plot_reconstructions", "plot_samples", "plot_latent_space", "plot_manifold",
           "plot_interpolations", "plot_training_curves", "plot_learned_std", "plot_kl_per_unit",
           "plot_gradient_variance", "plot_gradient_snr", "labelled_grid"]
