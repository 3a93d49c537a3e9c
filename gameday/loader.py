"""Read runbook files: YAML with line numbers in, a `Runbook` or a list of located problems out.

Whatever a file holds (nothing, not YAML, a list, duplicated keys, wrong types), the caller gets
either a valid runbook or `Problem`s that print as `FILE:LINE: field.path: message`, never an
exception from the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gameday.errors import UserError
from gameday.runbook import SLUG, Runbook

_TAGS = {"step", "parallel", "blackhole_zone", "blackhole_region", "evacuate_region", "wait",
         "aws", "gcp", "azure"}


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


def load_runbook(path: str | Path) -> Runbook:
    """The valid runbook in `path`, or RunbookInvalid listing every problem."""
    runbook, problems = check_runbook(path)
    if runbook is None:
        raise RunbookInvalid(problems)
    return runbook


def check_runbook(path: str | Path) -> tuple[Runbook | None, list[Problem]]:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(name, 0, "file", "no such file")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(name, 0, "file", f"cannot be read: {exc}")]
    return parse_runbook(text, name)


def parse_runbook(text: str, name: str = "<runbook>") -> tuple[Runbook | None, list[Problem]]:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return None, [Problem(name, line, "yaml", _yaml_message(exc))]
    except YAMLError as exc:
        return None, [Problem(name, 1, "yaml", str(exc).splitlines()[0])]
    if document is None:
        return None, [Problem(name, 1, "runbook", "the file is empty")]
    if not isinstance(document, CommentedMap):
        kind = "a list" if isinstance(document, CommentedSeq) else f"a {type(document).__name__}"
        return None, [Problem(name, 1, "runbook", f"a runbook is a mapping of fields, not {kind}")]
    try:
        return Runbook.model_validate(_plain(document)), []
    except ValidationError as exc:
        problems = [_locate(name, document, error) for error in exc.errors()]
        return None, sorted(problems, key=lambda p: p.line)


def _yaml_message(exc: MarkedYAMLError) -> str:
    problem = (exc.problem or exc.context or "not valid YAML").strip()
    if "duplicate key" in problem:
        return problem.split(" with value")[0] + " (each key may appear once)"
    return f"not valid YAML: {problem}"


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
            line = node.lc.key(part)[0] + 1
            path.append(str(part))
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            path[-1:] = [f"{path[-1]}[{part}]"] if path else [f"[{part}]"]
            node = node[part]
        elif isinstance(part, str) and part in _TAGS:
            continue
        else:
            path.append(str(part))
            node = None
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        message = _tag_message(error)
        key = (error.get("ctx") or {}).get("discriminator", "").strip("'")
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            path.append(key)
    elif error["type"] == "string_pattern_mismatch":
        message = _PATTERNS.get(error["ctx"]["pattern"], message)
    field = ".".join(path) or "runbook"
    duplicate = re.match(r"step id '([^']+)' is used more than once", message)
    if duplicate:
        line, field = _second_use(document, duplicate.group(1)) or (line, field)
    return Problem(name, line, field, message)


_PATTERNS = {
    SLUG: "use lowercase letters, digits and '-' only (at most 63 characters)",
    r"^\d{12}$": "an AWS account id is 12 digits",
}


def _second_use(document: CommentedMap, step_id: str) -> tuple[int, str] | None:
    """Line and path of the second step that uses `step_id`."""
    seen = 0
    steps = document.get("steps")
    for index, item in enumerate(steps if isinstance(steps, CommentedSeq) else []):
        group = item.get("parallel") if isinstance(item, CommentedMap) else None
        members = (
            [(f"steps[{index}].parallel[{i}]", m) for i, m in enumerate(group)]
            if isinstance(group, CommentedSeq)
            else [(f"steps[{index}]", item)]
        )
        for path, step in members:
            if isinstance(step, CommentedMap) and step.get("id") == step_id:
                seen += 1
                if seen == 2:
                    return step.lc.key("id")[0] + 1, f"{path}.id"
    return None


def _tag_message(error: Any) -> str:
    context = error.get("ctx") or {}
    expected = context.get("expected_tags", "")
    field = context.get("discriminator", "").strip("'") or "kind"
    tag = context.get("tag")
    if field == "cloud":
        return f"cloud must be one of {expected}" + (f", not {tag!r}" if tag else "")
    if field == "action":
        return f"action must be one of {expected}" + (f", not {tag!r}" if tag else "")
    return error["msg"]
