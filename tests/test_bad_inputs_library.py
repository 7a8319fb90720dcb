"""Bad inputs to the library API: one clear sentence each, naming the value, its range and the fix.

One table of cases (constructors, the bound, sampling, log-likelihood, active units, optimizers and
the likelihoods' data rules): each case is a call, the exception type it must raise and a regex its
message must match.  Every message is one line.  Then the good path: good data passes, the data
check runs once per call, and ``check_data=False`` skips it (what the trainer does per step, having
checked its whole data set once).
"""
import math
import re

import numpy as np
import pytest

from minivae.checks import InvalidInput, InvalidInputType
from minivae.evaluate import (active_units, active_units_per_layer, latent_mean_variances,
                              log_likelihood, summarize)
from minivae.likelihoods import (Bernoulli, DiscretizedLogistic, GaussianFixed, GaussianLearned,
                                 make_likelihood)
from minivae.layers import MLP, make_activation
from minivae.model import VAE
from minivae.optim import SGD, Adagrad, Adam, make_optimizer
from minivae.two_layer import TwoLayerVAE


def vae(**changes):
    """A tiny VAE: 4 pixels, 2 latent units, float64."""
    kw = dict(x_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,), dtype="float64")
    return VAE(**{**kw, **changes})


def two(**changes):
    """A tiny two-layer model: 4 pixels, h1 = h2 = 2 units, float64."""
    kw = dict(x_dim=4, h1_dim=2, h2_dim=2, x_hidden=(3,), h_hidden=(3,), dtype="float64")
    return TwoLayerVAE(**{**kw, **changes})


X = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])   # (3, 4) binary


def with_value(value, at=(0, 1), x=X):
    x = x.copy()
    x[at] = value
    return x


RAW_PIXELS = (X * 255).astype(np.uint8)                 # what a user gets from the IDX files
GAUSS = dict(likelihood="gaussian", sigma=0.5)


def adam_stepped_with_lr(lr):
    opt = Adam()
    opt.lr = lr                                         # what a schedule does between steps
    opt.step({"w": np.zeros(2)}, {"w": np.ones(2)})


def int_msg(name, minimum=1):
    return rf"{name} must be an integer >= {minimum}, got "


def real_msg(name, inequality):
    return rf"{name} must be a finite number with {re.escape(inequality)}, got "

