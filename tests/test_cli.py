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


def one_line_error(capsys, message):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_summary_of_an_input_smaller_than_the_network_is_one_line(capsys):
    assert main(["summary", "resnet50", "--input-size", "3", "8", "8"]) == 2
    one_line_error(capsys, "smaller than this network accepts")
    assert main(["summary", "resnet20", "--input-size", "3", "-1", "32"]) == 2
    one_line_error(capsys, "--input-size")
    assert main(["summary", "resnet20", "--depth", "0"]) == 2
    one_line_error(capsys, "--depth")


def test_an_output_folder_that_is_a_file_is_one_line_and_the_file_is_kept(tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    args = ["train", "--data", "synthetic", "--model", "resnet8", "--subset", "32", "-q"]
    assert main([*args, "--epochs", "1", "--out-dir", str(afile), "--name", "r"]) == 2
    one_line_error(capsys, "is a file, not a folder")
    assert afile.read_text() == "keep"


def test_oserror_and_out_of_memory_at_the_cli_boundary_are_one_line(monkeypatch, capsys):
    from resnetkit.cli import commands as cli

    def full_disk(args):
        raise OSError(28, "No space left on device", "/data/out/model.onnx")

    def no_memory(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                           "memory: you tried to allocate 1099511627776 bytes.")  # fmt: skip

    monkeypatch.setattr(cli, "cmd_summary", full_disk)
    monkeypatch.setattr(cli, "cmd_models", no_memory)
    parser_funcs = {"summary": full_disk, "models": no_memory}
    real = cli.build_parser

    def build_parser():
        parser = real()
        for action in parser._subparsers._group_actions:
            for name, sub in action.choices.items():
                if name in parser_funcs:
                    sub.set_defaults(func=parser_funcs[name])
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    assert main(["summary", "resnet20"]) == 2
    one_line_error(capsys, "/data/out/model.onnx: No space left on device")
    assert main(["models"]) == 2
    one_line_error(capsys, "out of memory")


def test_a_cache_folder_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("the test must not download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    afile = tmp_path / "cache"
    afile.write_text("not a folder")
    monkeypatch.setenv("RESNETKIT_CACHE", str(afile))
    args = ["train", "--data", "mnist", "--download", "--model", "resnet8", "-q"]
    assert main([*args, "--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(afile) in errors[0] and "Not a directory" in errors[0]
    assert "Traceback" not in err and afile.read_text() == "not a folder"
