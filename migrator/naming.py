"""Names and addresses checked before anything uses them: the name of a collection or alias
migrator is to create (Qdrant's rules), the name of a variable holding a key, an http(s)
URL; and how a URL or a variable's name is printed without giving a secret away."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["check_env_name", "check_new_name", "check_url", "env_variable", "redact_url"]

# What Qdrant refuses in the name of a collection or alias it creates (its server and local
# mode alike); names that exist already are never checked, so they stay reachable.
_FORBIDDEN_IN_NAMES = '<>:"/\\|?*\x00\x1f'


def check_new_name(name: str, what: str = "collection or alias") -> str:
    """`name`, if Qdrant would create a collection or alias (or, with `what` "vector", a
    named vector) of that name.

    Raises:
        ValueError: it is empty, '.', '..', too long (255 characters; 200 bytes for a
            vector), or holds one of the characters Qdrant refuses.
    """
    if name in ("", ".", ".."):
        raise ValueError(f"a new {what} cannot be named {name!r}")
    too_long = len(name.encode()) > 200 if what == "vector" else len(name) > 255
    if too_long:
        limit = "200 bytes" if what == "vector" else "255 characters"
        raise ValueError(f"{_a(what)} name is at most {limit}")
    bad = sorted({char for char in name if char in _FORBIDDEN_IN_NAMES})
    if bad:
        raise ValueError(f"{name!r} holds {', '.join(map(repr, bad))}, which Qdrant does not "
                         f"allow in {_a(what)} name")
    return name


def _a(noun: str) -> str:
    """`an alias`, `a collection`."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@]+@")
_SECRET_PARAMETER = re.compile(r"([?&][^=&#]*(?:key|token|secret|sig|pass|auth)[^=&#]*=)[^&#]*",
                               re.IGNORECASE)


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
    """Hide user:password, and the values of query parameters named like a key, a token or
    a signature (`?api_key=`, `&sig=`), in a URL before it is printed."""
    return _SECRET_PARAMETER.sub(r"\1***", _URL_CREDENTIALS.sub("***@", url))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A name printed as given: what variables are called by convention. Anything else (a
# 40-character token, `jina_...`) may be a key pasted where its variable's name belongs.
_PRINTABLE_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def check_env_name(value: str | None) -> str | None:
    """`value`, if it can be the name of an environment variable; else ValueError, which
    does not repeat the value (it is most likely the key itself)."""
    if value is not None and not _ENV_NAME.fullmatch(value):
        raise ValueError("this is not the name of an environment variable (letters, digits "
                         "and '_'); give the name of the variable that holds the key, never "
                         "the key itself (the value given is not shown)")
    return value


def env_variable(name: str | None, setting: str) -> str:
    """`the environment variable OPENAI_API_KEY`; a name that does not look like one is not
    printed (`setting` says where it was given)."""
    if name is not None and _PRINTABLE_ENV_NAME.fullmatch(name):
        return f"the environment variable {name}"
    return (f"the environment variable {setting} names (not shown: it does not look like a "
            "variable's name, and may be the key itself)")
