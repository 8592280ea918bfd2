"""Safe rule changes: self-tested atomic swaps, last known good, kill switches, shadow, quarantine.

The outage tests keep a client sending traffic while bad files are loaded, and require zero
failed requests, the last known good ruleset still answering, and the failure in status().
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.asgi import EchoApp, call, http_scope
from wafmw import RuleFileError, WAFMiddleware
from wafmw.killswitch import ENV_GROUPS, ENV_MODE, ENV_RULES, ENV_TAGS, env_clear, env_key

GOOD = """\
wafmw: 1
settings: {on_error: open}
filters:
  - id: 100
    msg: union select
    tags: [attack-sqli]
    targets: [args]
    transforms: [url_decode, lowercase]
    regex: 'union\\s+select'
    cases:
      match: [{path: "/?q=1%20union%20select%202"}]
      no_match: [{path: "/?q=union%20station"}]
  - id: 101
    msg: logged marker
    action: log
    targets: [args]
    contains: marker
    cases:
      match: [{path: "/?q=marker"}]
      no_match: [{path: "/?q=mark"}]
"""
NEW_RULE = """\
  - id: 102
    msg: script tag
    tags: [attack-xss]
    targets: [args]
    transforms: [url_decode, lowercase]
    contains: '<script'
    cases:
      match: [{path: "/?q=%3Cscript%3E"}]
      no_match: [{path: "/?q=script"}]
"""
ATTACK = "/?q=1%20UNION%20SELECT%202"
XSS = "/?q=%3Cscript%3Ealert(1)"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_MODE, ENV_RULES, ENV_TAGS, ENV_GROUPS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rules_file(write_rules: Callable[..., Path]) -> Path:
    return write_rules(GOOD)


def app_with(rules: Path, **options: Any) -> tuple[WAFMiddleware, TestClient]:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/", hello, methods=["GET", "POST"])])
    waf = WAFMiddleware(inner, rules=rules, **options)
    return waf, TestClient(waf)


def replace_file(path: Path, data: bytes | str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    # Make sure the change is visible to the poller even within one mtime tick.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


class Traffic:
    """A client sending benign and attack requests continuously from a thread."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.stop = threading.Event()
        self.sent = 0
        self.failed: list[str] = []
        self.attacks_passed = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                ok = self.client.get("/?q=union+station")
                bad = self.client.get(ATTACK)
            except Exception as exc:  # a failed request is what the tests forbid
                self.failed.append(repr(exc))
                continue
            self.sent += 2
            if ok.status_code != 200:
                self.failed.append(f"benign got {ok.status_code}")
            if bad.status_code == 200:
                self.attacks_passed += 1
            elif bad.status_code != 403:
                self.failed.append(f"attack got {bad.status_code}")

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "wafmw: 1\nlists:\n" + "".join(f"  {x}\n" for x in lines)


