"""Tokenizer-based detectors behind the `detect:` filter operator.

A regex sees characters; these detectors see tokens. The SQL detector reads a
value as SQL in three contexts (as it stands, and as if it had been pasted
inside a '...' or a "..." literal) and looks for token shapes that only an
injection produces: a literal closed and followed by an operator or keyword,
a tautology, UNION SELECT, a stacked statement, a comment that cuts the rest
of the query off, or a call to a timing/error/file function. Prose and SQL
quoted as text (a code snippet in a comment) do not produce those shapes.

Each `check` caps the text it looks at, runs in time linear in that cap and
never raises: a detector that fails answers False (the engine treats a failed
filter with the rule's on_error setting; it never reads a default score).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType

from ..patterns import OnePattern

__all__ = ["DETECTORS", "Detector", "sqli", "xss"]

_MAX_INPUT = 4096
_MAX_TOKENS = 400


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    prefilter: str
    check: Callable[[str], bool]


# ----------------------------------------------------------------- SQL tokens

_KEYWORDS = frozenset(
    [
        "select",
        "union",
        "insert",
        "update",
        "delete",
        "drop",
        "create",
        "alter",
        "truncate",
        "replace",
        "merge",
        "exec",
        "execute",
        "declare",
        "shutdown",
        "grant",
        "revoke",
        "from",
        "where",
        "having",
        "group",
        "order",
        "by",
        "limit",
        "offset",
        "into",
        "outfile",
        "dumpfile",
        "values",
        "set",
        "table",
        "database",
        "schema",
        "procedure",
        "analyse",
        "waitfor",
        "delay",
        "like",
        "rlike",
        "regexp",
        "between",
        "and",
        "or",
        "xor",
        "not",
        "null",
        "is",
        "in",
        "exists",
        "case",
        "when",
        "then",
        "else",
        "end",
        "all",
        "distinct",
        "as",
        "join",
        "on",
        "asc",
        "desc",
        "top",
        "sounds",
        "div",
        "mod",
        "collate",
        "binary",
        "cast",
        "convert",
        "char",
        "nchar",
        "varchar",
        "load_file",
        "information_schema",
    ]
)
_STATEMENTS = frozenset(
    [
        "select",
        "insert",
        "update",
        "delete",
        "drop",
        "create",
        "alter",
        "truncate",
        "exec",
        "execute",
        "declare",
        "shutdown",
        "grant",
        "revoke",
        "waitfor",
        "merge",
        "replace",
        "call",
        "load",
        "handler",
    ]
)
_LOGIC = frozenset({"or", "and", "xor", "||", "&&", "not", "div"})
_COMPARE = frozenset(
    {
        "=",
        "<",
        ">",
        "<=",
        ">=",
        "<>",
        "!=",
        "<=>",
        "like",
        "rlike",
        "regexp",
        "is",
        "in",
        "between",
        "sounds",
        "glob",
        "match",
    }
)
_IS_OPERANDS = frozenset({"null", "true", "false", "unknown"})
_DANGEROUS_FUNCS = frozenset(
    [
        "sleep",
        "benchmark",
        "pg_sleep",
        "extractvalue",
        "updatexml",
        "load_file",
        "exp",
        "floor",
        "rand",
        "geometrycollection",
        "multipoint",
        "polygon",
        "linestring",
        "multilinestring",
        "multipolygon",
        "group_concat",
        "concat",
        "concat_ws",
        "char",
        "chr",
        "ascii",
        "ord",
        "substring",
        "substr",
        "mid",
        "hex",
        "unhex",
        "version",
        "database",
        "user",
        "current_user",
        "system_user",
        "session_user",
        "schema",
        "@@version",
        "utl_inaddr",
        "utl_http",
        "dbms_pipe",
        "dbms_lock",
        "xp_cmdshell",
        "xp_dirtree",
        "xp_regread",
        "sp_executesql",
        "randomblob",
        "make_set",
        "elt",
        "if",
        "ifnull",
        "nullif",
        "iif",
        "case",
        "count",
        "row_number",
        "json_keys",
        "json_extract",
        "st_latfromgeohash",
        "gtid_subset",
        "name_const",
        "procedure_analyse",
        "pg_read_file",
        "lo_import",
        "to_char",
        "cast",
        "convert",
        "len",
        "length",
        "bin",
        "oct",
        "ctxsys",
        "dbms_xmlgen",
        "xmltype",
        "sys_context",
        "is_srvrolemember",
        "db_name",
        "host_name",
        "object_id",
        "getdate",
        "sysdate",
        "now",
        "current_database",
        "current_setting",
        "pg_ls_dir",
    ]
)
# words that continue an expression right after a closed literal (besides _LOGIC and _COMPARE)
_INFIX = (
    _LOGIC
    | _COMPARE
    | frozenset({"collate", "notnull", "isnull", "mod", "ilike", "similar", "escape", "div"})
)
# tokens that may stand next to an injected expression: logic, separators, brackets
_EDGE = frozenset(
    {"or", "and", "xor", "||", "&&", "(", ")", ",", ";", "where", "having", "when", "on", "not"}
)
_TIMING = frozenset(
    {"sleep", "benchmark", "pg_sleep", "dbms_pipe", "dbms_lock", "randomblob", "waitfor"}
)
_ERROR_FUNCS = frozenset(
    {
        "extractvalue",
        "updatexml",
        "exp",
        "geometrycollection",
        "multipoint",
        "polygon",
        "linestring",
        "multilinestring",
        "multipolygon",
        "gtid_subset",
        "name_const",
        "st_latfromgeohash",
        "json_keys",
        "xmltype",
        "utl_inaddr",
        "utl_http",
        "ctxsys",
        "dbms_xmlgen",
        "xp_cmdshell",
        "xp_dirtree",
        "xp_regread",
        "sp_executesql",
        "load_file",
        "pg_read_file",
        "lo_import",
        "pg_ls_dir",
    }
)
# Searched by RE2, which reads a 4 KB value in about 6 µs where Python's re took 36-51 µs,
# trying the alternatives at each letter that begins one (one-off).
_SCHEMA_WORDS = OnePattern(
    r"information_schema|sysobjects|syscolumns|sysusers|sys\.(?:objects|tables|columns|databases)"
    r"|mysql\.(?:user|db)|pg_(?:catalog|shadow|user|tables|database)|sqlite_(?:master|schema)"
    r"|all_tables|user_tables|all_tab_columns|dba_users|msysobjects|@@(?:version|datadir|hostname"
    r"|basedir|servername)"
)

# A quoted string left open runs to the end of the text, a final backslash included: were
# that backslash not part of it, the string would fail to match, and each escaped quote in it
# would begin another string that fails too (a quote, 2,000 times \' and a \: 0.14 s).
# Words, the commonest tokens, are tried first: no other alternative begins with a letter or
# "_", so the order changes no match (4 KB of prose: 433 -> 349 µs a scan, one-off).
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<word>[a-z_][\w$]*(?:\.[a-z_][\w$]*)*)
  | (?P<cmt>/\*!?\d*|--(?:[\s\x00]|$)|\#|;\x00)
  | (?P<str>'(?:[^'\\]|\\.|'')*(?:'|\\?$)|"(?:[^"\\]|\\.|"")*(?:"|\\?$)|`[^`]*(?:`|$))
  | (?P<num>0x[0-9a-f]+|0b[01]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)
  | (?P<var>@@?[a-z_][\w.$]*|@)
  | (?P<op><=>|<>|!=|<=|>=|\|\||&&|::|[=<>!~^&|+\-*/%])
  | (?P<punct>[(),;.\[\]{}])
    """,
    re.VERBOSE,
)
_BLOCK_COMMENT_END = re.compile(r"\*/")
# The characters that are tokens of their own whatever follows them (no longer operator,
# comment, number or variable begins with one), with those tokens: runs of them are what an
# attacker pads a value with, and _tokens reads a run in one match (_sqli on 4 KB of a rule's
# shape of quotes and punctuation, 531 -> 467 µs and 517 -> 397 µs; one-off).
_RUN_TOKENS = {
    char: (char if char in "(),[]{}" else "o" if char in "*+~^%=" else "x", char)
    for char in "()*+,[]{}~^%=$?\\"
}
# The same tokens for one pass of finditer (see _tokens): the whitespace after a token is part
# of its match; comments run to their end inside the match; a word is followed by an empty group
# that tells whether its next character past whitespace (within _next_nonspace's window of 64)
# is "(", or starts a comment that _next_nonspace must skip; any other character is a token.
# Whitespace is taken after a token, not before it: the spaces after a word are then read once,
# where a lookahead for "(" and one for a comment each read them again (4 KB of words: 94 ->
# 63 µs a scan, one-off). No alternative begins with whitespace, so a run of it that no token
# precedes (the text's start) fails at once at each position: the scan stays linear.
_SCAN_RE = re.compile(
    r"(?:"
    + _TOKEN_RE.pattern.replace("(?P<ws>\\s+)\n  | ", "", 1)
    .replace(
        r"(?P<cmt>/\*!?\d*|--(?:[\s\x00]|$)|\#|;\x00)",
        r"(?P<cmt>/\*\d*(?:[\s\S]*?\*/|[\s\S]*)|--(?:[\s\x00]|$)[^\n]*|\#[^\n]*|;\x00[^\n]*)",
    )
    .replace(  # quoted strings as unrolled loops: a run of plain characters is one step
        r"""(?P<str>'(?:[^'\\]|\\.|'')*(?:'|\\?$)|"(?:[^"\\]|\\.|"")*(?:"|\\?$)|""",
        r"""(?P<str>'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?:'|\\?$)|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*(?:"|\\?$)|""",
    )
    .replace(
        r"(?P<word>[a-z_][\w$]*(?:\.[a-z_][\w$]*)*)",
        # After the spaces (at most 63: the window), "(" or "/*" or neither; when neither,
        # the group is left out without giving any spaces back, most often at its first
        # test, of the next character's class.
        r"(?P<word>[a-z_][\w$]*(?:\.[a-z_][\w$]*)*)"
        r"\s{0,63}(?:(?=[(/])(?:(?P<call>)(?=\()|(?P<maybe_call>)(?=/\*)))?",
    )
    .replace(
        "(?P<cmt>",
        # A run of characters each of which is a token of its own whatever follows it: one
        # match for up to 64 of them (_RUN_TOKENS).
        "(?P<run>[" + "".join(map(re.escape, _RUN_TOKENS)) + "]{2,64})  | (?P<cmt>",
        1,
    )
    + r"  | (?P<x>\S))\s*",
    re.VERBOSE,
)
assert _SCAN_RE.pattern.count("(?P<call>)") == 1 and "(?P<ws>" not in _SCAN_RE.pattern
assert "(?:(?:\\\\.|'')[^'\\\\]*)*" in _SCAN_RE.pattern
_KINDS = {"str": "s", "num": "n", "var": "v", "op": "o", "x": "x"}


