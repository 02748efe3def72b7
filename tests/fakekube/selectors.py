"""Kubernetes label and field selectors, parsed into predicates."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

LabelPredicate = Callable[[Mapping[str, str]], bool]

_SET_TERM = re.compile(r"^\s*(!?)([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)([^\s!=(),]+)\s*$")


class SelectorError(ValueError):
    """A selector that does not parse (the API answers 400 BadRequest)."""


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> LabelPredicate:
    if match := _SET_TERM.match(term):
        negated, key, op, values_text = match.groups()
        if negated:
            raise SelectorError(f"unable to parse requirement: {term!r}")
        values = {v.strip() for v in values_text.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {term!r}")


def label_selector(text: str | None) -> LabelPredicate:
    """A predicate over labels for ``text`` (equality, ``!=``, ``in``, ``notin``, exists, ``!``)."""
    if not text:
        return lambda labels: True
    terms = [_label_term(t) for t in _split_terms(text)]
    return lambda labels: all(term(labels) for term in terms)


_FIELDS = {
    "metadata.name": lambda obj: obj["metadata"].get("name"),
    "metadata.namespace": lambda obj: obj["metadata"].get("namespace", ""),
}


def _field_check(
    getter: Callable[[dict[str, Any]], Any], value: str, negated: bool, obj: dict[str, Any]
) -> bool:
    return bool(getter(obj) != value) if negated else bool(getter(obj) == value)


def field_selector(text: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over objects for ``metadata.name`` / ``metadata.namespace`` selectors."""
    if not text:
        return lambda obj: True
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for term in _split_terms(text):
        match = _EQ_TERM.match(term)
        if not match or match.group(1) not in _FIELDS:
            raise SelectorError(f"field label not supported: {term.strip()!r}")
        field, op, value = match.groups()
        getter = _FIELDS[field]
        checks.append(functools.partial(_field_check, getter, value, op == "!="))
    return lambda obj: all(check(obj) for check in checks)
