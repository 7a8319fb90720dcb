"""minivae.cli: what the example scripts share."""
from pathlib import Path

from minivae.cli import write_figures


def test_write_figures_prints_what_was_written_or_why_nothing_was(capsys):
    assert write_figures(lambda a, b: [Path(a) / "x.png", f"{b}/y.png"], "out", "out") == \
        [Path("out/x.png"), "out/y.png"]
    assert capsys.readouterr().out == "figures: x.png, y.png\n"

    def no_matplotlib():
        raise ImportError("No module named 'matplotlib'")
    assert write_figures(no_matplotlib) == []
    assert "figures skipped: matplotlib is not installed" in capsys.readouterr().out
