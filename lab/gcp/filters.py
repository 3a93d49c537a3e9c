"""The `filter` query parameter of Compute Engine list calls, parsed once and applied per resource.

Supported grammar (a subset of Compute Engine's):

- a comparison `FIELD OP VALUE`; FIELD is a dotted path into the resource JSON
  (`name`, `status`, `labels.gameday`, `tags.items`, `networkInterfaces.network`, `priority`);
  a path through a list matches when any element matches;
- OP is `=` / `!=` (exact string match, `*` is a wildcard), `:` (substring; `:*` means the
  field is present), `eq` / `ne` (the value is a regular expression matching the whole field),
  `<`, `<=`, `>`, `>=` (numeric when both sides are numbers, string order otherwise);
- VALUE is a bare word or a single- or double-quoted string; booleans compare as `true`/`false`;
- comparisons may be parenthesised and joined by whitespace or `AND` (conjunction) or `OR`;
  as in Compute Engine, `OR` binds tighter than `AND`; `NOT` negates the term after it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_FIELD = re.compile(r"[A-Za-z_][\w.-]*")
_OP = re.compile(r"(!=|<=|>=|=|<|>|:|eq(?=[\s'\"])|ne(?=[\s'\"]))")


class FilterError(ValueError):
    """The filter text cannot be parsed."""


def compile_filter(text: str | None) -> Predicate:
    """A predicate for `text`; an empty filter matches everything."""
    if not text or not text.strip():
        return _always
    parser = _Parser(text)
    predicate = parser.expression()
    parser.skip_space()
    if not parser.at_end():
        raise FilterError(f"unexpected text at {parser.pos}: {text[parser.pos:]!r}")
    return predicate


def _always(_: dict[str, Any]) -> bool:
    return True


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

    def expression(self) -> Predicate:
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
        if self.keyword("NOT"):
            inner = self.term()
            return lambda item: not inner(item)
        if self.text.startswith("(", self.pos):
            self.pos += 1
            inner = self.expression()
            self.skip_space()
            if not self.text.startswith(")", self.pos):
                raise FilterError(f"missing ')' at {self.pos}")
            self.pos += 1
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        field = _FIELD.match(self.text, self.pos)
        if not field:
            raise FilterError(f"expected a field name at {self.pos}")
        self.pos = field.end()
        self.skip_space()
        op = _OP.match(self.text, self.pos)
        if not op:
            raise FilterError(f"expected an operator after {field.group()!r}")
        self.pos = op.end()
        self.skip_space()
        value = self.value()
        return _comparison(field.group().split("."), op.group(), value)

    def value(self) -> str:
        if self.at_end():
            raise FilterError("missing value")
        quote = self.text[self.pos]
        if quote in "'\"":
            end = self.pos + 1
            chars: list[str] = []
            while end < len(self.text) and self.text[end] != quote:
                if self.text[end] == "\\" and end + 1 < len(self.text):
                    end += 1
                chars.append(self.text[end])
                end += 1
            if end >= len(self.text):
                raise FilterError("unterminated quoted value")
            self.pos = end + 1
            return "".join(chars)
        start = self.pos
        while not self.at_end() and not self.text[self.pos].isspace() \
                and self.text[self.pos] != ")":
            self.pos += 1
        return self.text[start:self.pos]


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


def _comparison(path: list[str], op: str, value: str) -> Predicate:
    test: Callable[[str], bool]
    if op in ("=", "!="):
        test = _glob(value) if "*" in value else value.__eq__
    elif op == ":":
        if value == "*":
            return lambda item: any(True for _ in _leaves(item, path))
        test = lambda text: value in text  # noqa: E731
    elif op in ("eq", "ne"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise FilterError(f"bad regular expression {value!r}: {exc}") from exc
        test = lambda text: pattern.fullmatch(text) is not None  # noqa: E731
    else:
        test = _ordering(op, value)
    negate = op in ("!=", "ne")

    def predicate(item: dict[str, Any]) -> bool:
        found = any(test(_text(leaf)) for leaf in _leaves(item, path))
        return not found if negate else found

    return predicate


def _glob(pattern: str) -> Callable[[str], bool]:
    return lambda text: fnmatch.fnmatchcase(text, pattern)


def _ordering(op: str, value: str) -> Callable[[str], bool]:
    compare: Callable[[Any, Any], bool] = {
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }[op]
    number = _number(value)

    def test(text: str) -> bool:
        mine = _number(text)
        if number is not None and mine is not None:
            return compare(mine, number)
        return compare(text, value)

    return test