def _tokens(s: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; comments are kept as ('c', ...), whitespace dropped. One C-level
    scan hands back every token with the whitespace before it (a call of match() per token and
    per run of whitespace cost twice as much or more); a MySQL executable comment (/*! ... */),
    whose end is cut out of the text as it is read, is left to the token-by-token reading."""
    if "/*!" in s:
        return _tokens_stepwise(s)
    out: list[tuple[str, str]] = []
    append = out.append
    kinds = _KINDS
    keywords = _KEYWORDS
    # Each match is one token or more (a run): the first _MAX_TOKENS matches are all it reads.
    for m in islice(_SCAN_RE.finditer(s), _MAX_TOKENS):
        kind = m.lastgroup
        if kind == "word":
            text = m["word"]
            append(("k" if text in keywords else "b", text))
        elif kind == "punct":
            text = m["punct"]
            append((text, text))
        elif kind == "call":
            append(("f", m["word"]))
        elif kind == "maybe_call":
            text = m["word"]
            if _next_nonspace(s, m.end("word")) == "(":
                append(("f", text))
            else:
                append(("k" if text in keywords else "b", text))
        elif kind == "cmt":
            append(("c", "/*" if m["cmt"].startswith("/*") else "--"))
        elif kind == "run":
            out += map(_RUN_TOKENS.__getitem__, m["run"])
            if len(out) >= _MAX_TOKENS:
                break
        else:
            append((kinds[kind or "x"], m[kind or "x"]))
    del out[_MAX_TOKENS:]
    return out


def _tokens_stepwise(s: str) -> list[tuple[str, str]]:
    """_tokens() one match() at a time, rewriting the text where an executable comment ends."""
    out: list[tuple[str, str]] = []
    pos = 0
    n = len(s)
    while pos < n and len(out) < _MAX_TOKENS:
        m = _TOKEN_RE.match(s, pos)
        if m is None:
            out.append(("x", s[pos]))
            pos += 1
            continue
        kind = m.lastgroup or "x"
        text = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "cmt":
            if text.startswith("/*"):
                end = _BLOCK_COMMENT_END.search(s, pos)
                if text.startswith("/*!"):
                    # MySQL runs the body of /*! ... */: keep it, drop only the markers.
                    out.append(("c", "/*!"))
                    if end is not None:
                        s = s[: end.start()] + " " + s[end.end() :]
                        n = len(s)
                    continue
                pos = n if end is None else end.end()
                out.append(("c", "/*"))
            else:
                out.append(("c", "--"))
                nl = s.find("\n", pos)
                pos = n if nl < 0 else nl
            continue
        if kind == "word":
            if pos < n and _next_nonspace(s, pos) == "(":
                kind = "f"
            elif text in _KEYWORDS:
                kind = "k"
            else:
                kind = "b"
        elif kind == "str":
            kind = "s"
        elif kind == "num":
            kind = "n"
        elif kind == "var":
            kind = "v"
        elif kind == "op":
            kind = "o"
        else:
            kind = text
        out.append((kind, text))
    return out


def _next_nonspace(s: str, pos: int) -> str:
    end = min(len(s), pos + 64)
    while pos < end:
        ch = s[pos]
        if not ch.isspace():
            if s.startswith("/*", pos):
                close = s.find("*/", pos + 2, end)
                if close < 0:
                    return ""
                pos = close + 2
                continue
            return ch
        pos += 1
    return ""


def _is_operand(tok: tuple[str, str]) -> bool:
    return tok[0] in ("n", "s", "b", "v") or tok[1] in ("null", "true", "false")


# The kinds and texts of the tokens at which a shape of _sql_shapes' loop begins: each of its
# checks first tests the token's kind or text against these. Most tokens of a long value are
# other words, punctuation and operators, passed over at the cost of two lookups (4 KB of
# prose: 142 µs a reading before, one-off).
_SHAPE_KINDS = frozenset({"f", "n", "s"})
# The kinds of token at which only the shapes looked for first begin: a literal's comparison
# with a literal, and a subquery after "(" (punctuation is its own kind). A stream of quoted
# strings and parentheses, what an attacker pads a value with, passes over the rest of the
# checks at them.
_ANSWERED = frozenset({"n", "s", "("})
_SHAPE_TEXTS = _LOGIC | {
    "union",
    "waitfor",
    ";",
    "select",
    "order",
    "group",
    "(",
    "into",
    "procedure",
    "having",
}


def _sql_shapes(toks: list[tuple[str, str]], broke_out: bool) -> bool:
    """True when the token stream has a shape that only an injection produces.

    `broke_out` says the stream starts right after a literal was closed (the
    value was read as if it sat inside quotes), which makes a following logic
    operator, comment or statement separator meaningful on its own (and a
    statement keyword too, when that quote began the value: see _broke_out_at).
    """
    n = len(toks)
    words = [t[1] for t in toks]
    for i, (kind, text) in enumerate(toks):
        if kind not in _SHAPE_KINDS and text not in _SHAPE_TEXTS:
            continue  # no shape below begins at this token
        if kind == "n" or kind == "s":
            # literal <compare> literal: 1=1, 'a'='a', 42<=>42, 11!=1, '1' not regexp '2'
            if i + 2 < n and (i == 0 or words[i - 1] in _EDGE):
                op, b = toks[i + 1], toks[i + 2]
                j = i + 3
                if op[1] == "not" and i + 3 < n:
                    op, b = toks[i + 2], toks[i + 3]
                    j = i + 4
                if j < n and words[j] not in _EDGE and toks[j][0] != "c":
                    op = ("", "")
                if op[1] in _COMPARE and op[1] not in ("<", ">") and b[0] in ("n", "s"):
                    return True
                if op[1] in ("<", ">") and b[0] in ("n", "s") and kind == b[0] == "s":
                    return True
        elif text == "(" and i + 2 < n and words[i + 1] == "select":
            # a subquery: ( select <operand|function|*|case|(>
            after = toks[i + 2]
            if after[0] in ("n", "s", "v", "f") or after[1] in (
                "*",
                "case",
                "(",
                "null",
                "distinct",
            ):
                return True
        if kind in _ANSWERED:
            continue  # no shape below begins at a literal or a "("
        nxt = toks[i + 1] if i + 1 < n else ("", "")
        # UNION [ALL|DISTINCT] [(] SELECT
        if text == "union":
            j = i + 1
            while j < n and (toks[j][0] == "c" or toks[j][1] in ("all", "distinct", "(")):
                j += 1
            if j < n and words[j] in ("select", "values"):
                return True
        # timing / error-based / file functions called
        if kind == "f" and (text in _TIMING or text in _ERROR_FUNCS):
            return True
        if text == "waitfor" and nxt[1] in ("delay", "time"):
            return True
        # stacked statement after a literal or a number
        if text == ";" and nxt[1] in _STATEMENTS and (i == 0 or toks[i - 1][0] in ("s", "n")):
            return True
        # tautology: <logic> operand <compare> operand
        if text in _LOGIC and i + 3 < n + 1:
            a = toks[i + 1] if i + 1 < n else ("", "")
            op = toks[i + 2] if i + 2 < n else ("", "")
            b = toks[i + 3] if i + 3 < n else ("", "")
            if op[1] == "is" and b[1] == "not" and i + 4 < n:
                b = toks[i + 4]  # IS NOT NULL
            if (
                _is_operand(a)
                and op[1] in _COMPARE
                and (_is_operand(b) or b[1] == "(")
                and (a[0] != "b" or b[0] != "b" or a[1] == b[1])
                # SQL's IS takes NULL, TRUE, FALSE or UNKNOWN; English's takes any word
                # ("and 9 is slowest").
                and (op[1] != "is" or b[1] in _IS_OPERANDS)
            ):
                return True
            # or true / or 1 / and sleep(...) / or 'x' at the end
            if (
                broke_out
                and i <= 2
                and (a[0] in ("n", "s", "f", "v") or a[1] in ("true", "false", "not"))
            ):
                return True
        # <logic> operand <compare> at the very end: a payload cut short (xor 2 <)
        if text in _LOGIC and i + 2 == n - 1 and _is_operand(toks[i + 1]) and words[-1] in _COMPARE:
            return True
        # SELECT ... FROM with a recon or function shape, or select at the very start after a
        # break-out
        if text == "select" and broke_out and (i == 0 or words[i - 1] in ("(", ";")):
            nk = nxt[0]
            if nk in ("n", "v", "f", "s") or nxt[1] in ("*", "null", "distinct", "all"):
                return True
            if "from" in words[i + 2 : i + 12]:
                return True
        if kind == "f" and text in ("char", "chr", "concat", "concat_ws", "group_concat") and i > 0:
            prev = toks[i - 1][1]
            if prev in ("||", "+", "(", ",", "=", "select", "union") or toks[i - 1][0] == "s":
                return True
        if text in ("order", "group") and nxt[1] == "by" and broke_out and i <= 2:
            return True
        if text == "select" and i == 0 and nxt[0] == "f":
            return True
        if text == "into" and nxt[1] in ("outfile", "dumpfile"):
            return True
        if text == "procedure" and nxt[1] == "analyse":
            return True
        if (
            text == "having"
            and i + 2 < n
            and (toks[i + 1][0] == "f" or (_is_operand(toks[i + 1]) and toks[i + 2][1] in _COMPARE))
        ):
            return True
    # a value that starts with a logic operator and an operand and ends in a comment: OR 1#
    if (
        not broke_out
        and n >= 3
        and words[0] in _LOGIC
        and _is_operand(toks[1])
        and toks[-1][0] == "c"
    ):
        return True
    if broke_out and n:
        first = toks[0]
        # the literal was closed and the rest is commented away: admin'-- / 1'#
        if first[0] == "c":
            return True
        # the literal was closed, an operator follows at once and a comment cuts the rest of
        # the query off: x'or email notnull--, user'collate nocase--, x'&email--, id'not glob--
        if (
            2 <= n <= 16
            and toks[-1][0] == "c"
            and (first[0] == "o" or first[1] in _INFIX or first[1] == "?")
            and not any(t[0] == "s" for t in toks)
        ):
            return True
        if first[1] == ";" and (n == 1 or words[1] in _STATEMENTS or toks[1][0] in ("c", "v")):
            return True
        if first[1] == "union" and (n == 1 or words[1] in ("all", "select", "distinct", "(")):
            return True
        if first[0] == "o" and first[1] in ("||", "+", "&&", "|", "^", "*", "-") and n > 1:
            return toks[1][0] in ("f", "s", "n", "v", "(") and n >= 3
        if first[1] in _LOGIC and n > 1:
            second = toks[1]
            return second[0] in ("n", "s", "f", "v", "(") or second[1] in ("true", "false", "not")
        if first[1] in _COMPARE and n > 2:
            return toks[-1][0] == "c" or any(t[1] in _LOGIC for t in toks[2:])
        if first[1] == ")" and n > 1:
            return toks[1][1] in _LOGIC or toks[1][1] in ("union", ";", "--") or toks[1][0] == "c"
    return False


_SQL_PREFILTER = (
    # Cheap and specific enough that ordinary header values (a browser User-Agent with "like
    # Gecko", cookies, Accept lists) do not reach the tokenizer.
    r"['\"`]|--|/\*[^;,/]|#|@@|\|\||&&|[\x{2018}\x{2019}]"
    r"|\b(?:union|select|sleep|benchmark|waitfor|having|information_schema|exec|execute|drop"
    r"|insert|delete|update|truncate|declare|extractvalue|updatexml|pg_sleep|load_file|outfile"
    r"|procedure|shutdown)(?:\s|\(|/\*|$)"
    r"|\b(?:or|and|xor|not|div|like|is|in|regexp|rlike)\s*[\d'\"(@-]"
    r"|\d\s*(?:[=<>!]=?|<=>)\s*\d|;\s*(?:select|insert|update|delete|drop|exec|declare|shutdown|set\s|alter|create|truncate|waitfor)|(?:!=|<>|<=|>=)\s*[(\d'\"]"
    r"|\b(?:xmltype|utl_inaddr|utl_http|dbms_\w+|xp_\w+|sp_\w+|gtid_subset|name_const|exp|polygon"
    r"|geometrycollection|multipoint|linestring|json_keys|randomblob|ctxsys\.\w+|lo_import"
    r"|pg_read_file|pg_ls_dir)\s*\("
)


_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")


def _looks_binary(s: str) -> bool:
    """Text that is mostly undecodable bytes (a base64 value that was not text) is not read."""
    return len(_BINARY.findall(s, 0, 512)) * 10 > min(len(s), 512)


_XML_VALUES = re.compile(r"""=\s*"([^"<>]{1,512})"|>([^<>]{1,512})<""")


