"""The library never switches the caller's matplotlib backend nor touches pyplot's global
figures, so notebooks keep their inline plots."""

import subprocess
import sys

SCRIPT = """
import sys
import matplotlib
matplotlib.use("svg")
import resnetkit, resnetkit.experiments, resnetkit.report, resnetkit.explain, resnetkit.cli
from pathlib import Path
import torch
out = Path(sys.argv[1])
history = [{"epoch": 1, "step": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0,
            "test_acc": 0.5, "test_top5": 1.0, "images_per_s": 1.0}]
resnetkit.report.plot_curves(history, out / "c.png")
resnetkit.report.plot_confusion(torch.eye(3, dtype=torch.int64), ("a", "b", "c"), out / "m.png")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert (out / "c.png").stat().st_size > 1000 and (out / "m.png").stat().st_size > 1000
"""


def test_importing_and_plotting_leave_the_backend_and_pyplot_alone(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_importing_resnetkit_does_not_import_matplotlib_until_something_is_drawn():
    script = (
        "import sys, resnetkit, resnetkit.experiments, resnetkit.explain\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "from resnetkit.explain.figure import new_figure\n"
        "new_figure(figsize=(1, 1))\n"
        "assert 'matplotlib.figure' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
