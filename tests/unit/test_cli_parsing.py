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


@pytest.mark.parametrize("argv", [["server", "start", "--port", "70000"], ["s3", "serve", "--port", "-1"],
                                  ["dashboard", "--port", "0"], ["dashboard", "--port", "http"]])
def test_a_port_outside_1_to_65535_is_refused_by_the_parser(argv: list[str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is not a port: use a whole number from 1 to 65535" in err and "Traceback" not in err


def test_a_port_in_range_is_parsed(parser) -> None:
    assert parser.parse_args(["dashboard", "--port", "5078"]).port == 5078
    assert parser.parse_args(["s3", "serve", "--port", "65535"]).port == 65535


@pytest.mark.parametrize("workers", ["0", "-2", "1000", "two"])
def test_a_dask_cluster_size_outside_1_to_256_is_refused(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "c.json", "--grid", "g.json", "--runner", "dask", "--workers", workers])
    assert exit_info.value.code == 2
    assert "is not a number of workers: use 1 to 256" in capsys.readouterr().err