CASES = [
    # ---------------------------------------------------------------- VAE(...)
    ("vae latent_dim=0", lambda: vae(latent_dim=0), ValueError, int_msg("latent_dim") + "0"),
    ("vae x_dim=-3", lambda: vae(x_dim=-3), ValueError, int_msg("x_dim") + "-3"),
    ("vae x_dim=2.5", lambda: vae(x_dim=2.5), TypeError, int_msg("x_dim") + "2.5"),
    ("vae latent_dim=True", lambda: vae(latent_dim=True), TypeError,
     int_msg("latent_dim") + "True"),
    ("vae latent_dim='50'", lambda: vae(latent_dim="50"), TypeError,
     int_msg("latent_dim") + "'50'"),
    ("vae encoder_hidden has 0", lambda: vae(encoder_hidden=(4, 0)), ValueError,
     r"encoder_hidden must be a sequence of layer sizes.*got \(4, 0\)"),
    ("vae decoder_hidden=200", lambda: vae(decoder_hidden=200), TypeError,
     r"decoder_hidden must be a sequence of layer sizes.*such as \(200, 200\).*got 200"),
    ("vae encoder_hidden='200'", lambda: vae(encoder_hidden="200"), TypeError,
     r"encoder_hidden must be a sequence of layer sizes.*got '200'"),
    ("vae decoder_hidden=(2.5,)", lambda: vae(decoder_hidden=(2.5,)), TypeError,
     r"decoder_hidden must be a sequence of layer sizes.*got \(2\.5,\)"),
    ("vae activation unknown", lambda: vae(activation="swish"), ValueError,
     r"Unknown activation 'swish': choose one of identity, relu, .*tanh"),
    ("vae activation unknown, no hidden layers",
     lambda: vae(activation="swish", encoder_hidden=(), decoder_hidden=()), ValueError,
     r"Unknown activation 'swish'"),
    ("vae activation not a string", lambda: vae(activation=["tanh"]), TypeError,
     r"Unknown activation \['tanh'\]"),
    ("vae likelihood unknown", lambda: vae(likelihood="poisson"), ValueError,
     r"Unknown likelihood 'poisson': choose one of bernoulli, gaussian, gaussian_learned"),
    ("vae sigma=0", lambda: vae(likelihood="gaussian", sigma=0), ValueError,
     real_msg("sigma", "sigma > 0") + "0"),
    ("vae sigma=nan", lambda: vae(likelihood="gaussian", sigma=float("nan")), ValueError,
     real_msg("sigma", "sigma > 0") + "nan"),
    ("vae sigma=inf", lambda: vae(likelihood="gaussian", sigma=math.inf), ValueError,
     real_msg("sigma", "sigma > 0") + "inf"),
    ("vae sigma='1'", lambda: vae(sigma="1"), TypeError, real_msg("sigma", "sigma > 0") + "'1'"),
    ("vae dtype float16", lambda: vae(dtype="float16"), ValueError,
     r"dtype must be float32 or float64, got 'float16'"),
    ("vae dtype nonsense", lambda: vae(dtype="nope"), ValueError,
     r"dtype must be float32 or float64, got 'nope'"),
    ("vae seed=-1", lambda: vae(seed=-1), ValueError, int_msg("seed", 0) + "-1"),
    ("vae seed=1.5", lambda: vae(seed=1.5), TypeError, int_msg("seed", 0) + "1.5"),
    ("vae backend unknown", lambda: vae(backend="jax"), ValueError, r"Unknown backend 'jax'"),
    # ---------------------------------------------------------------- TwoLayerVAE(...)
    ("two h1_dim=0", lambda: two(h1_dim=0), ValueError, int_msg("h1_dim") + "0"),
    ("two h2_dim=-1", lambda: two(h2_dim=-1), ValueError, int_msg("h2_dim") + "-1"),
    ("two x_dim=7.0", lambda: two(x_dim=7.0), TypeError, int_msg("x_dim") + "7.0"),
    ("two x_hidden has 0", lambda: two(x_hidden=(0,)), ValueError,
     r"x_hidden must be a sequence of layer sizes.*got \(0,\)"),
    ("two h_hidden=None", lambda: two(h_hidden=None), TypeError,
     r"h_hidden must be a sequence of layer sizes.*got None"),
    ("two activation unknown", lambda: two(activation="gelu"), ValueError,
     r"Unknown activation 'gelu'"),
    ("two sigma=-1", lambda: two(likelihood="gaussian", sigma=-1.0), ValueError,
     real_msg("sigma", "sigma > 0") + "-1"),
    ("two seed=-2", lambda: two(seed=-2), ValueError, int_msg("seed", 0) + "-2"),
    # ------------------------------------------------------------ forward, loss_and_grads, bound
    ("loss k=0", lambda: vae().loss_and_grads(X, "iwae", 0), ValueError, int_msg("k") + "0"),
    ("loss k=-1", lambda: vae().loss_and_grads(X, "iwae", -1), ValueError, int_msg("k") + "-1"),
    ("loss k=2.5", lambda: vae().loss_and_grads(X, "iwae", 2.5), TypeError, int_msg("k") + "2.5"),
    ("loss k=True", lambda: vae().loss_and_grads(X, "iwae", True), TypeError,
     int_msg("k") + "True"),
    ("loss beta=-1", lambda: vae().loss_and_grads(X, beta=-1), ValueError,
     real_msg("beta", "beta >= 0") + "-1"),
    ("loss beta=nan", lambda: vae().loss_and_grads(X, beta=float("nan")), ValueError,
     real_msg("beta", "beta >= 0") + "nan"),
    ("loss beta='1'", lambda: vae().loss_and_grads(X, beta="1"), TypeError,
     real_msg("beta", "beta >= 0") + "'1'"),
    ("loss objective unknown", lambda: vae().loss_and_grads(X, "vae"), ValueError,
     r"Unknown objective 'vae': choose one of elbo, mc_elbo, iwae"),
    ("loss empty batch", lambda: vae().loss_and_grads(np.zeros((0, 4))), ValueError,
     r"x is an empty batch \(shape \(0, 4\)\): pass at least one example"),
    ("loss x wrong width", lambda: vae().loss_and_grads(np.zeros((3, 5))), ValueError,
     r"x has shape \(3, 5\) but the model expects \(batch, 4\)"),
    ("loss x complex", lambda: vae().loss_and_grads(X.astype(complex)), TypeError,
     r"x has dtype complex128 but the model needs real numbers"),
    ("loss x NaN", lambda: vae().loss_and_grads(with_value(np.nan)), ValueError,
     r"x holds NaN values but the bernoulli likelihood needs finite data"),
    ("loss x inf", lambda: vae().loss_and_grads(with_value(np.inf)), ValueError,
     r"x holds infinite values but the bernoulli likelihood needs finite data"),
    ("loss raw uint8 pixels", lambda: vae().loss_and_grads(RAW_PIXELS), ValueError,
     r"x has values in \[0, 255\] but the bernoulli likelihood needs x in \[0, 1\]: .*"
     r"divide by 255 and binarise"),
    ("loss x below 0", lambda: vae().loss_and_grads(with_value(-0.5)), ValueError,
     r"x has values in \[-0\.5, 1\] but the bernoulli likelihood needs x in \[0, 1\]: rescale"),
    ("loss x above 1", lambda: vae().loss_and_grads(with_value(1.5)), ValueError,
     r"x has values in \[0, 1\.5\] but the bernoulli likelihood needs x in \[0, 1\]"),
    ("loss gaussian x NaN", lambda: vae(**GAUSS).loss_and_grads(with_value(np.nan)), ValueError,
     r"x holds NaN values but the gaussian likelihood needs finite data"),
    ("loss gaussian_learned x -inf",
     lambda: vae(likelihood="gaussian_learned").loss_and_grads(with_value(-np.inf)), ValueError,
     r"x holds infinite values but the gaussian_learned likelihood"),
    ("forward k=0", lambda: vae().forward(X, "elbo", 0), ValueError, int_msg("k") + "0"),
    ("bound k=0", lambda: vae().bound(X, "iwae", 0), ValueError, int_msg("k") + "0"),
    ("bound x NaN", lambda: vae().bound(with_value(np.nan)), ValueError, r"x holds NaN values"),
    ("bound eps shape", lambda: vae().bound(X, "iwae", 2, eps=np.zeros((1, 3, 2))), ValueError,
     r"eps has shape \(1, 3, 2\) but k=2 samples of a batch of 3 need \(2, 3, 2\)"),
    ("two loss k=0", lambda: two().loss_and_grads(X, "iwae", 0), ValueError, int_msg("k") + "0"),
    ("two loss raw pixels", lambda: two().loss_and_grads(RAW_PIXELS), ValueError,
     r"divide by 255"),
    ("two loss empty batch", lambda: two().loss_and_grads(np.zeros((0, 4))), ValueError,
     r"x is an empty batch"),
    # ---------------------------------------------------------------- log_weights
    ("log_weights x NaN", lambda: vae().log_weights(with_value(np.nan), np.zeros((2, 3, 2))),
     ValueError, r"x holds NaN values"),
    ("log_weights empty", lambda: vae().log_weights(np.zeros((0, 4)), np.zeros((2, 0, 2))),
     ValueError, r"x is an empty batch"),
    ("log_weights eps 2-D", lambda: vae().log_weights(X, np.zeros((3, 2))), ValueError,
     r"eps has shape \(3, 2\)"),
    # ---------------------------------------------------------------- encode / decode / sample
    ("encode x 1-D", lambda: vae().encode(np.zeros(4)), ValueError,
     r"x has shape \(4,\) but the model expects \(batch, 4\)"),
    ("encode x list", lambda: vae().encode([[0.0, 1.0, 0.0, 1.0]]), ValueError,
     r"x has shape list but the model expects \(batch, 4\)"),
    ("decode z wrong width", lambda: vae().decode(np.zeros((3, 5))), ValueError,
     r"z has shape \(3, 5\) but the decoder expects \(\.\.\., 2\)"),
    ("two decode h1 wrong width", lambda: two().decode(np.zeros((3, 3))), ValueError,
     r"h1 has shape \(3, 3\) but the decoder expects \(\.\.\., 2\)"),
    ("sample n=0", lambda: vae().sample(0), ValueError, int_msg("n") + "0"),
    ("sample n=-1", lambda: vae().sample(-1), ValueError, int_msg("n") + "-1"),
    ("sample n=2.5", lambda: vae().sample(2.5), TypeError, int_msg("n") + "2.5"),
    ("two sample n=0", lambda: two().sample(0), ValueError, int_msg("n") + "0"),
    ("two latent_means n_samples=0", lambda: two().latent_means(X, n_samples=0), ValueError,
     int_msg("n_samples") + "0"),
    # ---------------------------------------------------------------- log_likelihood
    ("log_likelihood k=0", lambda: log_likelihood(vae(), X, 0), ValueError, int_msg("k") + "0"),
    ("log_likelihood k=2.5", lambda: log_likelihood(vae(), X, 2.5), TypeError,
     int_msg("k") + "2.5"),
    ("log_likelihood max_rows=0", lambda: log_likelihood(vae(), X, 5, max_rows=0), ValueError,
     int_msg("max_rows") + "0"),
    ("log_likelihood batch_size=0", lambda: log_likelihood(vae(), X, 5, batch_size=0), ValueError,
     int_msg("batch_size") + "0"),
    ("log_likelihood batch_size=1.5", lambda: log_likelihood(vae(), X, 5, batch_size=1.5),
     TypeError, int_msg("batch_size") + "1.5"),
    ("log_likelihood x empty", lambda: log_likelihood(vae(), np.zeros((0, 4)), 5), ValueError,
     r"x is an empty batch"),
    ("log_likelihood x wrong width", lambda: log_likelihood(vae(), np.zeros((3, 7)), 5),
     ValueError, r"x has shape \(3, 7\) but the model expects \(batch, 4\)"),
    ("log_likelihood x NaN", lambda: log_likelihood(vae(), with_value(np.nan), 5), ValueError,
     r"x holds NaN values"),
    ("log_likelihood raw pixels", lambda: log_likelihood(vae(), RAW_PIXELS, 5), ValueError,
     r"divide by 255"),
    # ---------------------------------------------------------------- active units, summarize
    ("latent_mean_variances batch_size=0", lambda: latent_mean_variances(vae(), X, 0), ValueError,
     int_msg("batch_size") + "0"),
    ("active_units x empty", lambda: active_units(vae(), np.zeros((0, 4))), ValueError,
     r"x is an empty batch"),
    ("active_units x wrong width", lambda: active_units(vae(), np.zeros((3, 2))), ValueError,
     r"x has shape \(3, 2\) but the model expects \(batch, 4\)"),
    ("active_units threshold=-1", lambda: active_units(vae(), X, threshold=-1.0), ValueError,
     real_msg("threshold", "threshold >= 0") + "-1"),
    ("active_units_per_layer threshold=nan",
     lambda: active_units_per_layer(two(), X, threshold=float("nan")), ValueError,
     real_msg("threshold", "threshold >= 0") + "nan"),
    ("summarize empty", lambda: summarize([]), ValueError,
     r"summarize needs a non-empty 1-D array of log-likelihoods, got shape \(0,\)"),
    ("summarize 2-D", lambda: summarize(np.zeros((2, 3))), ValueError,
     r"summarize needs a non-empty 1-D array of log-likelihoods, got shape \(2, 3\)"),
    ("summarize NaN", lambda: summarize([-90.0, np.nan, -95.0]), ValueError,
     r"ll holds 1 non-finite log-likelihood of 3"),
    # ---------------------------------------------------------------- optimizers
    ("Adam lr=0", lambda: Adam(lr=0), ValueError, real_msg("lr", "lr > 0") + "0"),
    ("Adam lr=-0.01", lambda: Adam(lr=-0.01), ValueError, real_msg("lr", "lr > 0") + "-0.01"),
    ("Adam lr=nan", lambda: Adam(lr=float("nan")), ValueError, real_msg("lr", "lr > 0") + "nan"),
    ("Adam lr='fast'", lambda: Adam(lr="fast"), TypeError, real_msg("lr", "lr > 0") + "'fast'"),
    ("Adam beta1=1", lambda: Adam(beta1=1.0), ValueError,
     real_msg("beta1", "0 <= beta1 < 1") + "1"),
    ("Adam beta2=-0.1", lambda: Adam(beta2=-0.1), ValueError,
     real_msg("beta2", "0 <= beta2 < 1") + "-0.1"),
    ("Adam eps=0", lambda: Adam(eps=0.0), ValueError, real_msg("eps", "eps > 0") + "0"),
    ("SGD lr=0", lambda: SGD(lr=0.0), ValueError, real_msg("lr", "lr > 0") + "0"),
    ("SGD momentum=1", lambda: SGD(momentum=1.0), ValueError,
     real_msg("momentum", "0 <= momentum < 1") + "1"),
    ("Adagrad eps=-1", lambda: Adagrad(eps=-1.0), ValueError, real_msg("eps", "eps > 0") + "-1"),
    ("make_optimizer unknown", lambda: make_optimizer("rmsprop"), ValueError,
     r"Unknown optimizer 'rmsprop': choose one of sgd, adam, adagrad"),
    ("make_optimizer unknown hyperparameter", lambda: make_optimizer("adam", lr=1e-3, rho=0.9),
     TypeError, r"Adam has no hyperparameter 'rho': it takes lr, beta1, beta2, eps"),
    ("step lr set to nan", lambda: adam_stepped_with_lr(float("nan")), ValueError,
     real_msg("lr", "lr > 0") + "nan"),
    ("step lr set to 0", lambda: adam_stepped_with_lr(0.0), ValueError,
     real_msg("lr", "lr > 0") + "0"),
    ("step gradient without a parameter",
     lambda: Adam().step({"w": np.zeros(2)}, {"v": np.ones(2)}), ValueError,
     r"grads has 'v' but params has no parameter of that name"),
    ("step gradient of the wrong shape",
     lambda: SGD().step({"w": np.zeros(2)}, {"w": np.ones(3)}), ValueError,
     r"The gradient of 'w' has shape \(3,\) but the parameter has shape \(2,\)"),
    # ---------------------------------------------------------------- layers and likelihoods
    ("make_activation unknown", lambda: make_activation("swish"), ValueError,
     r"Unknown activation 'swish'"),
    ("MLP size 0", lambda: MLP([4, 0, 2]), ValueError,
     r"sizes must be a sequence of layer sizes.*got \[4, 0, 2\]"),
    ("make_likelihood None", lambda: make_likelihood(None), ValueError,
     r"Unknown likelihood None"),
    ("GaussianFixed sigma=0", lambda: GaussianFixed(0.0), ValueError,
     real_msg("sigma", "sigma > 0") + "0"),
    ("Bernoulli.check_data raw pixels", lambda: Bernoulli().check_data(RAW_PIXELS), ValueError,
     r"x has values in \[0, 255\] .*divide by 255"),
    ("Bernoulli.check_data strings", lambda: Bernoulli().check_data(np.array([["a"]])), TypeError,
     r"x has dtype <U1 but the bernoulli likelihood needs real numbers"),
    ("GaussianLearned.check_data NaN", lambda: GaussianLearned().check_data(with_value(np.nan)),
     ValueError, r"x holds NaN values but the gaussian_learned likelihood needs finite data"),
    ("DiscretizedLogistic.check_data raw pixels",
     lambda: DiscretizedLogistic().check_data(RAW_PIXELS), ValueError,
     r"x has values in \[0, 255\] but the discretized_logistic likelihood needs x in \[0, 1\]: "
     r"raw 0-255 pixels\? divide by 255"),
    ("DiscretizedLogistic.check_data 1.5", lambda: DiscretizedLogistic().check_data(with_value(1.5)),
     ValueError, r"x has values in \[0, 1.5\] .*rescale 8-bit pixels k to k/255"),
    ("loss discretized_logistic x NaN",
     lambda: vae(likelihood="discretized_logistic").loss_and_grads(with_value(np.nan)), ValueError,
     r"x holds NaN values but the discretized_logistic likelihood needs finite data"),
]


