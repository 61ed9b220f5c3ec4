"""Where a point's text comes from: a dotted payload path or a template over the payload."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .errors import ConfigError
from .wording import shortened

__all__ = ["BLANK_TEXT", "DEFAULT_TEXT_FIELD", "lookup", "NOT_UNICODE", "payload_keys",
           "refuse_no_text", "TextSource", "unfilled_warning"]

DEFAULT_TEXT_FIELD = "text"
# A blank text_field (an unset shell variable, say) would read as "not given", and the
# default field be embedded instead, silently.
BLANK_TEXT = ("names no text; give a payload path such as metadata.content (text_field) or "
              "a template such as '{title}\\n\\n{text}' (text_template), or leave it out")
NOT_UNICODE = "text is not valid Unicode"  # the start of such a text's reason
# a placeholder, or a doubled brace: a literal one, as in Python's str.format
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]+)\}")
# what may follow a placeholder's last ':', as in `{price:.2f}`: Python's format spec
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?\d*[,_]?(?:\.\d+)?[bcdeEfFgGnosxX%]?")
_MISSING = object()
_INDEX = re.compile(r"\[(\d+)\]")  # `chunks[0]`, read as `chunks.0`


@dataclass(frozen=True)
class TextSource:
    """Extracts the text to embed from a payload.

    `field` is a dotted path (`metadata.content`, `chunks.0.text` or `chunks[0].text`);
    `template` fills `{dotted.path}` placeholders (`"{title}\\n\\n{text}"`), each with an
    optional format spec as in Python's str.format (`{price:.2f}`); `{{` and `}}` are
    literal braces. A template's missing fields render empty; the text is missing only when
    the whole result is blank.
    """

    field: str | None = None
    template: str | None = None

    @classmethod
    def from_settings(cls, field: str | None, template: str | None) -> TextSource:
        if template is not None:
            if not any(isinstance(part, tuple) for part in _parse(template)):
                raise ConfigError(
                    f"text_template {template!r} has no {{field}} placeholder; write for "
                    "example '{title}\\n\\n{text}'."
                )
            return cls(template=template)
        if field is not None and not field.strip():
            raise ConfigError(f"text_field {field!r} {BLANK_TEXT}.")
        return cls(field=field or DEFAULT_TEXT_FIELD)

    def describe(self) -> str:
        return f"template {self.template!r}" if self.template else f"field {self.field!r}"

    @property
    def fields(self) -> list[str]:
        """The template's placeholders, in order ([] for a field)."""
        return list(dict.fromkeys(part[0] for part in self._parts if isinstance(part, tuple)))

    @cached_property
    def _parts(self) -> list[str | tuple[str, str]]:
        return _parse(self.template) if self.template is not None else []

    def filled(self, payload: dict[str, Any]) -> set[str]:
        """The template's fields that `payload` has."""
        return {f for f in self.fields if lookup(payload, f) is not _MISSING}

    def unfilled(self, payloads: Iterable[dict[str, Any]]) -> list[str]:
        """The template's fields that none of `payloads` has: each renders empty in every
        text, which is what a mistyped field does."""
        found = {f for payload in payloads for f in self.filled(payload)}
        return [f for f in self.fields if f not in found]

    def unfilled_warnings(self, name: str, payloads: list[dict[str, Any]]) -> list[str]:
        """A warning for each of the template's fields that none of `payloads` (the first
        points of collection `name`) has, or that holds objects rather than text."""
        if not payloads:
            return []
        objects = {f: value for f in self.fields for payload in payloads
                   if _objects(value := lookup(payload, f))}
        where = "its first point" if len(payloads) == 1 else f"its first {len(payloads)} points"
        return unfilled_warning(name, self.unfilled(payloads), where) + [
            f"The text template of {name!r} has {{{f}}}, which holds objects, not text, in "
            f"{where}: they render empty. Name a field inside, such as "
            f"{{{_inside(f, value)}}}." for f, value in objects.items()]

    def extract(self, payload: dict[str, Any]) -> tuple[str | None, str]:
        """(text, "") when there is text to embed, else (None, the reason)."""
        text, reason = self._extract(payload)
        if text is not None and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                return None, (f"{NOT_UNICODE} (a lone surrogate {text[exc.start]!r} at "
                              f"character {exc.start})")
        return text, reason

    def _extract(self, payload: dict[str, Any]) -> tuple[str | None, str]:
        if self.template is not None:
            pieces: list[str] = []
            for part in self._parts:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                path, spec = part
                value = lookup(payload, path)
                try:
                    pieces.append(_render(value, spec))
                except (TypeError, ValueError) as exc:
                    return None, (f"template field {{{path}:{spec}}} cannot format "
                                  f"{type(value).__name__} {shortened(repr(value), 40)} "
                                  f"({exc})")
            text = "".join(pieces)
            if not text.strip():
                return None, f"template {self.template!r} renders blank"
            return text, ""
        field = self.field or DEFAULT_TEXT_FIELD
        value = lookup(payload, field)
        if value is _MISSING:
            return None, f"no payload field {field!r}"
        if value is None:
            return None, f"payload field {field!r} is null"
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            return None, f"payload field {field!r} is {type(value).__name__}, not text"
        if not value.strip():
            return None, f"payload field {field!r} is empty"
        return value, ""


