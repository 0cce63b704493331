"""Redact secrets from text: credentials in URLs and tokens in query strings.

Pure Python (no TensorFlow), so every CLI can use it: ``python -m pipeline``,
``python -m trainer.task`` and the Beam jobs. Two things are hidden, as pip does for
index URLs (``pip._internal.utils.misc.redact_auth_from_url``):

* the password of ``scheme://user:password@host`` (kept: ``scheme://user:***@host``),
  or the whole user part when it has no password, since then it is usually a token
  (``https://TOKEN@host`` -> ``https://***@host``);
* the value of query parameters whose name says it is a secret (``token``,
  ``access_token``, ``key``, ``api_key``, ``sig``, ``signature``, ``password``,
  ``secret``, ``X-Goog-Signature``, ``X-Amz-Credential`` ...) and of
  ``Authorization: Bearer`` / ``Basic`` header values.

:func:`install` makes every log record and uncaught traceback of the process pass
through :func:`redact`; the CLIs call it first thing.

Example:
    >>> redact("cannot reach http://ann:hunter2@kfp:8888/apis?token=abc&page=2")
    'cannot reach http://ann:***@kfp:8888/apis?token=***&page=2'
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any

MASK = "***"

# scheme://userinfo@ where userinfo has no '/', '@' or whitespace. Every repetition is
# bounded and no two unbounded ones follow each other, so matching stays linear even on
# megabytes of log text.
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]{0,30}://)(?P<info>[^/?#@\s'\"<>]{1,512})@"
)
# A parameter name is secret if it contains one of these words (or, in a query
# string, is one of the short names URLs use).
_SECRET_WORD = re.compile(
    r"token|secret|passw(?:or)?d|pwd|signature|credential|api[_\-]?key|apikey|auth",
    re.IGNORECASE,
)
_SHORT_QUERY_NAMES = frozenset({"key", "sig", "code"})
# ?name=value or &name=value (also ';', the old separator); the value runs up to the
# next separator, quote or whitespace. Outside a query string (at the start or after
# a space, comma or quote) only names with a secret word count.
_QUERY = re.compile(
    r"(?P<lead>[?&;](?P<name>[\w.\-]{1,128})=)(?P<value>[^&#;\s'\"<>]+)"
)
_ASSIGNMENT = re.compile(
    r"(?:^|(?<=[\s,(\"']))(?P<lead>(?P<name>[\w.\-]{1,128})=)"
    r"(?P<value>[^&#;,\s'\"<>)]+)"
)
# "Authorization: Bearer <token>" and "Authorization: Basic <base64>".
_BEARER = re.compile(
    r"(?P<lead>\b(?:bearer\s+|authorization[\"']?\s*[:=]\s*[\"']?basic\s+))"
    r"(?P<value>[A-Za-z0-9._~+/\-]+=*)",
    re.IGNORECASE,
)


def _userinfo(m: re.Match[str]) -> str:
    user, sep, _password = m["info"].partition(":")
    shown = f"{user}:{MASK}" if sep else MASK
    return f"{m['scheme']}{shown}@"


def _query_value(m: re.Match[str]) -> str:
    name = m["name"]
    if name.lower() in _SHORT_QUERY_NAMES or _SECRET_WORD.search(name):
        return m["lead"] + MASK
    return m[0]


def _assigned_value(m: re.Match[str]) -> str:
    return m["lead"] + MASK if _SECRET_WORD.search(m["name"]) else m[0]


def redact(text: Any) -> str:
    """``str(text)`` with URL credentials and secret query values replaced by ***."""
    out = str(text)
    out = _USERINFO.sub(_userinfo, out)
    out = _QUERY.sub(_query_value, out)
    out = _ASSIGNMENT.sub(_assigned_value, out)
    return _BEARER.sub(lambda m: m["lead"] + MASK, out)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message and its traceback text.

    The message is formatted once (``record.getMessage()``), redacted and stored
    with no arguments left; the exception text is formatted and redacted too, so a
    formatter prints only redacted text. Always returns True (keeps the record).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redacts ``record`` in place (see :class:`RedactingFilter`); returns it."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed %-format: leave it to logging's own error path
        return record
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info))
        record.exc_text = record.exc_text.rstrip("\n")
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_installed = False


def install() -> None:
    """Redacts every log record of this process and any uncaught traceback.

    Wraps the log record factory (so records of every logger and handler, including
    handlers added later, are redacted where they are made) and ``sys.excepthook``.
    Idempotent.
    """
    global _installed
    if _installed:
        return
    _installed = True
    previous_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous_factory(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    previous_hook = sys.excepthook

    def hook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous_hook(kind, value, tb)
            return
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(redact(text))

    sys.excepthook = hook
