"""Repeated log lines collapsed: the same message again within a window is counted, not written.

A flood of bad requests makes the same few lines thousands of times (issue 24 saw a 268 MB log).
`RepeatFilter` sits on the server's log handlers: a message (logger, level and text) is written
once per window; its repeats within the window are counted, and the first line after the window
ends says how many there were (or, if none comes, `CollapsedLogs`' thread, once the window ends).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from spanqa.settings import ConnectionSettings

MAX_MESSAGES = 4096  # distinct messages remembered at once (the oldest are forgotten first)
SERVER_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")  # whose handlers get the filter
_VERDICT = "_spanqa_repeat_verdict"  # one verdict per record, however many handlers it passes


class RepeatFilter(logging.Filter):
    """Lets a message through once per `window_s`; the next one after the window carries the count."""

    def __init__(self, window_s: float = ConnectionSettings.log_repeat_window_s,
                 clock: Callable[[], float] = time.monotonic, max_messages: int = MAX_MESSAGES):
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._max = max_messages
        self._seen: OrderedDict[tuple, list] = OrderedDict()  # key -> [window start, repeats held back]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, _VERDICT, None)
        if verdict is not None:
            return verdict
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window_s:
                seen[1] += 1
                verdict = False
            else:
                if seen is not None and seen[1]:
                    record.msg, record.args = f"{message}{self._repeated(seen[1])}", None
                self._seen[key] = [now, 0]
                self._seen.move_to_end(key)
                while len(self._seen) > self._max:
                    self._seen.popitem(last=False)
                verdict = True
        setattr(record, _VERDICT, verdict)
        return verdict

    def _repeated(self, count: int) -> str:
        return f" (repeated {count} more time{'s' if count != 1 else ''} in {self.window_s:g} s)"

    def flush(self, expired_only: bool = False) -> None:
        """Writes a line for each message whose repeats were held back and not yet told (with
        `expired_only`, for those whose window has ended); their next line is written in full."""
        now = self._clock()
        with self._lock:
            held = [(key, seen[1]) for key, seen in self._seen.items()
                    if seen[1] and not (expired_only and now - seen[0] < self.window_s)]
            for key, _ in held:
                del self._seen[key]
        for (name, level, message), count in held:
            record = logging.LogRecord(name, level, __file__, 0, "%s%s", (message, self._repeated(count)), None)
            setattr(record, _VERDICT, True)
            logging.getLogger(name).handle(record)


class CollapsedLogs:
    """One RepeatFilter on every handler of the server's loggers, and a thread that writes the
    counts of windows that have ended (a flood that stops is still told). `close()` writes the rest."""

    def __init__(self, window_s: float, loggers: Iterable[str] = SERVER_LOGGERS):
        self.filter = RepeatFilter(window_s)
        self._handlers = {handler for name in loggers for handler in logging.getLogger(name or None).handlers}
        for handler in self._handlers:
            handler.addFilter(self.filter)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._flush_ended, name="spanqa-log-repeats", daemon=True)
        self._thread.start()

    def _flush_ended(self) -> None:
        while not self._closed.wait(self.filter.window_s / 2):
            self.filter.flush(expired_only=True)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.filter.flush()
        for handler in self._handlers:
            handler.removeFilter(self.filter)
