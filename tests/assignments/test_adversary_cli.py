"""``byzantium adversary``: called through add_adversary_parser / run_adversary directly."""

from __future__ import annotations

import argparse
import csv

import pytest

from byzantium.assignments.cli import add_adversary_parser, parse_q, run_adversary


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="byzantium")
    sub = p.add_subparsers(dest="command", required=True)
    sp = add_adversary_parser(sub)
    assert isinstance(sp, argparse.ArgumentParser)
    return p.parse_args(["adversary", *argv])


def table(out: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln.split() for ln in out.splitlines() if ln and not ln.startswith("#")]
    return lines[0], lines[1:]


def test_default_is_the_canonical_k15_table(capsys, tmp_path) -> None:
    path = tmp_path / "k15.csv"
    args = parse(["--csv", str(path)])
    assert args.func is run_adversary
    assert run_adversary(args) == 0
    out = capsys.readouterr().out
    header, rows = table(out)
    assert header[:4] == ["q", "mols_c_max", "mols_eps", "mols_gamma"]
    assert {"rama1_c_max", "detox_c_max", "detox_eps", "baseline_eps", "random_eps"} <= set(header)
    col = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    assert col["q"] == [str(q) for q in range(1, 8)]
    assert col["mols_c_max"] == ["0", "1", "3", "5", "8", "12", "14"]
    assert col["rama1_c_max"] == col["mols_c_max"]
    assert col["detox_c_max"] == ["0", "1", "1", "2", "2", "3", "3"]
    assert col["detox_eps"][2] == "0.2" and col["mols_eps"][2] == "0.12"
    assert col["baseline_c_max"] == col["q"]
    assert col["random_eps"][1] == "0.0286"
    assert float(col["mols_gamma"][2]) == pytest.approx(30 / 7, abs=0.01)
    with open(path) as fh:
        rows_csv = list(csv.reader(fh))
    assert rows_csv[0] == header and rows_csv[1:] == rows


def test_explicit_schemes(capsys) -> None:
    run_adversary(parse(["--scheme", "ramanujan", "--m", "3", "--s", "3", "--q", "1-4"]))
    header, rows = table(capsys.readouterr().out)
    col = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    assert col["rama2_c_max"] == ["0", "1", "3", "5"]
    assert col["detox_c_max"] == ["0", "1", "1", "2"]  # K=9, r=3: ties ByzShield at q=3
    run_adversary(parse(["--scheme", "mols", "--l", "7", "--r", "5", "--q", "3,10"]))
    header, rows = table(capsys.readouterr().out)
    col = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    assert col["mols_c_max"] == ["1", "11"] and col["detox_c_max"] == ["1", "3"]
    run_adversary(parse(["--K", "25", "--r", "5", "--q", "3", "--method", "milp"]))
    header, rows = table(capsys.readouterr().out)
    assert "rama2_c_max" in header and "mols_c_max" not in header  # MOLS needs r <= l-1
    run_adversary(parse(["--scheme", "baseline", "--K", "6", "--q", "2"]))
    header, rows = table(capsys.readouterr().out)
    assert header == ["q", "baseline_c_max", "baseline_eps"] and rows == [["2", "2", "0.3333"]]


def test_parse_q() -> None:
    assert parse_q("1-3,5, 7", 10) == [1, 2, 3, 5, 7]
    assert parse_q("4", 4) == [4]
    with pytest.raises(ValueError, match=r"0 <= q <= K=15, got \[16\]"):
        parse_q("14-16", 15)
    with pytest.raises(ValueError, match="--q must look like"):
        parse_q("a-b", 15)


def test_cli_errors() -> None:
    with pytest.raises(ValueError, match="--scheme mols needs --l"):
        run_adversary(parse(["--scheme", "mols"]))
    with pytest.raises(ValueError, match="mols: l must be a prime power, got l=6"):
        run_adversary(parse(["--scheme", "mols", "--l", "6", "--r", "2"]))
    with pytest.raises(ValueError, match="needs --m and --s"):
        run_adversary(parse(["--scheme", "ramanujan", "--m", "3"]))
    with pytest.raises(ValueError, match="repetition needs r | K"):
        run_adversary(parse(["--scheme", "repetition", "--K", "10", "--r", "3"]))
    with pytest.raises(SystemExit):
        parse(["--scheme", "nope"])
