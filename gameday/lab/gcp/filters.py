"""The `filter` query parameter of Compute Engine list calls, parsed once and applied per resource.

The grammar is Compute Engine's documented one (the `filter` field of every `list` and
`aggregatedList` request):

    filter      = conjunction
    conjunction = disjunction { ["AND"] disjunction }      juxtaposition means AND
    disjunction = term { "OR" term }                       OR binds tighter than AND
    term        = ("NOT" | "-") term | "(" conjunction ")" | comparison
    comparison  = FIELD OP VALUE

- FIELD is a dotted path into the resource JSON (`name`, `status`, `labels.env`, `tags.items`,
  `networkInterfaces.network`, `scheduling.automaticRestart`); a path through a list matches
  when any element matches.
- `=` / `!=`: equality (numbers numerically, booleans as `true`/`false` in any case, `*` in the
  value is a wildcard); `!=` also holds when the field is absent.
- `:` (has): `FIELD:*` holds when the field is present; on a map it tests a key
  (`labels:env`), on a string a substring, on a list any element.
- `<`, `<=`, `>`, `>=`: numeric when both sides are numbers, string order otherwise.
- `eq` / `ne`: the value is an RE2 regular expression that must match the whole field (Compute
  anchors it); `ne` also holds when the field is absent. RE2 is served by Python's `re` in ASCII
  mode, with RE2's `\\z`, `\\Q...\\E` and `[[:alpha:]]`-style classes translated.
- VALUE is a bare word (which may hold balanced parentheses, as in `name eq (web|api)-.*`) or a
  single- or double-quoted string. Inside quotes a backslash is part of the text: gcloud sends
  `name eq ".*\\bweb\\-1\\b.*"` and means the regex `.*\\bweb\\-1\\b.*`; only `\\"` (`\\'`) keeps the
  quote from ending the string. For `=`, `!=` and `:` a backslash escapes the next character.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_FIELD = re.compile(r"[A-Za-z_][\w.-]*")
_OP = re.compile(r"!=|<=|>=|=|<|>|:|(?:eq|ne)(?=[\s'\"(]|$)")
_KEYWORDS = ("AND", "OR", "NOT")
_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}


class FilterError(ValueError):
    """The filter text cannot be parsed."""


def compile_filter(text: str | None) -> Predicate:
    """A predicate for `text`; an empty filter matches everything."""
    if not text or not text.strip():
        return _always
    parser = _Parser(text)
    predicate = parser.conjunction()
    parser.skip_space()
    if not parser.at_end():
        raise FilterError(f"unexpected text at {parser.pos}: {text[parser.pos:]!r}")
    return predicate


def _always(_: dict[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class _Value:
    text: str
    quoted: bool


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_space(self) -> None:
        while not self.at_end() and self.text[self.pos].isspace():
            self.pos += 1

    def keyword(self, word: str) -> bool:
        self.skip_space()
        end = self.pos + len(word)
        if self.text[self.pos:end] == word and (end == len(self.text) or
                                                self.text[end].isspace() or self.text[end] == "("):
            self.pos = end
            return True
        return False

    def term_follows(self) -> bool:
        self.skip_space()
        return not self.at_end() and self.text[self.pos] != ")"

    def conjunction(self) -> Predicate:
        terms = [self.disjunction()]
        while True:
            explicit = self.keyword("AND")
            if not explicit and not self.term_follows():
                break
            terms.append(self.disjunction())
        if len(terms) == 1:
            return terms[0]
        return lambda item: all(term(item) for term in terms)

    def disjunction(self) -> Predicate:
        terms = [self.term()]
        while self.keyword("OR"):
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        return lambda item: any(term(item) for term in terms)

    def term(self) -> Predicate:
        self.skip_space()
        if self.at_end():
            raise FilterError("expected a comparison at the end of the filter")
        if self.keyword("NOT") or self._minus():
            inner = self.term()
            return lambda item: not inner(item)
        if self.text.startswith("(", self.pos):
            self.pos += 1
            inner = self.conjunction()
            self.skip_space()
            if not self.text.startswith(")", self.pos):
                raise FilterError(f"missing ')' at {self.pos}")
            self.pos += 1
            return inner
        return self.comparison()

    def _minus(self) -> bool:
        """AIP-160's `-FIELD...` negation (a `-` right before a field name)."""
        if self.text.startswith("-", self.pos) and _FIELD.match(self.text, self.pos + 1):
            self.pos += 1
            return True
        return False

    def comparison(self) -> Predicate:
        field = _FIELD.match(self.text, self.pos)
        if not field or field.group() in _KEYWORDS:
            raise FilterError(f"expected a field name at {self.pos}")
        self.pos = field.end()
        self.skip_space()
        op = _OP.match(self.text, self.pos)
        if not op:
            raise FilterError(f"expected an operator after {field.group()!r}")
        self.pos = op.end()
        self.skip_space()
        return _comparison(field.group().split("."), op.group(), self.value())

    def value(self) -> _Value:
        if self.at_end() or self.text[self.pos] == ")":
            raise FilterError(f"missing value at {self.pos}")
        quote = self.text[self.pos]
        if quote in "'\"":
            end = self.pos + 1
            while end < len(self.text) and self.text[end] != quote:
                end += 2 if self.text[end] == "\\" else 1
            if end >= len(self.text):
                raise FilterError("unterminated quoted value")
            raw = self.text[self.pos + 1:end]
            self.pos = end + 1
            return _Value(raw, quoted=True)
        start, depth = self.pos, 0
        while not self.at_end():
            char = self.text[self.pos]
            if char.isspace() and depth == 0:
                break
            if char == "\\":
                self.pos += 2
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            self.pos += 1
        self.pos = min(self.pos, len(self.text))
        return _Value(self.text[start:self.pos], quoted=False)


