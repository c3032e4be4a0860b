"""mask_secrets: URL passwords (also empty users and '@' in passwords), secret-named keys, log records."""

from __future__ import annotations

import logging

import pytest

from paraling.secrets import SecretFilter, mask_obj, mask_secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tracking.uri=http://alice:S3cretPW@host:5055", "tracking.uri=http://alice:***@host:5055"),
        ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),  # '@' inside the password
        ("http://:secret@host/x", "http://:***@host/x"),  # empty user
        (
            "postgresql+psycopg2://u@h/db?password=hunter2&sslmode=require",
            "postgresql+psycopg2://u@h/db?password=***&sslmode=require",
        ),
        ("http://host/api?token=abc&n=1", "http://host/api?token=***&n=1"),
        (
            "API request to http://bob:Pa55word@127.0.0.1:9/api failed",
            "API request to http://bob:***@127.0.0.1:9/api failed",
        ),
        ("PGPASSWORD=abc123 psql", "PGPASSWORD=*** psql"),
        ("{'password': 'xyz', 'n': 1}", "{'password': '***', 'n': 1}"),
        ("sqlite:///mlruns/mlflow.db model.n_blocks=4", "sqlite:///mlruns/mlflow.db model.n_blocks=4"),
        ("http://user@host:5000", "http://user@host:5000"),
        ("http://alice:***@host", "http://alice:***@host"),
    ],
)
def test_mask_secrets(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


def test_mask_obj_masks_nested_strings_and_secret_keys() -> None:
    got = mask_obj({"uri": "http://a:pw1@h", "api_key": "k", "list": ["x", "https://b:pw2@h"], "n": 3})
    assert got == {"uri": "http://a:***@h", "api_key": "***", "list": ["x", "https://b:***@h"], "n": 3}


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("paraling.test_secrets")
    handler = logging.StreamHandler()
    handler.addFilter(SecretFilter())
    records: list[logging.LogRecord] = []
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logger.warning("cannot reach %s", "http://bob:Pa55word@127.0.0.1:9")
        try:
            raise RuntimeError("failed: postgresql://u:hunter2@db/x")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = " ".join(r.getMessage() + (r.exc_text or "") for r in records)
    assert "Pa55word" not in text and "hunter2" not in text and "bob:***@" in text and "u:***@" in text