def refuse_no_text(name: str, text: TextSource, payloads: list[dict[str, Any]]) -> None:
    """Raises ConfigError when none of `payloads` (the first points of collection `name`)
    has text where `text` looks: a mistyped text field or template, found before anything
    is created."""
    if not payloads or any(text.extract(payload)[0] for payload in payloads):
        return
    keys = ", ".join(payload_keys(payloads)) or "none"
    raise ConfigError(
        f"None of the first {len(payloads)} points of {name!r} has text in "
        f"{text.describe()} (the first: {text.extract(payloads[0])[1]}). Their payloads have "
        f"the keys: {keys}. Point --text-field or --text-template at the text. Nothing was "
        "created.")


def payload_keys(payloads: Iterable[dict[str, Any]], limit: int = 20) -> list[str]:
    """The top-level keys found in `payloads`, for messages about a missing text field."""
    seen: dict[str, None] = {}
    for payload in payloads:
        seen.update(dict.fromkeys(payload))
    return sorted(seen)[:limit]


def unfilled_warning(name: str, fields: Iterable[str], where: str) -> list[str]:
    """A warning for each template field of `name` that none of `where` has."""
    return [f"The text template of {name!r} has {{{f}}}, which none of {where} has: it "
            "renders empty in every text. A typo?" for f in fields]


def lookup(payload: Any, path: str) -> Any:
    """Follow a dotted path through dicts (and lists, by integer index: `chunks.0.text` or
    `chunks[0].text`). A top-level key that holds the dots itself (`"meta.content"`, as
    tools that flatten payloads write them) is found as it is."""
    if isinstance(payload, dict) and path in payload:
        return payload[path]
    current = payload
    for part in _INDEX.sub(r".\1", path).split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _parse(template: str) -> list[str | tuple[str, str]]:
    """A template's literal text (str) and placeholders ((path, format spec)), in order."""
    parts: list[str | tuple[str, str]] = []
    end = 0
    for match in _TOKEN.finditer(template):
        parts.append(template[end:match.start()])
        end = match.end()
        inner = match.group(1)
        if inner is None:  # `{{` or `}}`
            parts.append(match.group(0)[0])
            continue
        path, colon, spec = inner.rpartition(":")
        # a key may hold a colon itself (`{dc:title}`): only a valid spec is one
        parts.append((path, spec) if colon and path and _SPEC.fullmatch(spec) else (inner, ""))
    parts.append(template[end:])
    return [part for part in parts if part != ""]


def _render(value: Any, spec: str = "") -> str:
    """A placeholder's text: an object (a dict, a list of them) renders empty rather than
    as Python's repr of it, which would be embedded as if it were the text.

    Raises:
        TypeError, ValueError: `spec` does not apply to the value (`.2f` to a string).
    """
    if value is _MISSING or value is None or _objects(value):
        return ""
    if isinstance(value, list):
        return "\n".join(format(v, spec) if spec else str(v) for v in value)
    return format(value, spec) if spec else str(value)



def _inside(path: str, value: Any) -> str:
    """A path into `value` (a dict or a list holding one), for a message: `chunks.0.text`."""
    first = value if isinstance(value, dict) else next(v for v in value if isinstance(v, dict))
    key = next(iter(first), "text")
    return f"{path}.{key}" if isinstance(value, dict) else f"{path}.0.{key}"


def _objects(value: Any) -> bool:
    """`value` is a dict, or a list holding one."""
    return isinstance(value, dict) or (isinstance(value, list)
                                        and any(isinstance(v, dict) for v in value))
