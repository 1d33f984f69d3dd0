"""`ddpm --help`: plain text whose every usage line its command's parser accepts."""

import re

import pytest

from ddpm.cli.main import COMMANDS, USAGE, main


def test_the_help_is_plain_text_listing_every_command_once(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == USAGE and "``" not in out and "`" not in out
    assert [line.split()[1] for line in USAGE.splitlines() if line.startswith("ddpm ")] == list(COMMANDS)


def test_every_option_the_help_shows_for_compare_its_parser_accepts(capsys):
    line = next(line for line in USAGE.splitlines() if line.startswith("ddpm compare"))
    with pytest.raises(SystemExit) as done:
        main(["compare", "--help"])
    assert done.value.code == 0
    parser_help = capsys.readouterr().out
    for option in re.findall(r"\[(-[-\w]+)\]", line):
        assert re.search(rf"(^|[ ,]){re.escape(option)}\b", parser_help, re.M), option


def test_a_mistyped_command_is_one_error_line_with_the_nearest_command(capsys):
    assert main(["comapre"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: ddpm: no command 'comapre'; did you mean 'compare'?"
