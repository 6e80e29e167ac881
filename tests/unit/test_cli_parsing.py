"""The ``backlake`` parser: values that start with a minus sign reach the commands' checks."""

from __future__ import annotations

import pytest

from flows.cli.entry import attach_negative_values, build_parser, main


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_a_value_that_starts_with_a_minus_sign_is_the_options_value(parser) -> None:
    argv = ["alpha", "evaluate", "momentum_12_1", "--horizons", "-5,1"]
    assert attach_negative_values(parser, argv)[-1] == "--horizons=-5,1"
    assert parser.parse_args(attach_negative_values(parser, argv)).horizons == "-5,1"
    # plain negative numbers and the other spellings are left as argparse reads them
    for argv in (["alpha", "evaluate", "m", "--horizons", "-5"], ["alpha", "evaluate", "m", "--horizons=-5,1"],
                 ["alpha", "evaluate", "m", "--horizons", "-.5"]):
        assert parser.parse_args(attach_negative_values(parser, argv)).horizons == argv[-1].split("=")[-1]


def test_flags_options_and_the_separator_are_untouched(parser) -> None:
    # a flag takes no value: what follows it is not attached to it
    assert attach_negative_values(parser, ["--debug", "-5,1"]) == ["--debug", "-5,1"]
    # after `--` every token is positional
    argv = ["sql", "--", "--format", "-1,2"]
    assert attach_negative_values(parser, argv) == argv
    # an option's own name, or a value that is not negative, stays as it is
    argv = ["alpha", "evaluate", "m", "--horizons", "1,5", "--quantiles", "5"]
    assert attach_negative_values(parser, argv) == argv


def test_a_negative_horizon_is_answered_by_the_horizons_check(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(tmp_path))
    code = main(["alpha", "evaluate", "momentum_12_1", "--horizons", "-5,1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "horizon -5 is not a whole number of trading days > 0" in err
    assert "expected one argument" not in err
