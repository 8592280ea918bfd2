"""Path and host globs: one meaning whichever engine runs them."""

from __future__ import annotations

import time

import pytest

from wafmw.globs import compile_globs


@pytest.mark.parametrize(
    ("globs", "text", "expected"),
    [
        (["/api/*/users/*/edit"], "/api/v1/users/42/edit", True),
        (["/api/*/users/*/edit"], "/api/v1/users/42/edit/", False),
        (["/api/*/users/*/edit"], "/api/users/edit", False),
        (["/a/*/b/*"], "/a/x\ny/b/", True),  # "*" crosses newlines and slashes
        (["/*/?/b/*"], "/a/é/b/c", True),  # "?" is one character, not one byte
        (["/*/?/b/*"], "/a/\udcff/b/c", True),  # an undecodable byte of a path
        (["/a/[1]/*/*"], "/a/[1]/x/y", True),  # brackets are literal
        (["/a/[1]/*/*"], "/a/1/x/y", False),
        (["/A/*/B/*"], "/a/x/b/y", False),
        (["/x", "/a/*/b/*"], "/x", True),
    ],
)
def test_globs_with_two_stars_or_more_mean_what_the_others_mean(
    globs: list[str], text: str, expected: bool
) -> None:
    matcher = compile_globs(globs)
    assert matcher is not None and (matcher.match(text) is not None) is expected


def test_host_globs_ignore_case_on_either_engine() -> None:
    for globs in (["*.Example.COM"], ["*.*.Example.COM"]):
        matcher = compile_globs(globs, ignore_case=True)
        assert matcher is not None
        assert matcher.match("api.eu.example.com") is not None
        assert matcher.match("example.org") is None


def test_a_glob_with_two_stars_cannot_hang_on_a_long_path() -> None:
    """With `re`, `/api/*/users/*/edit` took time in the square of the length of a path of
    many `/users/` and no `/edit` (1 s for 32 KB; this one, of 64 KB, about 4 s)."""
    matcher = compile_globs(["/api/*/users/*/edit"])
    assert matcher is not None
    path = "/api/" + "/users/" * 9000
    started = time.perf_counter()
    assert matcher.match(path) is None
    assert matcher.match(path + "/edit") is not None
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("globs", [["/login"], ["/api/*"], ["/api/*/users/*"]])
def test_equal_globs_compile_to_equal_matchers(globs: list[str]) -> None:
    """Rules compare by their matchers: a reload keeps the counters of a rate limit, and the
    state of a bot rule, that it did not change."""
    assert compile_globs(globs) == compile_globs(list(globs))
    assert compile_globs(globs) != compile_globs([*globs, "/other/*/x/*"])
    assert compile_globs(globs) != compile_globs(globs, ignore_case=True)
