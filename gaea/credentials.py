"""Which credentials go to which endpoint, and URLs in the form they may be shown or recorded.

Every HTTP client of the project (model server, judge, question rewriter, Overpass) builds its requests
from `split_endpoint` and its bearer token from `api_key_for`, so one rule holds everywhere:

1. ``user:pass@`` in the URL is HTTP Basic auth for that URL, and then nothing else is sent;
2. else the key given for that endpoint (``--api-key``, ``--judge-api-key``, ``--rewrite-api-key``;
   ``env:NAME`` reads the environment variable NAME);
3. else the endpoint's own environment variable (GAEA_API_KEY, GAEA_JUDGE_API_KEY, GAEA_REWRITE_API_KEY);
4. else OPENAI_API_KEY, but only for ``https://api.openai.com``;
5. else no Authorization header at all.

A URL's query string (``?key=...``, ``?api-version=...``) is sent with every request to the endpoint
instead of being glued before the request path. What is written to files and logs passes through
`redact_url` / `redacted`: credentials and query values become ``***``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

from gaea.errors import ConfigError

MODEL_KEY_ENV = "GAEA_API_KEY"
JUDGE_KEY_ENV = "GAEA_JUDGE_API_KEY"
REWRITE_KEY_ENV = "GAEA_REWRITE_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
#: The only host OPENAI_API_KEY is sent to unless it is named explicitly (``--api-key env:OPENAI_API_KEY``).
OPENAI_HOST = "api.openai.com"
ENV_PREFIX = "env:"
REDACTED = "***"


@dataclass(frozen=True)
class Endpoint:
    """An API root split into what requests are built on and what travels beside them.

    Attributes
    ----------
    url
        ``scheme://host[:port]/path`` without credentials, query or fragment (request paths go after it).
    params
        The query string's pairs, sent with every request.
    auth
        ``(user, password)`` from the URL, for HTTP Basic auth; None when the URL has none.
    shown
        The URL as logs, error messages and run files may show it (see `redact_url`).
    """

    url: str
    params: tuple[tuple[str, str], ...]
    auth: tuple[str, str] | None
    shown: str


def split_endpoint(url: str) -> Endpoint:
    """The Endpoint of an ``http(s)://`` API root.

    Raises
    ------
    ConfigError
        When `url` is not an http:// or https:// address with a host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{redact_url(url)!r} is not an http:// or https:// address")
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username is not None else None
    bare = urlunsplit((parts.scheme, _host_port(parts), parts.path.rstrip("/"), "", ""))
    params = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return Endpoint(url=bare, params=params, auth=auth, shown=redact_url(url))


def redact_url(url: str) -> str:
    """`url` with its user:password and every query value replaced by ``***``; other text unchanged."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    netloc = _host_port(parts)
    if parts.username is not None:
        netloc = f"{REDACTED}@{netloc}"
    query = urlencode([(name, REDACTED) for name, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redacted(value: Any) -> Any:
    """`value` fit to be recorded: mappings lose their secret entries (any ``*api_key*`` name), URLs are
    redacted, recursively through mappings and lists."""
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        return {key: redacted(item) for key, item in value.items() if not is_secret_name(str(key))}
    if isinstance(value, list | tuple):
        return type(value)(redacted(item) for item in value)
    return value


def is_secret_name(name: str) -> bool:
    """Whether a setting called `name` holds a credential (api_key, judge_api_key, ...)."""
    lowered = name.lower().replace("-", "_")
    return "api_key" in lowered or lowered in ("password", "token", "authorization")


def api_key_for(url: str, key: str | None = None, *, env: str = MODEL_KEY_ENV) -> str | None:
    """The bearer token to send to the endpoint `url`, by the rule in this module's docstring.

    Parameters
    ----------
    key
        The key given for this endpoint; ``env:NAME`` reads the environment variable NAME.
    env
        The endpoint's own environment variable, read when `key` is None.

    Raises
    ------
    ConfigError
        When `key` names an unset variable, or the URL carries ``user:pass@`` as well as a key.
    """
    has_userinfo = urlsplit(url).username is not None
    if key is not None:
        if has_userinfo:
            raise ConfigError(
                f"{redact_url(url)}: give the credentials either in the URL (user:pass@) or as an API key, not both"
            )
        return _resolve_key(key)
    if has_userinfo:
        return None
    if os.environ.get(env):
        return os.environ[env]
    if is_openai(url):
        return os.environ.get(OPENAI_KEY_ENV) or None
    return None


def is_openai(url: str) -> bool:
    """Whether `url` is OpenAI's own API (https://api.openai.com)."""
    parts = urlsplit(url)
    return parts.scheme == "https" and (parts.hostname or "").lower() == OPENAI_HOST


def key_option_help(endpoint: str, env: str) -> str:
    """The --help text of the option that gives `endpoint`'s key (whose own variable is `env`)."""
    return (
        f"bearer token for {endpoint}; {ENV_PREFIX}NAME reads the variable NAME (default: ${env}; "
        f"${OPENAI_KEY_ENV} only for https://{OPENAI_HOST})"
    )


def client_options(endpoint: Endpoint, api_key: str | None) -> dict[str, Any]:
    """`httpx.Client` keyword arguments that carry the endpoint's credentials and query string."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"params": list(endpoint.params), "auth": endpoint.auth, "headers": headers}


def _resolve_key(key: str) -> str:
    if not key.startswith(ENV_PREFIX):
        return key
    name = key[len(ENV_PREFIX) :]
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"the API key should come from ${name} ({key}), but that environment variable is not set")
    return value


def _host_port(parts: Any) -> str:
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port}" if parts.port is not None else host


def _redact_text(text: str) -> str:
    # A URL may sit inside a longer value ("overpass:https://u:p@host/..."); redact each http(s) word.
    if "http://" not in text and "https://" not in text:
        return text
    return " ".join(_redact_word(word) for word in text.split(" "))


def _redact_word(word: str) -> str:
    for scheme in ("https://", "http://"):
        at = word.find(scheme)
        if at >= 0:
            return word[:at] + redact_url(word[at:])
    return word


class _RedactURLs(logging.Filter):
    """Redacts the URLs httpx logs for each request (their query strings may carry keys)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL | str) else arg for arg in record.args
            )
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(existing, _RedactURLs) for existing in logger.filters):
        logger.addFilter(_RedactURLs())


# Done on import: every client that sends requests imports this module first.
_install_log_redaction()