@pytest.mark.parametrize("call,error,message", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_gets_one_clear_sentence(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    text = str(info.value)
    assert isinstance(info.value, InvalidInput), "minivae's own error type, for scripts to catch"
    assert "\n" not in text and text.endswith("."), f"not one sentence: {text!r}"


def test_the_error_types_are_value_and_type_errors():
    assert issubclass(InvalidInput, ValueError)
    assert issubclass(InvalidInputType, InvalidInput) and issubclass(InvalidInputType, TypeError)


@pytest.mark.parametrize("likelihood,x", [
    ("bernoulli", X), ("bernoulli", X * 0.5 + 0.25),           # binary and grey-level pixels
    ("gaussian", RAW_PIXELS.astype(float)), ("gaussian_learned", with_value(-3.0)),
    ("discretized_logistic", X), ("discretized_logistic", (X * 200 + 20) / 255)])
def test_good_data_passes(likelihood, x):
    model = vae(likelihood=likelihood)
    assert model.likelihood.check_data(x) is None
    loss, grads, _ = model.loss_and_grads(x, "iwae", 2)
    assert np.isfinite(float(loss)) and set(grads) == set(model.params)
    assert np.isfinite(log_likelihood(model, x, 3)).all()


@pytest.mark.parametrize("x", [with_value(np.nan), RAW_PIXELS], ids=["nan", "raw-pixels"])
def test_check_data_false_skips_the_check(x, monkeypatch):
    model = vae()
    for call in (lambda: model.loss_and_grads(x, check_data=False),
                 lambda: model.forward(x, check_data=False),
                 lambda: model.bound(x, check_data=False),
                 lambda: model.log_weights(x, model.draw_eps(2, 3), check_data=False)):
        call()                                           # computed, not refused: the caller checked
    calls = []
    monkeypatch.setattr(model.likelihood, "check_data", lambda a: calls.append(a.shape))
    model.loss_and_grads(x, "iwae", 3, check_data=False)
    assert calls == []


def test_the_data_check_runs_once_per_call(monkeypatch):
    model = vae()
    calls = []
    real = model.likelihood.check_data
    monkeypatch.setattr(model.likelihood, "check_data", lambda a: calls.append(a.shape) or real(a))
    model.loss_and_grads(X, "iwae", 3)
    assert calls == [(3, 4)]
    calls.clear()
    log_likelihood(model, np.concatenate([X] * 4), 50, max_rows=6)   # many batches and chunks
    assert calls == [(12, 4)]


def test_good_arguments_are_accepted_in_their_numpy_and_boundary_forms():
    model = vae(x_dim=np.int64(4), latent_dim=2, encoder_hidden=[3, np.int32(2)],
                decoder_hidden=(), seed=0, dtype=np.float64)
    assert model.config["encoder_hidden"] == [3, 2] and model.config["decoder_hidden"] == []
    model.loss_and_grads(X, "iwae", np.int64(2), beta=0)          # beta = 0: reconstruction only
    assert model.sample(np.int64(1)).shape == (1, 4)
    Adam(lr=1, beta1=0.0, beta2=0.0)                              # [0, 1) includes 0
    SGD(lr=np.float32(0.1), momentum=0.0)
