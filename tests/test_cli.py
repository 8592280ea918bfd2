from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from wafmw.cli import main

GOOD = """\
wafmw: 1
filters:
  - id: 7
    msg: union select
    targets: [args]
    transforms: [url_decode, lowercase]
    regex: 'union\\s+select'
    cases:
      match: [{path: "/?q=1%20UNION%20SELECT%202"}]
      no_match: [{path: "/?q=union%20station"}]
"""


def test_validate_ok(write_rules: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_rules(GOOD)
    assert main(["validate", str(path)]) == 0
    assert "ok (1 filters" in capsys.readouterr().out


def test_validate_reports_every_error(
    write_rules: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = GOOD.replace("    msg: union select\n", "    msg: union select\n    colour: red\n")
    bad = bad.replace("'union\\s+select'", "'(union'")
    path = write_rules(bad)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:5: rule 7: field 'colour': unknown key" in err


def test_validate_invalid_pattern_and_duplicate(
    write_rules: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_rules(GOOD.replace("'union\\s+select'", "'(union'"))
    assert main(["validate", str(path)]) == 1
    assert "rule 7: field 'regex': invalid pattern" in capsys.readouterr().err
    rule = GOOD.split("filters:\n", 1)[1]
    path = write_rules(GOOD + rule, "dup.yaml")
    assert main(["validate", str(path)]) == 1
    assert "rule 7: field 'id': duplicate rule id" in capsys.readouterr().err


def test_test_command_passes_and_fails(
    write_rules: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", str(write_rules(GOOD))]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    wrong = GOOD.replace(
        'no_match: [{path: "/?q=union%20station"}]', 'no_match: [{path: "/?q=union%20%20select"}]'
    )
    assert main(["test", str(write_rules(wrong, "wrong.yaml"))]) == 1
    err = capsys.readouterr().err
    assert "rule 7 must not match: GET /?q=union%20%20select" in err


def test_schema_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert '"title": "wafmw rule file"' in capsys.readouterr().out


def test_console_script_demo_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wafmw.cli", "demo"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "BLOCKED  403" in out.stdout and "allowed  200" in out.stdout
