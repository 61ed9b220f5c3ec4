"""Names and addresses checked before anything uses them: the name of a collection or alias
migrator is to create (Qdrant's rules), an http(s) URL, and a URL fit to print."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["check_new_name", "check_url", "redact_url"]

# What Qdrant refuses in the name of a collection or alias it creates (its server and local
# mode alike); names that exist already are never checked, so they stay reachable.
_FORBIDDEN_IN_NAMES = '<>:"/\\|?*\x00\x1f'


def check_new_name(name: str) -> str:
    """`name`, if Qdrant would create a collection or alias of that name.

    Raises:
        ValueError: it is empty, '.', '..', longer than 255 characters, or holds one of
            the characters Qdrant refuses.
    """
    if name in ("", ".", ".."):
        raise ValueError(f"a new collection or alias cannot be named {name!r}")
    if len(name) > 255:
        raise ValueError(f"a collection or alias name is at most 255 characters "
                         f"(this one is {len(name)})")
    bad = sorted({char for char in name if char in _FORBIDDEN_IN_NAMES})
    if bad:
        raise ValueError(f"{name!r} holds {', '.join(map(repr, bad))}, which Qdrant does not "
                         "allow in a collection or alias name")
    return name


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@]+@")


def check_url(value: str | None, example: str) -> str | None:
    """`value` when it is an http(s) URL with a host and a valid port; else ValueError
    (reported by the settings loader as a bad value of the key, exit 2)."""
    if not value:  # unset (an empty variable counts as unset)
        return None
    try:
        parsed = urlsplit(value)
        port = parsed.port  # ValueError when out of range or not a number
    except ValueError as exc:
        raise ValueError(f"{redact_url(value)!r} is not a usable URL ({exc}); give "
                         f"{example}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{redact_url(value)!r} is not an http(s) URL with a host; give "
                         f"{example}")
    del port
    return value


def redact_url(url: str) -> str:
    """Hide user:password in a URL before it is printed."""
    return _URL_CREDENTIALS.sub("***@", url)
