"""trainer.contracts.redact: what is hidden, what is left alone, and the log plumbing."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from trainer.contracts import redact

S = "Canary7f3e9b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"http://user:{S}@host:8888/x", "http://user:***@host:8888/x"),
        (f"https://{S}@github.com/o/r.git", "https://***@github.com/o/r.git"),
        (f"host='grpc+tls://a:{S}@h'", "host='grpc+tls://a:***@h'"),
        (
            f"gs://b/o?X-Goog-Signature={S}&X-Goog-Date=1",
            "gs://b/o?X-Goog-Signature=***&X-Goog-Date=1",
        ),  # fmt: skip
        (f"s3://b/o?X-Amz-Credential={S}", "s3://b/o?X-Amz-Credential=***"),
        (f"/v1?key={S}&alt=json", "/v1?key=***&alt=json"),
        (f"/blob?sv=1&sig={S}", "/blob?sv=1&sig=***"),
        (f"/cb?code={S}#frag", "/cb?code=***#frag"),
        (f"/x?page=1;api_key={S}", "/x?page=1;api_key=***"),
        (f"refresh_token={S} expired", "refresh_token=*** expired"),
        (f"login with password={S}, retry", "login with password=***, retry"),
        (f"Authorization: Bearer {S}.x.y", "Authorization: Bearer ***"),
        (f"authorization: Basic {S}==", "authorization: Basic ***"),
    ],
)
def test_secrets_are_replaced(text: str, expected: str) -> None:
    assert redact.redact(text) == expected
    assert S not in redact.redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:8888/apis/v2beta1/runs?page_size=100",
        "user@example.com wrote gs://bucket/a@b.txt",
        "--set key=value; sorting key=user_id",
        "token embeddings: 2^-3 buckets, basic statistics",
        "hours 2026-01-01T00:2026-01-01T03",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact.redact(text) == text


def test_filter_redacts_message_arguments_and_traceback(tmp_path) -> None:
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path)
    handler.addFilter(redact.RedactingFilter())
    log = logging.getLogger("test_redact.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting to %s", f"http://u:{S}@h")
        try:
            raise ConnectionError(f"refused: http://u:{S}@h/?token={S}")
        except ConnectionError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert S not in text
    assert "connecting to http://u:***@h" in text
    assert "ConnectionError: refused: http://u:***@h/?token=***" in text


def test_install_covers_every_logger_and_uncaught_tracebacks(tmp_path) -> None:
    # A fresh process: install() changes process-wide state.
    code = textwrap.dedent(
        f"""
        import logging, sys
        from trainer.contracts import redact
        redact.install(); redact.install()  # idempotent
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        late = logging.FileHandler({str(tmp_path / "late.log")!r})
        logging.getLogger("some.library").addHandler(late)  # added after install
        logging.getLogger("some.library").info("url %s", "http://a:{S}@h")
        raise RuntimeError("gave up on http://a:{S}@h")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "url http://a:***@h" in proc.stdout
    assert "RuntimeError: gave up on http://a:***@h" in proc.stderr
    assert (tmp_path / "late.log").read_text() == "url http://a:***@h\n"
    assert S not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "text",
    ["tokentoken" * 50_000, "&token=" * 50_000, "a" * 500_000, "x://a:b" * 50_000],
)
def test_long_adversarial_text_is_redacted_in_linear_time(text: str) -> None:
    # No timing assert: a super-linear regex would not finish before pytest's timeout
    # of the whole suite; the result is still checked.
    out = redact.redact(text)
    assert len(out) <= len(text) + 3 * text.count("=")
