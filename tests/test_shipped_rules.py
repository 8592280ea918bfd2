"""The shipped ruleset: every rule carries cases, the cases pass, and the wheel carries it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.asgi import EchoApp, call, http_scope, post_scope
from wafmw import WAFMiddleware, default_rules_path, load_rules
from wafmw.casetest import run_cases

ROOT = Path(__file__).resolve().parent.parent


def test_default_ruleset_loads_and_every_rule_has_cases() -> None:
    ruleset = load_rules(None, paranoia=4)
    assert len(ruleset.filters) > 0
    missing = [
        f"{r.file}: rule {r.id}"
        for r in ruleset.filters
        if not r.match_cases or not r.no_match_cases
    ]
    assert not missing, "rules without match/no_match cases:\n" + "\n".join(missing)


def test_every_shipped_rule_case_passes() -> None:
    report = run_cases([default_rules_path()])
    assert report.cases >= 2 * report.rules
    assert not report.failures, "\n".join(str(f) for f in report.failures)


def test_every_shipped_file_is_reached_from_the_default_ruleset() -> None:
    loaded = {Path(f).name for f in load_rules(None).files}
    shipped = {p.name for p in (ROOT / "rules").glob("*.yaml")}
    assert shipped <= loaded


@pytest.mark.anyio
async def test_default_rules_block_sqli_and_pass_lookalikes() -> None:
    app = EchoApp()
    waf = WAFMiddleware(app)
    attack = await call(waf, http_scope("/?id=1%20UNION%20SELECT%20password%20FROM%20users"))
    assert attack.status == 403
    benign = await call(waf, http_scope("/?q=union%20station"))
    assert benign.status == 200
    body = b'{"comment": "I\'ll select the union station stop, O\'Brien said."}'
    scope = post_scope("/c", body, "application/json")
    result = await call(waf, scope, [body[:10], body[10:]])
    assert result.status == 200 and app.received == body


def test_wheel_carries_the_shipped_rules(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = tmp_path.glob("wafmw-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "wafmw/rules/wafmw.yaml" in names
    assert "wafmw/py.typed" in names and "wafmw/rulefile.schema.json" in names
    shipped = {
        f"wafmw/rules/{p.relative_to(ROOT / 'rules')}"
        for p in (ROOT / "rules").rglob("*")
        if p.is_file()
    }
    assert shipped <= names
