"""The command line: `resnetkit models` and `resnetkit summary`."""

import subprocess
import sys

import resnetkit as rk
from resnetkit.cli import main


def test_models_lists_every_name_with_its_params(capsys):
    assert main(["models", "resnet*"]) == 0
    out = capsys.readouterr().out
    for name in rk.list_models("resnet*"):
        assert name in out
    assert "25,557,032" in out and "4.09G" in out


def test_summary_prints_the_table(capsys):
    assert main(["summary", "resnet50", "--input-size", "3", "224", "224"]) == 0
    out = capsys.readouterr().out
    assert "layer4.2 (Bottleneck)" in out
    assert "[1, 2048, 7, 7]" in out
    assert "Total params: 25,557,032" in out


def test_unknown_model_is_one_line_and_exit_code_2(capsys):
    assert main(["summary", "resnet05"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean" in err and "Traceback" not in err


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "resnetkit", "models", "plain2*"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "plain20" in result.stdout