BAD_FILES: dict[str, Callable[[str], bytes | str]] = {
    "doubled by duplicated entries": lambda good: good + good.split("filters:\n", 1)[1],
    "oversized": lambda good: good + "#" + "x" * (3 * 1024 * 1024) + "\n",
    "truncated": lambda good: good[: len(good) // 2],
    "invalid utf-8": lambda good: good.encode() + b"  # \xff\xfe\n",
    "yaml alias bomb": lambda good: bomb(),
    "pathological regex": lambda good: (
        good + "  - id: 103\n    msg: m\n    targets: [args]\n    regex: '^(?=(a|aa)+$)'\n"
    ),
    "failing self-test": lambda good: good.replace("select'", "selekt'"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_reload_keeps_last_known_good_under_traffic(rules_file: Path, kind: str) -> None:
    waf, client = app_with(rules_file)
    good_version = waf.status()["active"]["version"]
    with Traffic(client) as traffic:
        time.sleep(0.05)
        replace_file(rules_file, BAD_FILES[kind](GOOD))
        assert waf.reload() is False
        time.sleep(0.05)
    assert traffic.sent > 0
    assert traffic.failed == []
    assert traffic.attacks_passed == 0  # the old rules kept blocking throughout
    status = waf.status()
    assert status["active"]["version"] == good_version
    assert status["last_error"] and status["failed_reloads"] == 1


def test_rule_that_raises_at_evaluation_is_quarantined_under_traffic(rules_file: Path) -> None:
    waf, client = app_with(rules_file)
    broken = next(cf for g in waf.engine.groups for cf in g.set_filters if cf.rule.id == 100)

    class Exploding:
        def found(self, text: str) -> bool:
            raise RuntimeError("rule exploded")

    broken.probe = Exploding()
    with Traffic(client) as traffic:
        assert wait_for(lambda: "100" in waf.status()["quarantined"])
        time.sleep(0.05)
    assert traffic.failed == []  # fail-open: every request still answered
    status = waf.status()
    assert "rule exploded" in status["quarantined"]["100"]
    # Quarantined: the rule no longer runs, the others do.
    assert client.get("/?q=marker").status_code == 200
    assert waf.counters["errors"] >= 3


def test_valid_new_file_takes_effect_by_polling(rules_file: Path) -> None:
    waf, client = app_with(rules_file, reload_interval=0.05)
    try:
        assert client.get(XSS).status_code == 200
        replace_file(rules_file, GOOD + NEW_RULE)
        assert wait_for(lambda: client.get(XSS).status_code == 403)
        assert client.get(ATTACK).status_code == 403
        status = waf.status()
        assert status["reloads"] == 1 and status["last_error"] is None
        # Then an invalid file: the new rules stay, and status shows the error.
        replace_file(rules_file, "wafmw: 1\nfilters: [{id: 1}]\n")
        assert wait_for(lambda: waf.status()["last_error"] is not None)
        assert client.get(XSS).status_code == 403
        assert client.get(ATTACK).status_code == 403
    finally:
        waf.close()


def test_reloads_are_rate_limited_and_flapping_reported(rules_file: Path) -> None:
    waf, _ = app_with(rules_file)
    waf.store.min_reload_interval_s = 60
    replace_file(rules_file, GOOD + NEW_RULE)
    assert waf.store.reload() is True
    assert waf.store.reload() is False  # too soon
    assert waf.status()["skipped_reloads"] == 1
    for text in (GOOD, GOOD + NEW_RULE, GOOD):
        replace_file(rules_file, text)
        assert waf.store.reload(force=True) is True
    assert waf.status()["flapping"] is True


def test_invalid_start_fails_loudly_or_runs_minimal(write_rules: Callable[..., Path]) -> None:
    bad = write_rules("wafmw: 1\nfilters: [{id: 1, msg: m}]\n")
    with pytest.raises(RuleFileError):
        WAFMiddleware(EchoApp(), rules=bad)
    waf = WAFMiddleware(EchoApp(), rules=bad, on_invalid_start="minimal")
    status = waf.status()
    assert status["active"]["minimal_fallback"] is True and status["last_error"]
    assert {f.id for f in waf.engine.ruleset.filters} >= {990001, 990002, 990003, 990004}
    client = TestClient(waf)
    assert client.get("/?id=1%20union%20select%20password").status_code == 403


# -- kill switches: every action type ----------------------------------------------------------

KILL_RULES = """\
wafmw: 1
filters:
  - {id: 1, msg: blocker, action: block, tags: [t-block], targets: [args], contains: blockme}
  - {id: 2, msg: scorer, tags: [t-score], targets: [args], contains: scoreme}
  - {id: 3, msg: logger, action: log, targets: [args], contains: logme}
"""


@pytest.fixture
def kill_app(write_rules: Callable[..., Path]) -> Iterator[tuple[WAFMiddleware, Path]]:
    control = write_rules("{}\n", "control.yaml")
    waf = WAFMiddleware(
        EchoApp(), rules=write_rules(KILL_RULES, "kill-rules.yaml"), control_file=control
    )
    yield waf, control
    waf.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("variable", "value", "target"),
    [
        (ENV_MODE, "off", "/?a=blockme"),
        (ENV_MODE, "detect", "/?a=scoreme"),
        (ENV_RULES, "1", "/?a=blockme"),
        (ENV_TAGS, "t-score", "/?a=scoreme"),
        (ENV_GROUPS, "kill-rules", "/?a=blockme"),
    ],
)
async def test_env_kill_switch_takes_effect_on_next_request(
    kill_app: tuple[WAFMiddleware, Path],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    target: str,
) -> None:
    waf, _ = kill_app
    assert (await call(waf, http_scope(target))).status == 403
    monkeypatch.setenv(variable, value)
    assert (await call(waf, http_scope(target))).status == 200
    monkeypatch.delenv(variable)
    assert (await call(waf, http_scope(target))).status == 403


def test_env_clear_is_true_exactly_when_no_variable_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-request shortcut: clear means what the full reading would find nothing in."""
    assert env_clear() and env_key() == (None, None, None, None)
    for name in (ENV_MODE, ENV_RULES, ENV_TAGS, ENV_GROUPS):
        monkeypatch.setenv(name, "")  # set, even empty: the full reading decides
        assert not env_clear()
        monkeypatch.delenv(name)
        assert env_clear() and env_key() == (None, None, None, None)


@pytest.mark.anyio
async def test_log_action_kill_switch(
    kill_app: tuple[WAFMiddleware, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    waf, _ = kill_app
    await call(waf, http_scope("/?a=logme"))
    assert waf.counters["logged"] == 1
    monkeypatch.setenv(ENV_RULES, "3")
    await call(waf, http_scope("/?a=logme"))
    assert waf.counters["logged"] == 1  # the log rule no longer fires


@pytest.mark.anyio
async def test_control_file_kill_switch_within_poll_interval(
    kill_app: tuple[WAFMiddleware, Path],
) -> None:
    waf, control = kill_app
    waf.store.start_polling(0.05)
    assert (await call(waf, http_scope("/?a=blockme"))).status == 403
    replace_file(control, "mode: detect\n")
    time.sleep(0.3)
    assert (await call(waf, http_scope("/?a=blockme"))).status == 200
    replace_file(control, "disable_rules: [1]\n")
    time.sleep(0.3)
    assert (await call(waf, http_scope("/?a=blockme"))).status == 200
    assert (await call(waf, http_scope("/?a=scoreme"))).status == 403
    replace_file(control, "mode: loud\n")  # invalid: ignored, previous state kept, reported
    time.sleep(0.3)
    assert "control_error" in waf.status()["kill_switches"]
    assert waf.status()["kill_switches"]["control_error"]
    assert (await call(waf, http_scope("/?a=blockme"))).status == 200
    replace_file(control, "{}\n")
    time.sleep(0.3)
    assert (await call(waf, http_scope("/?a=blockme"))).status == 403


# -- shadow rollout ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_shadow_candidate_counts_disagreements_then_promotes(
    rules_file: Path, write_rules: Callable[..., Path]
) -> None:
    waf = WAFMiddleware(EchoApp(), rules=rules_file)
    candidate = write_rules(GOOD + NEW_RULE, "candidate.yaml")
    waf.store.load_candidate(candidate)
    assert (await call(waf, http_scope(XSS))).status == 200  # the active rules decide
    assert (await call(waf, http_scope(ATTACK))).status == 403
    assert (await call(waf, http_scope("/?q=fine"))).status == 200
    shadow = waf.status()["candidate"]
    assert shadow["evaluated"] == 3 and shadow["agree"] == 2
    assert shadow["only_candidate_blocks"] == 1
    assert shadow["samples"][0]["candidate_rules"] == [102]
    waf.store.promote()
    assert (await call(waf, http_scope(XSS))).status == 403
    assert waf.status()["candidate"] is None


def test_per_rule_detect_mode_tries_one_rule_alone(write_rules: Callable[..., Path]) -> None:
    path = write_rules(GOOD + NEW_RULE.replace("    contains:", "    mode: detect\n    contains:"))
    _waf, client = app_with(path)
    assert client.get(XSS).status_code == 200
    assert client.get(ATTACK).status_code == 403


def test_sighup_reloads(rules_file: Path) -> None:
    import signal

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP on this platform")
    previous = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _waf, client = app_with(rules_file, reload_on_sighup=True)
        replace_file(rules_file, GOOD + NEW_RULE)
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: client.get(XSS).status_code == 403)
    finally:
        signal.signal(signal.SIGHUP, previous)