def _markup_values(s: str) -> list[str]:
    """Attribute values and text nodes of an XML/SOAP body, which the engine hands over raw."""
    if not s.lstrip().startswith("<"):
        return []
    out = []
    for m in _XML_VALUES.finditer(s):
        v = m.group(1) if m.group(1) is not None else m.group(2)
        if v.strip():
            out.append(v)
        if len(out) >= 64:
            break
    return out


def sqli(value: str) -> bool:
    """Whether `value` reads as an SQL injection in any quoting context."""
    try:
        if any(_sqli(v) for v in _markup_values(value[:_MAX_INPUT])):
            return True
        return _sqli(value)
    except Exception:
        return False


def _sqli(value: str) -> bool:
    try:
        s = value[:_MAX_INPUT].lower()
        if _looks_binary(s):
            return False
        if "\u2019" in s or "\u2018" in s:
            s = s.replace("\u2019", "'").replace("\u2018", "'")
        if ("select" in s or "from" in s or "(" in s) and _SCHEMA_WORDS.found(s):
            return True
        if _sql_shapes(_tokens(s), broke_out=False):
            return True
        # Each reading below by where it begins: the two quotes' readings can begin at the
        # same place ("'x: after the run that begins at the double quote, and after the
        # single quote), and such a text is read once.
        readings: dict[int, tuple[bool, str]] = {}
        for q in ("'", '"'):
            i = s.find(q)
            if i < 0:
                continue
            # read the text after the first quote as if that quote had closed a literal
            lead = not s[:i].strip()
            if _broke_out_at(s, i + 1, lead, readings):
                return True
            # a run of quotes (and escaping backslashes) closes the literal too: '''or 1, \''or'
            j = i + 1
            while j < len(s) and s[j] in "'\"\\`":
                j += 1
            if j > i + 1 and _broke_out_at(s, j, lead, readings):
                return True
        return False
    except Exception:
        return False


