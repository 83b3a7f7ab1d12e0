"""Differential test: helmops' Go-duration parser against Go's own ``time.ParseDuration``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helmops.api import is_polling_interval, parse_duration_ns

pytestmark = pytest.mark.integration

CASES = [
    "0",
    "-0",
    "+0",
    "0s",
    "1s",
    "1.5s",
    "1.s",
    ".5s",
    "300ms",
    "1h30m",
    "1h1m1s",
    "2h45m30.5s",
    "-1.5h",
    "+5m",
    "1000us",
    "1000\u00b5s",
    "1000\u03bcs",
    "1ns",
    "0.5ns",
    "1.9999999999ns",
    "1m1m",
    "2562047h",
    "2562047h47m16.854775807s",
    "2562047h47m16.854775808s",
    "-2562047h47m16.854775808s",
    "-2562047h47m16.854775809s",
    "2562048h",
    "9223372036854775807ns",
    "9223372036854775808ns",
    "99999999999999999999h",
    "0.000000001s",
    "0.0000000001s",
    "1.0000000001s",
    "3.14159265358979h",
    "",
    "-",
    "1",
    "s",
    ".s",
    "1d",
    "1w",
    "1 s",
    " 1s",
    "1s ",
    "1.5.5s",
    "1sm",
    "h1",
    "1e3s",
    "1h-1m",
    "--1s",
    "1S",
    "1H",
    "5 m",
    "\u00b5s",
    "00001m",
    "1.000000000000000000000000001h",
]

GO_PROGRAM = """package main

import (
\t"bufio"
\t"fmt"
\t"os"
\t"time"
)

func main() {
\tin := bufio.NewScanner(os.Stdin)
\tfor in.Scan() {
\t\td, err := time.ParseDuration(in.Text())
\t\tif err != nil {
\t\t\tfmt.Println("error")
\t\t} else {
\t\t\tfmt.Println(int64(d))
\t\t}
\t}
}
"""


@pytest.fixture(scope="module")
def go_parse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain on PATH")
    work = tmp_path_factory.mktemp("goduration")
    (work / "main.go").write_text(GO_PROGRAM)
    binary = work / "parse"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GO111MODULE": "off", "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-o", str(binary), "main.go"], cwd=work, env=env, check=True, timeout=300)
    return binary


def test_parse_duration_matches_go(go_parse: Path) -> None:
    out = subprocess.run(
        [str(go_parse)], input="".join(f"{case}\n" for case in CASES), capture_output=True, text=True, check=True
    )
    answers = out.stdout.splitlines()
    assert len(answers) == len(CASES)
    disagree = []
    for case, answer in zip(CASES, answers, strict=True):
        try:
            ours = str(parse_duration_ns(case))
        except ValueError:
            ours = "error"
        if ours != answer:
            disagree.append((case, ours, answer))
    assert disagree == []


def test_polling_interval_accepts_only_unsigned_go_durations_up_to_the_limit(go_parse: Path) -> None:
    out = subprocess.run(
        [str(go_parse)], input="".join(f"{case}\n" for case in CASES), capture_output=True, text=True, check=True
    )
    limit = 2562047 * 3600 * 10**9
    for case, answer in zip(CASES, out.stdout.splitlines(), strict=True):
        go_ok = answer != "error" and 0 <= int(answer) <= limit and not case.startswith(("-", "+"))
        assert is_polling_interval(case) == (go_ok and len(case) <= 32), case
