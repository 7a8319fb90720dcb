"""Training: schedules, the loss going down on real MNIST, exact resume, non-finite losses."""
import numpy as np
import pytest

from minivae import VAE
from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.train import (IWAE_PASSES, NonFiniteLoss, TrainConfig, config_dict, learning_rate,
                           train)
from tests.realdata import mnist


def test_constant_and_exp_schedules():
    assert learning_rate(TrainConfig(lr=3e-3), 7) == 3e-3
    cfg = TrainConfig(epochs=5, lr=1e-3, lr_end=1e-5, schedule="exp")
    lrs = [learning_rate(cfg, e) for e in range(5)]
    np.testing.assert_allclose(lrs, [1e-3, 1e-3 / np.sqrt(10), 1e-4, 1e-4 / np.sqrt(10), 1e-5])


def test_iwae_schedule_is_3_to_the_i_passes_at_1e_minus_3_times_10_to_minus_i_over_7():
    cfg = TrainConfig(epochs=IWAE_PASSES, lr=1e-3, schedule="iwae")
    lrs = np.array([learning_rate(cfg, e) for e in range(IWAE_PASSES)])
    for i in range(8):
        assert np.sum(np.isclose(lrs, 1e-3 * 10 ** (-i / 7))) == 3 ** i
    assert np.all(np.diff(lrs) <= 0)
    # shortened to 328 epochs, each stage keeps ~ its share 3^i / 3280 of the run
    short = TrainConfig(epochs=328, lr=1e-3, schedule="iwae")
    counts = [sum(np.isclose(learning_rate(short, e), 1e-3 * 10 ** (-i / 7)) for e in range(328))
              for i in range(8)]
    assert sum(counts) == 328 and counts[-1] == round(328 * 3 ** 7 / IWAE_PASSES)


def test_time_budget_drives_the_schedule_and_stops_training():
    cfg = TrainConfig(epochs=100, lr=1e-3, schedule="iwae", minutes=1.0)
    assert learning_rate(cfg, 50, progress=0.0) == 1e-3                     # the epoch is ignored
    assert np.isclose(learning_rate(cfg, 0, progress=0.99), 1e-3 * 10 ** (-1))
    ds = mnist()
    model, cfg = small_run(ds, epochs=50, minutes=1e-9)          # 60 ns: any epoch overruns it
    lines = []
    history = train(model, ds.x_train[:200], ds.x_test[:50], cfg, log=lines.append)
    assert len(history) == 1 and "time budget of 1e-09 minutes used after 1 epochs" in lines[-1]


def test_bad_training_configs_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown schedule 'cosine'"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TrainConfig(batch_size=0)


def small_run(ds, **kw):
    model = VAE(latent_dim=8, encoder_hidden=(64,), decoder_hidden=(64,), seed=1)
    model.init_output_bias(ds.x_train[:2000].mean(0))
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 50, "seed": 4, **kw})
    return model, cfg


def test_training_on_real_mnist_lowers_the_test_loss():
    ds = mnist()
    model, cfg = small_run(ds, objective="iwae", k=3)
    history = train(model, ds.x_train[:2000], ds.x_test[:500], cfg, log=lambda s: None)
    nelbo = [r["test_nelbo"] for r in history]
    assert len(history) == 3 and nelbo[-1] < nelbo[0] - 5, nelbo
    assert all(r["train_loss"] > 0 and r["seconds"] > 0 for r in history)


def test_resumed_run_ends_with_exactly_the_same_parameters(tmp_path):
    ds = mnist()
    x_train, x_test = ds.x_train[:1000], ds.x_test[:200]
    full, cfg = small_run(ds, schedule="exp")
    train(full, x_train, x_test, cfg, log=lambda s: None)

    first, _ = small_run(ds, schedule="exp")
    ckpt = tmp_path / "ckpt.npz"

    def save(epoch, history, opt):
        save_checkpoint(ckpt, first, opt, {"config": config_dict(cfg), "epoch": epoch + 1,
                                           "history": history})
    train(first, x_train, x_test, TrainConfig(**{**config_dict(cfg), "epochs": 3}),
          on_epoch_end=lambda e, h, o: save(e, h, o) if e < 1 else None, log=lambda s: None)
    resumed, opt, state = load_checkpoint(ckpt)               # after epoch 1 of 3
    assert state["epoch"] == 1 and opt.t == 20
    history = train(resumed, x_train, x_test, TrainConfig(**state["config"]), opt,
                    start_epoch=state["epoch"], history=state["history"], log=lambda s: None)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for name, p in full.params.items():
        np.testing.assert_array_equal(resumed.params[name], p, err_msg=name)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    ds = mnist()
    model, cfg = small_run(ds)
    ckpt = tmp_path / "ckpt.npz"
    saved = []

    def save(epoch, history, opt):
        save_checkpoint(ckpt, model, opt, {"epoch": epoch + 1})
        saved.append(epoch)
    real = model.loss_and_grads

    def poisoned(x, *args, **kwargs):                     # epoch 2 goes NaN
        loss, grads, stats = real(x, *args, **kwargs)
        if len(saved) == 1:
            loss = loss * np.nan
        return loss, grads, stats
    model.loss_and_grads = poisoned
    with pytest.raises(NonFiniteLoss, match="epoch 2.*last good checkpoint was kept"):
        train(model, ds.x_train[:500], ds.x_test[:100], cfg, on_epoch_end=save, log=lambda s: None)
    assert saved == [0]
    kept, _, state = load_checkpoint(ckpt)
    assert state["epoch"] == 1


@pytest.mark.parametrize("estimator,m", [("dreg", 1), ("stl", 1), ("miwae", 2), ("piwae", 2),
                                         ("ciwae", 1)])
def test_training_with_an_estimator_after_iwae_lowers_the_test_loss_and_records_it(estimator, m):
    ds = mnist()
    model, cfg = small_run(ds, objective="iwae", k=3, estimator=estimator, m=m, epochs=2)
    lines = []
    history = train(model, ds.x_train[:1000], ds.x_test[:300], cfg, log=lines.append)
    assert history[-1]["test_nelbo"] < history[0]["test_nelbo"] + 5
    assert f"({estimator} gradient)" in lines[0]
    assert config_dict(cfg)["estimator"] == estimator and config_dict(cfg)["m"] == m


def test_estimator_settings_are_checked_where_they_enter():
    with pytest.raises(ValueError, match="Unknown estimator 'vr'"):
        TrainConfig(objective="iwae", estimator="vr")
    with pytest.raises(ValueError, match="use objective 'iwae' and beta 1"):
        TrainConfig(objective="elbo", estimator="stl")
    with pytest.raises(ValueError, match="use objective 'iwae' and beta 1"):
        TrainConfig(objective="iwae", beta=0.5, estimator="dreg")
    with pytest.raises(ValueError, match="m=2 groups need estimator 'miwae' or 'piwae'"):
        TrainConfig(objective="iwae", estimator="dreg", m=2)
    with pytest.raises(ValueError, match=r"ciwae_beta must be in \[0, 1\]"):
        TrainConfig(objective="iwae", estimator="ciwae", ciwae_beta=2.0)