# The statement keywords that make a reading an injection when the quote that closed the
# literal was the value's first character ('drop table users--); after a quote further in
# (x'drop me a line), they begin prose as often.
_LEAD_WORDS = frozenset({"union", "alter", "drop", "exec", "execute", "declare", "truncate"})


def _broke_out_at(s: str, start: int, lead: bool, readings: dict[int, tuple[bool, str]]) -> bool:
    """Whether `s` read from `start` on, as if a literal had closed just before, has an
    injection shape; `lead` says the quote that closed it was the first character of the
    value, which makes a leading statement keyword one. A reading is kept in `readings` by
    where it begins, with the first token it reads: begun there again, after the other
    quote, it is neither tokenized nor looked through again, only its lead checked."""
    known = readings.get(start)
    if known is None:
        tokens = _tokens(s[start:])
        known = readings[start] = (
            _sql_shapes(tokens, broke_out=True),
            tokens[0][1] if tokens else "",
        )
    shaped, first = known
    return shaped or (lead and first in _LEAD_WORDS)


# ----------------------------------------------------------------- HTML/JS

# A tag: "<", "/" if it closes, its name, then what follows up to ">" or the end. No text can
# be split between two of these parts in more than one way: the name is all of it (the rest
# cannot begin with a name's character), and the spaces after "<" are one run when there is
# no "/". Else a match that failed was tried again at every split: 4,000 letters or spaces
# after a "<" cost 0.3-0.35 s.
_TAG_RE = re.compile(
    r"<\s*((?:/\s*)?)([a-z][a-z0-9:_-]*)(?![a-z0-9:_-])"  # "<", "/" if it closes, the name
    r"([^<>]{0,2000})(>|$)",  # up to ">" or the end
    re.S,
)
_ATTR_RE = re.compile(
    r"""([a-z_:][-a-z0-9_:.]*)\s*(?:=\s*("[^"]*"|'[^']*'|`[^`]*`|[^\s>]+))?""", re.S
)
_BAD_TAGS = frozenset(
    [
        "script",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "base",
        "meta",
        "link",
        "style",
        "form",
        "isindex",
        "xss",
        "vmlframe",
        "bgsound",
        "layer",
        "ilayer",
        "portal",
        "svg",
        "math",
        "template",
        "xml",
        "import",
    ]
)
_URL_ATTRS = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "data",
        "xlink:href",
        "background",
        "poster",
        "lowsrc",
        "dynsrc",
        "codebase",
        "srcdoc",
        "to",
        "from",
        "values",
        "by",
    }
)
_SCRIPT_URL = re.compile(
    r"^[\s\x00-\x20]*(?:java|vb|live)script\s*:|^\s*data\s*:\s*(?:text/html|image/svg|application/(?:x-)?javascript)"
)
_JS_SINK = re.compile(
    r"\b(?:alert|prompt|confirm|eval|settimeout|setinterval|fetch|import)\s*[(`]"
    r"|document\s*\.\s*(?:cookie|domain|write|location)|window\s*\.\s*location"
    r"|string\s*\.\s*fromcharcode|\batob\s*\(|\bconstructor\s*\("
)


