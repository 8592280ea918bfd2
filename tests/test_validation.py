"""One test per kind of rule-file error; each checks the place is named: file, line, rule, field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wafmw import Problem, RuleFileError, load_rules
from wafmw.rulefile import Limits

HEAD = "wafmw: 1\nfilters:\n"
GOOD_RULE = """\
  - id: 10
    msg: ok
    targets: [args]
    regex: 'abc'
"""


def refused(path: Path | list[Path], limits: Limits | None = None) -> list[Problem]:
    with pytest.raises(RuleFileError) as info:
        if limits is None:
            load_rules(path)
        else:
            load_rules(path, limits=limits)
    return list(info.value.problems)


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_unknown_key(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE + "    colour: red\n")
    p = only(refused(path))
    assert (p.file, p.line, p.rule_id, p.field) == (str(path), 7, 10, "colour")
    assert "unknown key" in p.message
    assert str(p).startswith(f"{path}:7: rule 10: field 'colour'")


def test_unknown_top_level_key(write_rules: Callable[..., Path]) -> None:
    path = write_rules("wafmw: 1\nfliters: []\n")
    p = only(refused(path))
    assert (p.line, p.rule_id, p.field) == (2, None, "fliters")


def test_wrong_type(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("id: 10", "id: 10\n    paranoia: high"))
    p = only(refused(path))
    assert (p.line, p.rule_id, p.field) == (4, 10, "paranoia")
    assert "expected an integer" in p.message


def test_duplicate_id_names_both_places(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE + GOOD_RULE)
    p = only(refused(path))
    assert (p.line, p.rule_id, p.field) == (7, 10, "id")
    assert f"first defined at {path}:3" in p.message


def test_duplicate_id_across_files(write_rules: Callable[..., Path]) -> None:
    a = write_rules(HEAD + GOOD_RULE, "a.yaml")
    b = write_rules(HEAD + GOOD_RULE, "b.yaml")
    p = only(refused([a, b]))
    assert p.file == str(b) and p.rule_id == 10 and str(a) in p.message


def test_invalid_pattern(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("'abc'", "'(unclosed'"))
    p = only(refused(path))
    assert (p.line, p.rule_id, p.field) == (6, 10, "regex")
    assert "invalid pattern" in p.message


def test_unknown_transform(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE + "    transforms: [lowercase, rot13]\n")
    p = only(refused(path))
    assert (p.line, p.rule_id, p.field) == (7, 10, "transforms[1]")
    assert "rot13" in p.message


def test_unknown_target(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("[args]", "[args, argz]"))
    p = only(refused(path))
    assert (p.line, p.rule_id, p.field) == (5, 10, "targets[1]")
    assert "unknown target 'argz'" in p.message


def test_target_that_cannot_be_named(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("[args]", "[path:x]"))
    assert "cannot be narrowed" in only(refused(path)).message


def test_missing_and_double_operator(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("    regex: 'abc'\n", ""))
    p = only(refused(path))
    assert p.rule_id == 10 and "exactly one operator" in p.message
    path = write_rules(HEAD + GOOD_RULE + "    contains: x\n")
    p = only(refused(path))
    assert p.rule_id == 10 and "only one of contains, regex" in p.message


def test_required_field(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("    msg: ok\n", ""))
    p = only(refused(path))
    assert (p.rule_id, p.field) == (10, "msg") and p.message == "is required"


def test_include_cycle(write_rules: Callable[..., Path]) -> None:
    a = write_rules("wafmw: 1\ninclude: [b.yaml]\n", "a.yaml")
    write_rules("wafmw: 1\ninclude: [a.yaml]\n", "b.yaml")
    p = only(refused(a))
    assert "include cycle" in p.message and p.field == "include"


def test_missing_include(write_rules: Callable[..., Path]) -> None:
    a = write_rules("wafmw: 1\ninclude: [nope.yaml]\n", "a.yaml")
    p = only(refused(a))
    assert "cannot read file" in p.message and f"included from {a}:2" in p.message


def test_settings_not_allowed_in_included_file(write_rules: Callable[..., Path]) -> None:
    a = write_rules("wafmw: 1\ninclude: [b.yaml]\n", "a.yaml")
    b = write_rules("wafmw: 1\nsettings: {mode: off}\n", "b.yaml")
    p = only(refused(a))
    assert (p.file, p.line, p.field) == (str(b), 2, "settings")


@pytest.mark.parametrize(
    "section", ["settings: {mode: detect}", "bots: {}", "ip_lists: {deny: [10.0.0.1]}"]
)
def test_a_top_level_section_given_by_two_files_loaded_together(
    write_rules: Callable[..., Path], section: str
) -> None:
    """Only the first file's section would apply: the operator who wrote the second one
    would believe it does (detect mode, say, while the WAF enforces)."""
    a = write_rules(f"wafmw: 1\n{section}\n" + "filters:\n" + GOOD_RULE, "a.yaml")
    b = write_rules(f"wafmw: 1\nfilters: []\n{section}\n", "b.yaml")
    name = section.partition(":")[0]
    p = only(refused([a, b]))
    assert (p.file, p.line, p.field) == (str(b), 3, name)
    assert f"already given by {a}:2" in p.message
    assert load_rules([a, a]).filters  # the same file twice is the same section


def test_file_size_limit(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE)
    p = only(refused(path, Limits(max_file_bytes=20)))
    assert p.file == str(path) and "the limit is 20" in p.message


def test_rule_count_limit(write_rules: Callable[..., Path]) -> None:
    rules = "".join(GOOD_RULE.replace("10", str(i)) for i in range(1, 5))
    path = write_rules(HEAD + rules)
    p = only(refused(path, Limits(max_filters=3)))
    assert p.field == "filters" and "the limit is 3" in p.message


def test_pattern_length_limit(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE.replace("'abc'", "'" + "a" * 50 + "'"))
    p = only(refused(path, Limits(max_pattern_length=40)))
    assert (p.rule_id, p.field) == (10, "regex") and "limit of 40" in p.message


def test_list_size_limit(write_rules: Callable[..., Path]) -> None:
    path = write_rules("wafmw: 1\nlists:\n  words: [a, b, c, d]\n")
    p = only(refused(path, Limits(max_list_items=3)))
    assert (p.line, p.field) == (3, "lists.words") and "the limit is 3" in p.message


def test_list_file_and_unknown_list(write_rules: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("# scanners\nsqlmap\n\nnikto\n")
    path = write_rules(
        "wafmw: 1\nlists:\n  agents: {file: words.txt}\nfilters:\n"
        "  - {id: 1, msg: m, targets: [headers:user-agent], contains_any: $agents}\n"
    )
    ruleset = load_rules(path)
    assert ruleset.filters[0].argument == ("sqlmap", "nikto")
    bad = write_rules(path.read_text().replace("$agents", "$agnets"), "bad.yaml")
    p = only(refused(bad))
    assert (p.rule_id, p.field) == (1, "contains_any") and "unknown list" in p.message


def test_alias_bomb(write_rules: Callable[..., Path]) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    path = write_rules("wafmw: 1\nlists:\n" + "".join(f"  {x}\n" for x in lines))
    p = only(refused(path))
    # Refused by sizing the node graph before any value is built: the line named is that of
    # the smallest part that expands past the bound alone (a5, about 1.1 million values), not
    # wherever a conversion would have crossed it.
    assert "alias bomb" in p.message and p.line == 8


def test_shared_aliases_under_the_bound_load(write_rules: Callable[..., Path]) -> None:
    path = write_rules(
        "wafmw: 1\nlists:\n  a: &a [sqlmap, nikto]\n  b: *a\n  c: *a\n"
        "filters:\n  - {id: 1, msg: m, targets: [headers:user-agent], contains_any: $b}\n"
    )
    assert load_rules(path).filters[0].argument == ("sqlmap", "nikto")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"wafmw: 1\nfilters:\n  - id: 1\n    msg: caf\xe9\n")
    p = only(refused(path))
    assert p.line == 4 and "UTF-8" in p.message


def test_duplicate_yaml_key(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE + "    msg: again\n")
    p = only(refused(path))
    assert p.line == 7 and "duplicate key 'msg'" in p.message


def test_python_tags_refused(write_rules: Callable[..., Path]) -> None:
    path = write_rules("wafmw: 1\nlists:\n  x: !!python/object/apply:os.system ['true']\n")
    p = only(refused(path))
    assert p.line == 3 and "not allowed" in p.message


def test_truncated_yaml(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + "  - id: 10\n    msg: 'unterminated\n")
    p = only(refused(path))
    assert "invalid YAML" in p.message and p.line is not None


def test_wrong_format_version(write_rules: Callable[..., Path]) -> None:
    path = write_rules("wafmw: 2\n")
    p = only(refused(path))
    assert (p.line, p.field) == (1, "wafmw")


def test_exclusion_naming_unknown_rule(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE + "exclusions:\n  - {rules: [99], path: /x}\n")
    p = only(refused(path))
    assert p.field == "exclusions.rules" and "[99]" in p.message


def test_every_problem_is_reported_at_once(write_rules: Callable[..., Path]) -> None:
    rules = GOOD_RULE.replace("'abc'", "'('") + GOOD_RULE.replace("10", "11") + "    bogus: 1\n"
    problems = refused(write_rules(HEAD + rules))
    assert {(p.rule_id, p.field) for p in problems} == {(10, "regex"), (11, "bogus")}


def test_valid_file_loads_with_version_hash(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE)
    first = load_rules(path)
    assert len(first.version) == 12 and first.files == (str(path),)
    path.write_text(path.read_text().replace("abc", "abd"))
    assert load_rules(path).version != first.version


def test_paranoia_filters_rules(write_rules: Callable[..., Path]) -> None:
    path = write_rules(HEAD + GOOD_RULE + GOOD_RULE.replace("10", "11") + "    paranoia: 2\n")
    assert [f.id for f in load_rules(path).filters] == [10]
    assert [f.id for f in load_rules(path, paranoia=2).filters] == [10, 11]
