"""Read runbook files: YAML with line numbers in, a `Runbook` or a list of located problems out.

Whatever a file holds (nothing, not YAML, a list, duplicated keys, wrong types, an alias bomb,
deep nesting, megabytes), the caller gets either a valid runbook or `Problem`s that print as
`FILE:LINE: field.path: message`, never an exception from the parser, in well under a second:
the size is limited before parsing, and nesting depth, aliases and expanded values are counted
on the parser's events as they are read, before any Python object is built. String values may
use `${VAR}` and `${VAR:-default}` (contract §9); they are filled in here, from the environment
of the process that reads the file, on the YAML nodes (so every problem keeps its line), never in
the workflow.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.parser import RoundTripParser

from gameday.errors import UserError
from gameday.runbook import SLUG, Runbook

MAX_BYTES = 1 << 20
"""A runbook is a few kilobytes; a larger file is refused before it is parsed."""
MAX_DEPTH = 64
"""Nested mappings and lists; a runbook needs about eight."""
MAX_ALIASES = 100
"""`*name` references."""
MAX_NODES = 5_000
"""Values after every alias is expanded: what an alias bomb multiplies."""
MAX_NUMBER = 1000
"""Characters of an unquoted number (int() of thousands of digits is slow, then refused)."""

_TAGS = {"step", "parallel", "blackhole_zone", "blackhole_region", "evacuate_region",
         "stop_instances", "deny_capacity", "failover_database", "partition_regions", "evacuate_zone",
         "wait", "aws", "gcp", "azure"}
_FLOW_DEEP = re.compile(r"(?:[\[{][^\[\]{}\n]{0,64}){" + str(MAX_DEPTH + 1) + "}")
"""A line opening more flow collections than MAX_DEPTH: refused without parsing, because ruamel's
scanner takes seconds over a long line of unclosed brackets before the depth is ever counted."""
_NUMBER = re.compile(r"[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9_.]+([eE][-+]?[0-9]+)?)")
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class RunbookInvalid(UserError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_runbook(path: str | Path, env: Mapping[str, str] | None = None) -> Runbook:
    """The valid runbook in `path`, or RunbookInvalid listing every problem."""
    runbook, problems = check_runbook(path, env)
    if runbook is None:
        raise RunbookInvalid(problems)
    return runbook


def check_runbook(path: str | Path, env: Mapping[str, str] | None = None,
                  ) -> tuple[Runbook | None, list[Problem]]:
    """The runbook in `path` with `${VAR}` taken from `env` (default: this process's environment)."""
    name = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None, [Problem(name, 0, "file", "no such file")]
    except OSError as exc:
        return None, [Problem(name, 0, "file", f"cannot be read: {exc.strerror or exc}")]
    if len(data) > MAX_BYTES:
        return None, [Problem(name, 0, "file", _TOO_BIG)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(name, 0, "file", f"cannot be read: it is not UTF-8 text ({exc.reason} "
                              f"at byte {exc.start})")]
    return parse_runbook(text, name, env)


_TOO_BIG = f"is larger than {MAX_BYTES // 1024} KiB; a runbook is a few kilobytes of YAML"


def parse_runbook(text: str, name: str = "<runbook>", env: Mapping[str, str] | None = None,
                  ) -> tuple[Runbook | None, list[Problem]]:
    """The runbook in `text`, or every problem with it, each located in `name`."""
    if len(text) > MAX_BYTES:
        return None, [Problem(name, 0, "file", _TOO_BIG)]
    deep = _FLOW_DEEP.search(text)
    if deep is not None:
        line = text.count("\n", 0, deep.start()) + 1
        return None, [Problem(name, line, "yaml", f"nested more than {MAX_DEPTH} levels deep")]
    yaml = YAML(typ="rt")
    yaml.Parser = _BoundedParser
    yaml.allow_duplicate_keys = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel warns of a reused anchor; the later one counts
            document = yaml.load(text)
    except _Refused as refused:
        return None, [Problem(name, refused.line, "yaml", refused.message)]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return None, [Problem(name, line, "yaml", _yaml_message(exc))]
    except YAMLError as exc:
        return None, [Problem(name, 1, "yaml", _one_line(str(exc)))]
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar ruamel cannot construct
        return None, [Problem(name, 1, "yaml", f"a value cannot be read: {_one_line(str(exc))}")]
    if document is None:
        return None, [Problem(name, 1, "runbook", "the file is empty")]
    if not isinstance(document, CommentedMap):
        kind = "a list" if isinstance(document, CommentedSeq) else f"a {type(document).__name__}"
        return None, [Problem(name, 1, "runbook", f"a runbook is a mapping of fields, not {kind}")]
    substituted = _substitute(name, document, os.environ if env is None else env)
    try:
        runbook = Runbook.model_validate(_plain(document))
    except ValidationError as exc:
        problems = [_locate(name, document, error) for error in exc.errors()]
    else:
        if not substituted:
            return runbook, []
        problems = []
    unfilled = {p.field for p in substituted}
    problems = substituted + [p for p in problems if p.field not in unfilled]
    return None, sorted(problems, key=lambda p: p.line)


def _one_line(text: str) -> str:
    return (text.strip().splitlines() or ["not valid YAML"])[0]


class _Refused(Exception):
    """Raised from inside the parser when the document passes a limit."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class _BoundedParser(RoundTripParser):
    """ruamel's parser, counting each event as the composer takes it: depth, aliases and values
    (each alias counts as everything it stands for) are refused before the composer recurses or
    anything is built."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._depth = self._aliases = self._expanded = 0
        self._sizes: dict[str, int] = {}
        self._open: list[tuple[int, str | None]] = []

    def get_event(self) -> Any:
        event = super().get_event()
        line = event.start_mark.line + 1 if getattr(event, "start_mark", None) else 1
        if isinstance(event, NodeEvent) and getattr(event, "tag", None) is not None:
            # ruamel's constructors for explicit tags fail in odd ways on odd input; none is needed
            raise _Refused(line, "a runbook uses no YAML tags (like !!int or !name)")
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(line, f"more than {MAX_ALIASES} aliases (*name); write the values out")
            self._expanded += self._sizes.get(event.anchor, 1)
        elif isinstance(event, CollectionStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
            self._open.append((self._expanded, event.anchor))
            self._expanded += 1
        elif isinstance(event, CollectionEndEvent) and self._open:
            self._depth -= 1
            start, anchor = self._open.pop()
            if anchor is not None:
                self._sizes[anchor] = self._expanded - start
        elif isinstance(event, ScalarEvent):
            if event.style is None and len(event.value) > MAX_NUMBER and _NUMBER.fullmatch(event.value):
                raise _Refused(line, f"a number of more than {MAX_NUMBER} digits")
            self._expanded += 1
            if event.anchor is not None:
                self._sizes[event.anchor] = 1
        if self._expanded > MAX_NODES:
            raise _Refused(line, f"more than {MAX_NODES} values once aliases are expanded; a "
                           "runbook needs a few hundred")
        return event


def _yaml_message(exc: MarkedYAMLError) -> str:
    problem = _one_line(exc.problem or exc.context or "not valid YAML")
    if "duplicate key" in problem:
        return problem.split(" with value")[0] + " (each key may appear once)"
    return f"not valid YAML: {problem}"


# --- ${VAR} ------------------------------------------------------------------------------------


def _substitute(name: str, document: CommentedMap, env: Mapping[str, str]) -> list[Problem]:
    """Fill in `${VAR}`, `${VAR:-default}` and `$${` in every string value, in place.

    A node reached twice through an alias is filled in once. Returns a problem per variable that
    is unset without a default and per malformed `${`."""
    problems: list[Problem] = []
    done: set[int] = set()

    def fill(text: str, line: int, path: str) -> str:
        def one(match: re.Match[str]) -> str:
            whole, variable, default = match.group(0), match.group(1), match.group(2)
            if whole == "$${":
                return "${"
            if variable is None:
                problems.append(Problem(name, line, path, "a ${ that is not ${VAR} or ${VAR:-default}"
                                        " (write $${ for a literal ${)"))
                return whole
            value = env.get(variable)
            if default is not None and not value:
                return default
            if value is None:
                problems.append(Problem(name, line, path, f"${{{variable}}} is not set (give it a "
                                        f"value or write ${{{variable}:-default}})"))
                return whole
            return value

        return _REFERENCE.sub(one, text)

    def walk(node: Any, line: int, path: str) -> None:
        if id(node) in done:
            return
        done.add(id(node))
        if isinstance(node, CommentedMap):
            for key, value in list(node.items()):
                here = _key_line(node, key, line)
                where = f"{path}.{key}" if path else str(key)
                if isinstance(value, str):
                    if "${" in value:
                        node[key] = fill(value, here, where)
                else:
                    walk(value, here, where)
        elif isinstance(node, CommentedSeq):
            for index, value in enumerate(node):
                here = _item_line(node, index, line)
                where = f"{path}[{index}]"
                if isinstance(value, str):
                    if "${" in value:
                        node[index] = fill(value, here, where)
                else:
                    walk(value, here, where)

    walk(document, document.lc.line + 1, "")
    return problems


# --- locating validation errors ----------------------------------------------------------------


def _key_line(node: CommentedMap, key: Any, default: int) -> int:
    """The line of `key` in `node`; keys merged in with `<<:` have none of their own."""
    try:
        return node.lc.key(key)[0] + 1
    except (KeyError, TypeError, AttributeError):
        return default


def _item_line(node: CommentedSeq, index: int, default: int) -> int:
    try:
        return node.lc.item(index)[0] + 1
    except (KeyError, TypeError, AttributeError):
        return default


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _locate(name: str, document: CommentedMap, error: Any) -> Problem:
    """Follow the error's location through the YAML nodes: the deepest one found gives the line."""
    node: Any = document
    line = document.lc.line + 1
    path: list[str] = []
    for part in error["loc"]:
        if isinstance(node, CommentedMap) and part in node:
            line = _key_line(node, part, line)
            path.append(str(part))
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = _item_line(node, part, line)
            path[-1:] = [f"{path[-1]}[{part}]"] if path else [f"[{part}]"]
            node = node[part]
        elif isinstance(part, str) and part in _TAGS:
            continue
        else:
            path.append(str(part))
            node = None
    message = _one_line(error["msg"].removeprefix("Value error, "))
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        message = _tag_message(error)
        key = (error.get("ctx") or {}).get("discriminator", "").strip("'")
        if isinstance(node, CommentedMap) and key in node:
            line = _key_line(node, key, line)
            path.append(key)
    elif error["type"] == "string_pattern_mismatch":
        message = _PATTERNS.get(error["ctx"]["pattern"], message)
    return Problem(name, line, ".".join(path) or "runbook", message)


_PATTERNS = {
    SLUG: "use lowercase letters, digits and '-' only (at most 63 characters)",
    r"^\d{12}$": "an AWS account id is 12 digits",
}


def _tag_message(error: Any) -> str:
    context = error.get("ctx") or {}
    expected = context.get("expected_tags", "")
    field = context.get("discriminator", "").strip("'") or "kind"
    tag = context.get("tag")
    if field == "cloud":
        return f"cloud must be one of {expected}" + (f", not {tag!r}" if tag else "")
    if field == "action":
        return f"action must be one of {expected}" + (f", not {tag!r}" if tag else "")
    return _one_line(error["msg"])
