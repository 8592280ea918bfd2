"""The published JSON Schema comes from the validator's own declaration: keep them in step."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from wafmw import RuleFileError, load_rules
from wafmw.rulefile import json_schema, json_schema_text
from wafmw.yamlsafe import load_yaml

PUBLISHED = Path(__file__).resolve().parent.parent / "wafmw" / "rulefile.schema.json"
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


def test_published_schema_is_current() -> None:
    assert PUBLISHED.read_text() == json_schema_text(), (
        "wafmw/rulefile.schema.json is stale: regenerate it with `wafmw schema > "
        "wafmw/rulefile.schema.json`"
    )


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", sorted(RULES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_rule_files_satisfy_the_schema(path: Path) -> None:
    doc = json.loads(json.dumps(load_yaml(path.read_text())))
    jsonschema.validate(doc, json_schema())


VALID = "wafmw: 1\nfilters:\n  - {id: 1, msg: m, targets: [args], regex: a}\n"
STRUCTURALLY_INVALID = [
    "wafmw: 1\nfilters:\n  - {id: 1, msg: m, targets: [args], regex: a, colour: red}\n",
    "wafmw: 1\nfilters:\n  - {id: 1, msg: m, targets: [argz], regex: a}\n",
    "wafmw: 1\nfilters:\n  - {id: 1, msg: m, targets: [args]}\n",
    "wafmw: 1\nfilters:\n  - {id: 1, msg: m, targets: [args], regex: a, contains: b}\n",
    "wafmw: 1\nfilters:\n  - {id: 0, msg: m, targets: [args], regex: a}\n",
    "wafmw: 1\nfilters:\n  - {id: 1, msg: m, targets: [args], regex: a, transforms: [x]}\n",
    "wafmw: 1\nsettings: {mode: loud}\n",
    "wafmw: 1\nsettings: {paranoia: 5}\n",
    "wafmw: 1\nsettings: {body: {oversize: explode}}\n",
    "wafmw: 1\nexclusions: [{rules: [1], path: /x, why: because}]\n",
    "wafmw: 2\n",
    "filters: []\n",
]


def test_schema_and_validator_agree(write_rules: Callable[..., Path]) -> None:
    schema = json_schema()
    jsonschema.validate(json.loads(json.dumps(load_yaml(VALID))), schema)
    load_rules(write_rules(VALID))
    for text in STRUCTURALLY_INVALID:
        doc = json.loads(json.dumps(load_yaml(text)))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
        with pytest.raises(RuleFileError):
            load_rules(write_rules(text))
