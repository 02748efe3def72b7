"""The chart's values as the helm CLI builds them: files, then each --set kind parsed into them.

Helm's ``values.Options.MergeValues`` order: ``-f`` files (merged), then ``--set-json``,
``--set``, ``--set-string``, ``--set-file`` and ``--set-literal``, each expression parsed into
the values built so far (``strvals.ParseInto``), so ``--set items[1]=c`` over a file's
``items: [a, b]`` gives ``[a, c]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy.errors import InputError

Values = dict[str, Any]


@dataclass(frozen=True)
class ValueFlags:
    """Helm's value flags as given on the command line."""

    files: tuple[str, ...] = ()
    set: tuple[str, ...] = ()
    set_string: tuple[str, ...] = ()
    set_file: tuple[str, ...] = ()
    set_json: tuple[str, ...] = ()
    set_literal: tuple[str, ...] = ()

    @property
    def given(self) -> bool:
        """Whether any value flag was given."""
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def one_line(text: str) -> str:
    """Helm's multi-line error text on one line."""
    return "; ".join(line.strip(" -") for line in str(text).splitlines() if line.strip(" -"))


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> Values:
    """Helm's ``mergeMaps``: nested mappings merge, anything else in ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_values(current, value)
        else:
            merged[key] = value
    return merged


def _parsed_into(base: Any, parsed: Any) -> Any:
    """``parsed`` (one expression, alone) set into ``base`` as ``strvals.ParseInto`` sets it.

    Mappings merge; a list index the expression names replaces that element and keeps the
    others (strvals pads the indexes it skips with null, which here means "not set").
    """
    if isinstance(base, Mapping) and isinstance(parsed, Mapping):
        merged = dict(base)
        for key, value in parsed.items():
            merged[key] = _parsed_into(merged.get(key), value)
        return merged
    if isinstance(base, list) and isinstance(parsed, list):
        out = list(base) + [None] * max(0, len(parsed) - len(base))
        for index, value in enumerate(parsed):
            if value is not None:
                out[index] = _parsed_into(out[index], value)
        return out
    return parsed


def _read(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise InputError(f"--values {file}: cannot read: {reason}") from None


def user_values(helm: ModuleType, flags: ValueFlags) -> Values:
    """The user's values, in Helm's order and with Helm's own parsers."""
    values: Values = {}
    for file in flags.files:
        try:
            values = merge_values(values, helm.values_from_yaml(_read(file)) or {})
        except helm.HelmError as exc:
            raise InputError(f"--values {file}: {one_line(str(exc))}") from None
    kinds: tuple[tuple[str, Callable[[str], Values], tuple[str, ...]], ...] = (
        ("--set-json", helm.parse_set_json, flags.set_json),
        ("--set", helm.parse_set_string, flags.set),
        ("--set-string", helm.parse_set_string_values, flags.set_string),
        ("--set-file", helm.parse_set_file, flags.set_file),
        ("--set-literal", helm.parse_set_literal, flags.set_literal),
    )
    for flag, parse, expressions in kinds:
        for expression in expressions:
            try:
                values = _parsed_into(values, parse(expression))
            except helm.HelmError as exc:
                raise InputError(f"{flag} {expression}: {one_line(str(exc))}") from None
    return values


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# Chart values only deploy's own flags set: the registry login among them, which deploy turns
# into the labelled Secret (a login given as a value would leave the pull secrets dangling).
OWNED_KEYS = frozenset(
    {
        "registry.server",
        "registry.imageTag",
        "registry.disablePublicImages",
        "registry.username",
        "registry.password",
        "registry.key",
        "environment",
    }
)


def check_ours_kept(user: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    """A user value for a key meshlift sets (:data:`OWNED_KEYS`), unless it is the value
    meshlift sets anyway, is an InputError."""
    mine = flatten(ours)
    for key, value in flatten(user).items():
        owned = key in mine or key in OWNED_KEYS
        if owned and value != mine.get(key):  # neither value shown: one may be a password
            raise InputError(
                f"the chart values set {key}, which meshlift sets: use deploy's own flags"
                " (--registry-server, --image-tag, --disable-public-images, --environment,"
                " --registry-username/--registry-password-stdin/--registry-key)"
            )
