"""Run by tests/test_distributed.py as ``mpiexec -n 2 python [-m mpi4py] faults.py MODE OUT``:
two ranks train tests/distributed_scripts/cases.py's tiny model, rank 0 saving a checkpoint to
OUT/ckpt.npz after every epoch, and rank 1 fails at its 10th step (in epoch 2, while rank 0
waits for it in the gradient Allreduce):

    caught     rank 1 raises; the error is printed and every rank ended as a command does it
               (minivae.distributed.abort_on_error)
    uncaught   rank 1 raises and nobody catches it (``python -m mpi4py`` must end the job)
    killed     rank 1 is killed (SIGKILL): no Python left to clean up
"""
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from minivae import distributed  # noqa: E402
from minivae.checkpoint import save_checkpoint  # noqa: E402
from minivae.train import config_dict, train  # noqa: E402
from tests.distributed_scripts import cases  # noqa: E402

FAIL_AT_STEP = 10
MESSAGE = "rank 1 failed on purpose at step 10"


def main(mode: str, out: Path) -> None:
    size, rank = distributed.world()
    model, cfg = cases.make_model(), cases.train_config(epochs=4)
    steps = []
    loss_and_grads = model.loss_and_grads

    def failing(*args, **kwargs):
        steps.append(1)
        if rank == 1 and len(steps) == FAIL_AT_STEP:
            if mode == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(MESSAGE)
        return loss_and_grads(*args, **kwargs)
    model.loss_and_grads = failing

    def save(epoch, history, opt):
        save_checkpoint(out / "ckpt.npz", model, opt, {"config": config_dict(cfg),
                                                       "epoch": epoch + 1, "history": history})
    train(model, *cases.train_data(), cfg, on_epoch_end=save)


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "caught":
        try:
            main(mode, out)
        except Exception as err:                # what minivae.commands.run does with an error
            print(f"error: {distributed.rank_label()}{err}", file=sys.stderr)
            distributed.abort_on_error(1)
            sys.exit(1)
    else:
        main(mode, out)
