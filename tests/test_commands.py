"""minivae.commands: the flags, how a run ends (one line and an exit code) and the two commands'
entry points (their behaviour on a checkpoint is tested in test_evaluate.py and test_analysis.py;
what the scripts share besides flags, minivae.runs, in test_runs.py)."""
import os
import shutil
import subprocess
import sys

import pytest

from minivae.checkpoint import CheckpointError
from minivae.commands import run
from minivae.train import NonFiniteLoss
from tests.realdata import REPO


def test_run_turns_a_known_error_into_one_line_and_an_exit_code(capsys):
    def fails_with(err):
        def main(argv):
            raise err
        return main
    assert run(lambda argv: 0) == 0
    assert run(fails_with(CheckpointError("No checkpoint at x.npz."))) == 2
    assert capsys.readouterr().err == "error: No checkpoint at x.npz.\n"
    assert run(fails_with(NonFiniteLoss("The training loss became nan."))) == 3
    assert capsys.readouterr().err == "error: The training loss became nan.\n"
    with pytest.raises(ValueError):                                # anything else is a bug: raised
        run(fails_with(ValueError("bug")))


def test_library_modules_import_no_command_line_code():
    code = ("import sys\n"
            "import minivae.evaluate, minivae.analysis, minivae.train, minivae.plots\n"
            "assert 'argparse' not in sys.modules and 'minivae.commands' not in sys.modules\n"
            "assert 'minivae.runs' not in sys.modules\n")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("command", ["evaluate", "analysis"])
def test_the_commands_run_as_modules_and_as_console_scripts(command):
    module = subprocess.run([sys.executable, "-W", "error", "-m", f"minivae.{command}", "--help"],
                            capture_output=True, text=True, cwd=REPO)
    assert module.returncode == 0 and f"usage: python -m minivae.{command}" in module.stdout
    script = shutil.which(f"minivae-{command}", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip(f"minivae-{command} is not installed (pip install -e .)")
    installed = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert installed.returncode == 0 and installed.stdout == module.stdout
