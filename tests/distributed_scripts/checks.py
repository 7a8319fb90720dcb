"""Run by tests/test_distributed.py as ``mpiexec -n 2 python checks.py OUT``: every rank computes
the distributed gradients, trains, resumes and scores L_k on tests/distributed_scripts/cases.py's
tiny models, and writes what it got to OUT/rank<r>.npz and OUT/rank<r>.json; the test compares
them with one process's numbers."""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402  (the test script may; the package imports it in one place)

from minivae import distributed  # noqa: E402
from minivae.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from minivae.evaluate import log_likelihood  # noqa: E402
from minivae.train import config_dict, train  # noqa: E402
from tests.distributed_scripts import cases  # noqa: E402


def main(out: Path) -> None:
    size, rank = distributed.world()
    arrays, info = {}, {"size": size, "rank": rank}

    # 1. the averaged gradient of every case: each rank its shard, one weighted Allreduce
    for case in cases.GRADIENT_CASES:
        model = cases.make_model(case[1])
        x, eps = cases.gradient_inputs(model, case)
        mine = distributed.shard(x.shape[0], size, rank)
        n = mine.stop - mine.start
        if n:
            _, grads, _ = cases.loss_and_grads(model, case, x[mine], eps[:, mine])
        else:
            grads = {name: np.zeros_like(p) for name, p in model.params.items()}
        for name, g in distributed.allreduce_grads(grads, n / x.shape[0]).items():
            arrays[f"grad/{case[0]}/{name}"] = g

    # 2. three epochs of training, uninterrupted; only rank 0 may log and save
    x_train, x_test = cases.train_data()
    lines, saved = [], []
    model = cases.make_model()
    history = train(model, x_train, x_test, cases.train_config(), log=lines.append,
                    on_epoch_end=lambda e, h, o: saved.append(e))
    arrays.update({f"train/{n}": p for n, p in model.params.items()})
    info.update(history=history, log_lines=len(lines), saved=saved)

    # 3. the same run saved after epoch 1 by rank 0, then resumed by every rank from the file
    ckpt = out / "ckpt.npz"
    first, cfg = cases.make_model(), cases.train_config()

    def save(epoch, history, opt):
        if epoch < 1:
            save_checkpoint(ckpt, first, opt, {"config": config_dict(cfg), "epoch": epoch + 1,
                                               "history": history})
    train(first, x_train, x_test, cfg, on_epoch_end=save, log=lambda s: None)
    MPI.COMM_WORLD.Barrier()                            # rank 0 has written it
    resumed, opt, state = load_checkpoint(ckpt)
    resumed_history = train(resumed, x_train, x_test, cases.train_config(**state["config"]), opt,
                            start_epoch=state["epoch"], history=state["history"],
                            log=lambda s: None)
    arrays.update({f"resumed/{n}": p for n, p in resumed.params.items()})
    info.update(resumed_epochs=[r["epoch"] for r in resumed_history])

    # 4. L_k split over the ranks by blocks
    model = cases.make_model(seed=4)
    x = cases.binary(cases.LL_ROWS, 3)
    arrays["ll"] = log_likelihood(model, x, cases.LL_K, key=cases.LL_KEY,
                                  block_size=cases.LL_BLOCK)
    arrays["ll_default_block"] = log_likelihood(model, x, cases.LL_K, key=cases.LL_KEY)

    np.savez(out / f"rank{rank}.npz", **arrays)
    (out / f"rank{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