def _leaves(value: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(value, list):
        for element in value:
            yield from _leaves(element, path)
        return
    if not path:
        yield value
        return
    if isinstance(value, dict) and path[0] in value:
        yield from _leaves(value[path[0]], path[1:])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _unescape(text: str) -> str:
    """A literal's text with `\\X` read as `X` (for the non-regex operators)."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _comparison(path: list[str], op: str, value: _Value) -> Predicate:
    test: Callable[[Any], bool]
    if op in ("eq", "ne"):
        pattern = re2(value.text)
        test = lambda leaf: pattern.fullmatch(_text(leaf)) is not None  # noqa: E731
    elif op in ("=", "!="):
        test = _equals(_unescape(value.text))
    elif op == ":":
        wanted = _unescape(value.text)
        if wanted == "*" and not value.quoted:
            return lambda item: any(True for _ in _leaves(item, path))
        test = lambda leaf: wanted in leaf if isinstance(leaf, dict) else wanted in _text(leaf)  # noqa: E731
    else:
        test = _ordering(op, _unescape(value.text))
    negate = op in ("!=", "ne")

    def predicate(item: dict[str, Any]) -> bool:
        found = any(test(leaf) for leaf in _leaves(item, path))
        return not found if negate else found

    return predicate


def _equals(wanted: str) -> Callable[[Any], bool]:
    number = _number(wanted)
    wildcard = re.compile(".*".join(re.escape(part) for part in wanted.split("*")), re.DOTALL)

    def test(leaf: Any) -> bool:
        if isinstance(leaf, bool):
            return wanted.lower() == _text(leaf)
        if isinstance(leaf, int | float) and number is not None:
            return float(leaf) == number
        text = _text(leaf)
        return wildcard.fullmatch(text) is not None

    return test


def _ordering(op: str, value: str) -> Callable[[Any], bool]:
    compare: Callable[[Any, Any], bool] = {
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }[op]
    number = _number(value)

    def test(leaf: Any) -> bool:
        text = _text(leaf)
        mine = _number(text)
        if number is not None and mine is not None:
            return compare(mine, number)
        return compare(text, value)

    return test


def re2(pattern: str) -> re.Pattern[str]:
    """`pattern`, in RE2 syntax, compiled with Python's `re` (ASCII classes, as RE2 has)."""
    try:
        return re.compile(_python_regex(pattern), re.ASCII)
    except (re.error, ValueError) as exc:
        raise FilterError(f"bad regular expression {pattern!r}: {exc}") from exc


def _python_regex(pattern: str) -> str:
    """RE2's spellings that Python's `re` lacks, rewritten: `\\Q...\\E`, `\\z`, `[:class:]`."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        if pattern.startswith("\\Q", index):
            end = pattern.find("\\E", index + 2)
            end = len(pattern) if end < 0 else end
            out.append(re.escape(pattern[index + 2:end]))
            index = end + 2
        elif pattern.startswith("\\z", index):
            out.append("\\Z")
            index += 2
        elif pattern.startswith("\\", index):
            out.append(pattern[index:index + 2])
            index += 2
        elif in_class and pattern.startswith("[:", index) and (found := re.match(
                r"\[:(\^?)([a-z]+):\]", pattern[index:])) and found.group(2) in _POSIX_CLASSES:
            if found.group(1):
                raise ValueError(f"negated class {found.group()} is not supported")
            out.append(_POSIX_CLASSES[found.group(2)])
            index += found.end()
        else:
            if pattern[index] == "[" and not in_class:
                in_class = True
                out.append(pattern[index])
                index += 1
                if pattern.startswith("^", index):
                    out.append("^")
                    index += 1
                if pattern.startswith("]", index):  # a leading ] is a literal member
                    out.append("\\]")
                    index += 1
                continue
            if pattern[index] == "]" and in_class:
                in_class = False
            out.append("\\[" if in_class and pattern[index] == "[" else pattern[index])
            index += 1
    return "".join(out)
