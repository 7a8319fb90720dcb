"""Figures: the NumPy helpers against known answers, and every plot writes a readable PNG."""
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from minivae import plots  # noqa: E402
from minivae.backend import to_host  # noqa: E402
from minivae.model import VAE  # noqa: E402
from tests.backends import BACKENDS  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 150_000


def tiny_model(latent_dim=2, backend="numpy"):
    return VAE(x_dim=784, latent_dim=latent_dim, encoder_hidden=(16,), decoder_hidden=(16,),
               seed=0, backend=backend)


def random_images(n, seed=0):
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


def read_png(path):
    """Check the file is a small PNG and return it as an (H, W) or (H, W, channels) array."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE
    assert 0 < len(raw) < MAX_BYTES, f"{path.name} is {len(raw)} bytes"
    image = imread(path)
    assert image.ndim in (2, 3) and min(image.shape[:2]) > 50
    return image


def aspect(image):
    return image.shape[1] / image.shape[0]                 # width / height


# ---------------------------------------------------------------- image_grid
def test_image_grid_shape_and_placement():
    images = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 3, 4), np.float32)
    grid = plots.image_grid(images, rows=2, cols=3, gap=1, fill=-1.0)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 2)
    for i in range(5):                                      # image i at row i // 3, col i % 3
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(grid[r * 4: r * 4 + 3, c * 5: c * 5 + 4], i)
    assert np.all(grid[3, :] == -1) and np.all(grid[:, 4] == -1)   # separator lines
    assert np.all(grid[4:, 10:] == -1)                      # the sixth cell is empty


def test_image_grid_takes_flat_rows():
    x = random_images(6)
    grid = plots.image_grid(x, 2, 3)
    assert grid.shape == (2 * 28 + 1, 3 * 28 + 2)
    np.testing.assert_array_equal(grid[29:57, 29:57], x[4].reshape(28, 28))


def test_image_grid_draws_colour_rows_channels_first():
    rng = np.random.default_rng(1)
    x = rng.random((3, 3 * 4 * 5)).astype(np.float32)      # rows of (C, h, w) = (3, 4, 5) images
    grid = plots.image_grid(x, 1, 3, shape=(3, 4, 5))
    assert grid.shape == (4, 3 * 5 + 2, 3)                  # an RGB image
    img = x[2].reshape(3, 4, 5)
    for channel in range(3):                                # tile 2, channel c = plane c of row 2
        np.testing.assert_array_equal(grid[:, 12:17, channel], img[channel])
    grey = plots.image_grid(x[:, :20], 1, 3, shape=(1, 4, 5))
    np.testing.assert_array_equal(grey[:, 6:11], x[1, :20].reshape(4, 5))


def test_image_grid_rejects_too_many_images_and_non_square_rows():
    with pytest.raises(ValueError, match="do not fit"):
        plots.image_grid(random_images(7), 2, 3)
    with pytest.raises(ValueError, match="not square"):
        plots.image_grid(np.zeros((2, 10)), 1, 2)


# ---------------------------------------------------------------- principal components
def test_principal_components_of_points_on_a_line():
    rng = np.random.default_rng(0)
    direction = np.array([1.0, -2.0, 0.5, 3.0]) / np.linalg.norm([1.0, -2.0, 0.5, 3.0])
    t = rng.standard_normal(200)
    a = 5.0 + t[:, None] * direction                        # (200, 4), all on one line
    projection, ratio = plots.principal_components(a, 2)
    assert projection.shape == (200, 2) and ratio.shape == (2,)
    np.testing.assert_allclose(ratio, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(projection[:, 0]), np.abs(t - t.mean()), atol=1e-10)


def test_principal_components_of_axis_aligned_data():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20000, 3)) * np.array([3.0, 1.0, 0.0])   # variances 9, 1, 0
    projection, ratio = plots.principal_components(a, 2)
    np.testing.assert_allclose(ratio, [0.9, 0.1], atol=0.01)
    np.testing.assert_allclose(projection.var(axis=0), [9.0, 1.0], rtol=0.05)


# ---------------------------------------------------------------- the normal quantile
@pytest.mark.parametrize("p, expected", [(0.5, 0.0), (0.975, 1.959963984540054),
                                         (0.05, -1.6448536269514729), (0.95, 1.6448536269514722),
                                         (0.8413447460685429, 1.0), (1e-10, -6.361340902404056)])
def test_normal_ppf_known_values(p, expected):
    assert plots.normal_ppf(p) == pytest.approx(expected, abs=1e-12)


def test_normal_ppf_inverts_the_cdf():
    for p in np.linspace(0.001, 0.999, 37):
        assert plots.normal_cdf(plots.normal_ppf(p)) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_normal_ppf_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match="0 < p < 1"):
        plots.normal_ppf(p)


# ---------------------------------------------------------------- the figures
@pytest.mark.parametrize("backend", BACKENDS)
def test_plot_reconstructions(tmp_path, backend):
    model = tiny_model(backend=backend)
    x = model.backend.asarray(random_images(12))            # device input
    path = plots.plot_reconstructions(model, x, tmp_path / "recon.png", n=10)
    assert path == tmp_path / "recon.png"
    assert 2.5 < aspect(read_png(path)) < 6.5               # 10 tiles by 2, plus row labels


@pytest.mark.parametrize("backend", BACKENDS)
def test_plot_samples(tmp_path, backend):
    model = tiny_model(backend=backend)
    path = plots.plot_samples(model, tmp_path / "samples.png", model.backend.rng, n=8)
    assert 0.8 < aspect(read_png(path)) < 1.2


@pytest.mark.parametrize("latent_dim", [2, 5])
def test_plot_latent_space(tmp_path, latent_dim):
    model = tiny_model(latent_dim)
    labels = np.arange(250) % 10
    path = plots.plot_latent_space(model, random_images(250), labels, tmp_path / "latent.png",
                                   batch_size=64)           # several batches, one short
    assert 1.0 < aspect(read_png(path)) < 1.6


def test_plot_latent_space_class_names_and_label_check(tmp_path):
    model = tiny_model(5)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    plots.plot_latent_space(model, random_images(30), np.arange(30) % 10, tmp_path / "f.png",
                            class_names=names)
    with pytest.raises(ValueError, match="labels"):
        plots.plot_latent_space(model, random_images(30), np.arange(20), tmp_path / "g.png")


def test_encode_means_batches_match_one_batch():
    model = tiny_model(5)
    x = random_images(101)
    mu, _ = model.encode(x)
    np.testing.assert_allclose(plots.encode_means(model, x, batch_size=25), to_host(mu),
                               rtol=1e-5, atol=1e-6)


def test_plot_manifold(tmp_path):
    path = plots.plot_manifold(tiny_model(2), tmp_path / "manifold.png", n=12)
    assert 0.8 < aspect(read_png(path)) < 1.25


def test_plot_manifold_needs_two_latent_dimensions(tmp_path):
    with pytest.raises(ValueError, match="latent_dim=5"):
        plots.plot_manifold(tiny_model(5), tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_plot_interpolations(tmp_path):
    path = plots.plot_interpolations(tiny_model(5), random_images(6), tmp_path / "interp.png",
                                     pairs=((0, 1), (2, 3), (4, 5)), steps=8)
    assert 2.0 < aspect(read_png(path)) < 4.5               # 10 tiles by 3
    with pytest.raises(ValueError, match="6 rows"):
        plots.plot_interpolations(tiny_model(5), random_images(6), tmp_path / "i.png",
                                  pairs=((0, 6),))


def test_plot_interpolations_along_great_circles_with_row_labels(tmp_path):
    path = plots.plot_interpolations(tiny_model(5), random_images(4), tmp_path / "slerp.png",
                                     pairs=((0, 1), (2, 3)), steps=5, method="spherical",
                                     row_labels=["7\u21922", "1\u21920"], title="spherical")
    assert 2.0 < aspect(read_png(path)) < 4.5               # 7 tiles by 2
    with pytest.raises(ValueError, match="Unknown interpolation"):
        plots.plot_interpolations(tiny_model(5), random_images(2), tmp_path / "i.png",
                                  pairs=((0, 1),), method="cubic")


def test_labelled_grid_with_column_labels_and_a_set_margin(tmp_path):
    tiles = random_images(6).reshape(2, 3, 784)
    narrow = read_png(plots.labelled_grid(tiles, tmp_path / "a.png", ["a", "b"], "t"))
    wide = read_png(plots.labelled_grid(tiles, tmp_path / "b.png", ["a", "b"], "t",
                                        col_labels=["x", "y", "z"], left=150))
    assert wide.shape[1] > narrow.shape[1] and wide.shape[0] > narrow.shape[0]


def test_plot_kl_per_unit(tmp_path):
    kls = [np.array([0.0, 2.5, 0.01, 1.0]), np.array([3.0, 0.0, 0.0, 0.0])]
    variances = [np.array([0.0, 0.5, 0.001, 0.2]), np.array([0.9, 0.0, 0.0, 0.0])]
    path = plots.plot_kl_per_unit(kls, variances, ["beta = 1", "beta = 4"], tmp_path / "kl.png")
    assert 1.5 < aspect(read_png(path)) < 2.5               # two panels side by side


def test_plot_learned_std(tmp_path):
    x = random_images(4)
    m = x * 0.9
    logvar = np.log(np.full_like(x, 0.01)) + np.random.default_rng(1).normal(size=x.shape)
    path = plots.plot_learned_std(x, m, logvar.astype(np.float32), tmp_path / "std.png")
    assert 0.5 < aspect(read_png(path)) < 2.0


def test_plot_gradient_variance(tmp_path):
    def stats(v):
        return {"total_variance": v, "snr": 1 / v}
    rows = [{"k": 1, "reparameterization": stats(4.0), "score_function": stats(400.0)},
            {"k": 10, "reparameterization": stats(0.4), "score_function": stats(40.0),
             "score_function_baseline": stats(4.0)}]
    path = plots.plot_gradient_variance(rows, tmp_path / "gv.png", repeats=20)
    assert 2.0 < aspect(read_png(path)) < 3.0


def test_plot_training_curves(tmp_path):
    history = [{"epoch": e, "train_loss": 200.0 / (e + 1) + 90,
                "test_nelbo": 210.0 / (e + 1) + 92 if e % 2 == 0 else None} for e in range(10)]
    path = plots.plot_training_curves(history, tmp_path / "sub" / "curves.png")
    assert 1.3 < aspect(read_png(path)) < 1.9


def test_importing_minivae_does_not_import_matplotlib_and_plots_avoid_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "import minivae\n"
        "assert 'matplotlib' not in sys.modules and 'minivae.plots' not in sys.modules\n"
        "from minivae import plots\n"
        "assert 'matplotlib' not in sys.modules\n"
        "m = minivae.VAE(784, 2, (8,), (8,))\n"
        f"plots.plot_samples(m, {str(tmp_path / 's.png')!r}, np.random.default_rng(0), n=2)\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)
