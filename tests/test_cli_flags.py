"""The command line's flags: generated from the config fields, and every one the README shows
is accepted by its command."""

import argparse
import re
from pathlib import Path

import pytest

from resnetkit.cli import build_parser, train_flag_changes
from resnetkit.config import TrainConfig, config_options

README = Path(__file__).resolve().parents[1] / "README.md"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def readme_commands() -> list[tuple[str, ...]]:
    """Each `resnetkit ...` invocation in the README's code blocks and inline code, as tokens
    (backslash continuations joined, comments dropped, also when launched by torchrun)."""
    text = README.read_text()
    snippets = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        snippets += block.replace("\\\n", " ").splitlines()
    snippets += re.findall(r"`(resnetkit [^`]+)`", text)
    commands = []
    for line in snippets:
        line = re.sub(r"\s+#.*", "", line).strip().removeprefix("$ ")
        if re.match(r"(resnetkit|python -m resnetkit|torchrun .*-m resnetkit) ", line):
            tokens = line.replace("[", " ").replace("]", " ").split()
            commands.append(tuple(tokens[tokens.index("resnetkit") + 1 :]))
    return commands


def test_the_readme_shows_commands_of_every_kind():
    first = {tokens[0] for tokens in readme_commands() if tokens}
    assert {"train", "eval", "predict", "export", "explain", "experiment", "inspect"} <= first


@pytest.mark.parametrize("tokens", readme_commands(), ids=" ".join)
def test_every_flag_the_readme_shows_is_accepted_by_its_command(tokens):
    parser = build_parser()
    path = []
    for token in tokens:  # walk down to the (sub)command the flags belong to
        choices = subcommands(parser)
        if token not in choices:
            break
        parser = choices[token]
        path.append(token)
    assert path, f"no such command: resnetkit {' '.join(tokens)}"
    flags = {t.split("=")[0] for t in tokens if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", t)}
    unknown = flags - option_strings(parser)
    assert not unknown, f"resnetkit {' '.join(path)} does not accept {sorted(unknown)}"


def test_every_config_field_has_a_train_flag_with_help_and_its_default():
    train = subcommands(build_parser())["train"]
    by_dest = {a.dest: a for a in train._actions}
    for _, spec in config_options():
        action = by_dest.get(spec.name)
        assert action is not None, f"no flag for config field {spec.name}"
        assert spec.flag in action.option_strings
        assert action.help and "(default: " in action.help, spec.name
    assert "(default: 0.1)" in by_dest["lr"].help
    assert "(default: 0.1)" in by_dest["val_fraction"].help


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--sync-bn"], {"sync_bn": True}),
        (["--no-data-cache"], {"data_cache": False}),
        (["--in-memory", "false"], {"in_memory": False}),
        (["--pretrained", "imagenet"], {"pretrained": "imagenet"}),
        (["--milestones", "82", "123"], {"milestones": [82.0, 123.0]}),
        (["--padding-mode", "zeros", "--no-flip"], {"padding_mode": "zeros", "flip": False}),
        (["--eval-every", "2", "--gamma", "0.2"], {"eval_every": 2, "gamma": 0.2}),
        (["--val-fraction", "0"], {"val_fraction": 0.0}),
    ],
)
def test_flags_set_exactly_their_config_fields(argv, expected):
    args = build_parser().parse_args(["train", *argv])
    changes = train_flag_changes(args)
    assert changes == expected
    TrainConfig().replace(**changes)  # and the config accepts them


def test_train_help_groups_the_flags_by_section(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for title in ("dataset:", "augment:", "optim:", "runtime:", "eval:", "run:"):
        assert title in out
