"""One masking function for every way out of paraling: tags, params, artifacts, logs, stdout, exception texts.

:func:`mask_secrets` replaces

* the password of every URL's user info (``scheme://user:password@host``, also with an empty user
  ``://:password@`` and with ``@`` inside the password: the user info ends at the *last* ``@`` before the host),
  parsed with :func:`urllib.parse.urlsplit` as ``sqlalchemy.engine.make_url`` reads it;
* the value of every ``key=value`` whose key names a secret (``password``, ``passwd``, ``pwd``, ``secret``,
  ``token``, ``api_key``, ``access_key``), as in query strings (``?password=...&sslpassword=...``), Hydra overrides
  and environment assignments,

with ``***``. Everything paraling writes passes through it: :class:`~paraling.tracking.tracker.RunTracker` (tags,
params, text artifacts), Optuna user attributes, printed summaries, ``paraling: error:`` lines and log records
(:func:`install_log_masking`).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MASK", "SecretFilter", "install_log_masking", "is_secret_key", "mask_obj", "mask_secrets"]

MASK = "***"
_SECRET_WORDS = r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"
_SECRET_KEY = re.compile(_SECRET_WORDS, re.IGNORECASE)
# A URL with a user-info part: scheme, "://", then everything up to whitespace or a quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_KEY_VALUE = re.compile(
    rf"(?P<key>[\w.-]*{_SECRET_WORDS}[\w.-]*)(?P<sep>['\"]?\s*[=:]\s*['\"]?)(?P<value>[^\s&'\",;}}]+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a parameter or setting named ``key`` holds a secret (its value is masked whole)."""
    return bool(_SECRET_KEY.search(key))


def _mask_url(m: re.Match[str]) -> str:
    url = m.group(0)
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = url.split("://", 1)[1].split("/", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return url.replace(f"{userinfo}@", f"{user}:{MASK}@", 1)


def _mask_key_value(m: re.Match[str]) -> str:
    if m.group("value") == MASK:
        return m.group(0)
    return f"{m.group('key')}{m.group('sep')}{MASK}"


def mask_secrets(text: str) -> str:
    """``text`` with every password of a URL and every value of a secret-named key replaced by ``***``.

    Example:
        >>> mask_secrets("tracking.uri=http://alice:p@ss@host:5055/x?token=abc&n=1")
        'tracking.uri=http://alice:***@host:5055/x?token=***&n=1'
    """
    if not text:
        return text
    return _KEY_VALUE.sub(_mask_key_value, _URL.sub(_mask_url, str(text)))


def mask_obj(obj: Any) -> Any:
    """A copy of a nested structure (dicts, lists, strings) with every string masked; secret-named keys' values too."""
    if isinstance(obj, str):
        return mask_secrets(obj)
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "") else mask_obj(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(mask_obj(v) for v in obj)
    return obj


class SecretFilter(logging.Filter):
    """Masks a log record's formatted message (and its exception text) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not fit its format: leave it to the handler
            return True
        record.msg, record.args = mask_secrets(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Add :class:`SecretFilter` to every handler of ``logger`` (the root logger by default) that lacks one."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