def xss(value: str) -> bool:
    """Whether `value` carries markup or script that would run in a browser."""
    try:
        s = value[:_MAX_INPUT].lower()
        if _looks_binary(s):
            return False
        for m in _TAG_RE.finditer(s):
            closing, name, rest = m.group(1), m.group(2), m.group(3)
            if name in _BAD_TAGS and not (name in ("svg", "math") and "on" not in rest):
                return True
            if closing:
                continue
            for a in _ATTR_RE.finditer(rest):
                attr = a.group(1)
                val = (a.group(2) or "").strip("\"'`")
                if (
                    attr.startswith("on")
                    and len(attr) > 4
                    and a.group(2) is not None
                    and val
                    and not val.startswith("{")
                ):
                    return True
                if attr in _URL_ATTRS and _SCRIPT_URL.search(val):
                    return True
                if attr == "style" and re.search(r"expression\s*\(|javascript:|behavior\s*:", val):
                    return True
        return bool(_SCRIPT_URL.search(s) and _JS_SINK.search(s))
    except Exception:
        return False


DETECTORS: Mapping[str, Detector] = MappingProxyType(
    {
        "sqli": Detector("sqli", _SQL_PREFILTER, sqli),
        "xss": Detector("xss", r"<\s*/?\s*[a-z]|(?:java|vb)script\s*:", xss),
    }
)
