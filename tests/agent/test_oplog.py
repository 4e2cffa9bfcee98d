"""The agent's operation log: secrets masked in every line, rotated every 3 days,
two old files kept."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from edgefleet.agent.oplog import KEEP_ROTATED, LOG_NAME, ROTATE_DAYS, OperationLog, logger

DAY = 24 * 3600


def test_the_password_and_token_never_reach_the_file(tmp_path: Path) -> None:
    oplog = OperationLog(tmp_path, stderr=False)
    oplog.hide("s3cret-passw0rd", None, "1790001234567890.1.1893456000.c2lnbmF0dXJl")
    oplog.start()
    logger.info("login with s3cret-passw0rd")
    logger.warning("token %s refused", "1790001234567890.1.1893456000.c2lnbmF0dXJl")
    logger.info("an ordinary line")
    oplog.stop()
    text = (tmp_path / LOG_NAME).read_text()
    assert "s3cret-passw0rd" not in text and "c2lnbmF0dXJl" not in text
    assert "login with ***" in text and "token *** refused" in text
    assert "an ordinary line" in text


def test_the_log_rotates_every_three_days_and_keeps_two(tmp_path: Path) -> None:
    """The file handler as the agent sets it up, its clock moved on three periods
    (rather than waiting nine days)."""
    oplog = OperationLog(tmp_path, stderr=False)
    handler = oplog.file
    assert handler is not None
    assert (handler.interval, handler.backupCount, handler.utc) == (ROTATE_DAYS * DAY,
                                                                    KEEP_ROTATED, True)  # fmt: skip
    start = time.time() - 10 * ROTATE_DAYS * DAY
    for period in range(3):
        handler.rolloverAt = start + period * ROTATE_DAYS * DAY  # due: in the past
        record = logging.LogRecord("edgefleet.agent", logging.INFO, __file__, 0,
                                   f"line {period}", None, None)  # fmt: skip
        handler.handle(record)
    handler.close()
    files = oplog.files()
    assert [f.name for f in files[:-1]] == [
        f"{LOG_NAME}.{time.strftime('%Y-%m-%d', time.gmtime(start + n * ROTATE_DAYS * DAY))}"
        for n in (0, 1)
    ]  # the two newest rotated files, three days apart; the oldest was deleted
    assert files[-1].name == LOG_NAME
    assert files[-1].read_text().endswith("line 2\n")
