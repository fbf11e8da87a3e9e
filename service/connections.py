"""Connection limits of `spanqa serve`: deadlines for slow requests and caps on connections held.

A request's line and headers must arrive within `header_timeout_s` (of the connection opening, or of
a kept-alive connection's next first byte), and a request body may not stall for `body_timeout_s`;
a connection past either is answered 408 (when part of a request came) and closed. Each client
address may hold `max_connections_per_client` connections, all clients `total_cap(fd_limit)`:
the file-descriptor limit less a reserve for files and the listen queues. At a cap the oldest
connection with no request in progress (idle, or still sending its headers) is closed to make room;
only when every connection is busy with a request is the new one refused. A flood of half-sent
requests thus evicts itself, while a client that sends its request at once is served.

`guarded_protocol()` builds the uvicorn HTTP protocol class (`uvicorn.Config(http=...)`) that does
this; `ConnectionLimits` is the bookkeeping alone (no sockets), `total_cap()` the cap on all
connections, and `raise_fd_limit()` lifts the process's soft descriptor limit to its hard one at
startup. The limits are `spanqa.settings.ConnectionSettings`, declared with the other settings.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from spanqa.errors import ConfigError
from spanqa.settings import ConnectionSettings

logger = logging.getLogger(__name__)

MIN_CONNECTIONS = 16  # a derived cap never goes below this, whatever the descriptor limit
FD_LIMIT_WHEN_UNLIMITED = 65536  # the soft limit set where the hard one is "unlimited"
REQUEST_TIMEOUT_BODY = b'{"error":"request_timeout","detail":"the request did not arrive in time: send it again"}'
REQUEST_TIMEOUT_RESPONSE = b"".join([
    b"HTTP/1.1 408 Request Timeout\r\n",
    b"content-type: application/json\r\n",
    b"content-length: ", str(len(REQUEST_TIMEOUT_BODY)).encode(), b"\r\n",
    b"connection: close\r\n\r\n",
    REQUEST_TIMEOUT_BODY,
])
# Where a connection stands. Idle and headers are "pending": no request in progress, so evictable.
IDLE, HEADERS, BODY, BUSY, CLOSED = "idle", "headers", "body", "busy", "closed"


def total_cap(settings: ConnectionSettings, fd_limit: int) -> int:
    """Connections all clients may hold under a soft descriptor limit of `fd_limit`."""
    room = fd_limit - settings.fd_reserve - 2 * settings.backlog
    if settings.max_connections is None:
        return max(room, MIN_CONNECTIONS)
    if settings.max_connections > room:
        raise ConfigError(
            f"--max-connections {settings.max_connections} leaves too few of the {fd_limit} file descriptors this "
            f"process may open (at most {max(room, 0)} fit beside the {settings.fd_reserve} kept for files and the "
            f"listen queues): lower it, or raise the hard limit (ulimit -Hn)"
        )
    return settings.max_connections


def raise_fd_limit() -> int:
    """Lifts RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, FD_LIMIT_WHEN_UNLIMITED) if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, exc)
    return FD_LIMIT_WHEN_UNLIMITED if soft == resource.RLIM_INFINITY else soft


@dataclass
class Admission:
    """What `ConnectionLimits.admit` decided: whether the new connection stays, and whom it displaced."""

    admitted: bool
    evicted: list = field(default_factory=list)
    cap: str | None = None  # "per-client" or "total": the cap that was reached, if one was


class ConnectionLimits:
    """The connections held, per client and in all, and which are pending (no request in progress).

    Pure bookkeeping: connections are any hashable objects, clients any strings. Pending ones are
    kept in the order they became pending, so the oldest is found at once.
    """

    def __init__(self, max_total: int, max_per_client: int = 0):
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._client_of: dict[Hashable, str] = {}
        self._count: Counter[str] = Counter()
        self._pending: OrderedDict[Hashable, None] = OrderedDict()
        self._pending_of: dict[str, OrderedDict[Hashable, None]] = {}

    def __len__(self) -> int:
        return len(self._client_of)

    def held_by(self, client: str) -> int:
        return self._count[client]

    def admit(self, connection: Hashable, client: str) -> Admission:
        """Counts a new connection, pending, evicting the oldest pending ones a full cap needs."""
        decision = Admission(admitted=True)
        if self.max_per_client and self._count[client] >= self.max_per_client:
            decision.cap = "per-client"
            if not self._evict(self._pending_of.get(client), decision):
                return decision
        if len(self._client_of) >= self.max_total:
            decision.cap = "total"
            if not self._evict(self._pending, decision):
                return decision
        self._client_of[connection] = client
        self._count[client] += 1
        self.pending(connection)
        return decision

    def _evict(self, pending: OrderedDict | None, decision: Admission) -> bool:
        if not pending:
            decision.admitted = False
            return False
        victim = next(iter(pending))
        self.closed(victim)
        decision.evicted.append(victim)
        return True

    def pending(self, connection: Hashable) -> None:
        """The connection has no request in progress (idle, or its request's headers are arriving)."""
        client = self._client_of.get(connection)
        if client is None:
            return
        self._pending[connection] = None
        self._pending.move_to_end(connection)
        mine = self._pending_of.setdefault(client, OrderedDict())
        mine[connection] = None
        mine.move_to_end(connection)

    def busy(self, connection: Hashable) -> None:
        """The connection's request headers are in: it is not evicted from now until its response ends."""
        client = self._client_of.get(connection)
        if client is None:
            return
        self._pending.pop(connection, None)
        mine = self._pending_of.get(client)
        if mine is not None:
            mine.pop(connection, None)
            if not mine:
                del self._pending_of[client]

    def closed(self, connection: Hashable) -> None:
        """Forgets a connection (again: no-op)."""
        client = self._client_of.get(connection)
        if client is None:
            return
        self.busy(connection)
        del self._client_of[connection]
        self._count[client] -= 1
        if self._count[client] <= 0:
            del self._count[client]


class _Guarded:
    """Mixed before uvicorn's HTTP protocol class by `guarded_protocol()`: one instance per connection.

    It follows the connection through uvicorn's own state (`self.cycle`, the request being read and
    answered; `self.flow`, whether uvicorn paused reading), so it works over either parser.
    """

    limits: ConnectionLimits
    guard: ConnectionSettings

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._timer: asyncio.TimerHandle | None = None
        self._phase = IDLE
        self._host = self.client[0] if self.client else "unknown"
        decision = self.limits.admit(self, self._host)
        for victim in decision.evicted:
            victim._drop(f"closed a connection from {victim._host} that had sent no whole request, to make room "
                         f"for a new one (the {decision.cap} connection cap)", level=logging.WARNING)
        if not decision.admitted:
            self._phase = CLOSED
            logger.warning("refused a connection from %s: the %s connection cap is reached and every connection "
                           "has a request in progress", self._host, decision.cap)
            transport.close()
            return
        self._request_begins(bytes_in=False)

    def _request_begins(self, bytes_in: bool) -> None:
        self._phase = HEADERS
        self._bytes_in = bytes_in  # part of this request came: a timeout is then answered 408
        self.limits.pending(self)
        self._arm(self.guard.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        self._last_byte = self.loop.time()
        if self._phase == IDLE:
            self._request_begins(bytes_in=True)
        elif self._phase == HEADERS:
            self._bytes_in = True
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self._phase in (HEADERS, BODY) and not self.transport.is_closing():
            if self._phase == BODY or (self.cycle is not None and self.cycle is not before):
                self._follow_request()

    def _follow_request(self) -> None:
        """The current request's headers are in: reading its body (idle limit) or answering it (no limit)."""
        cycle = self.cycle
        self.limits.busy(self)
        if cycle.more_body and not cycle.response_complete:
            if self._phase != BODY:
                self._phase = BODY
                self._arm(self.guard.body_timeout_s)
        else:
            self._phase = BUSY
            self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self._phase == CLOSED or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:  # a pipelined request started
            self._phase = HEADERS
            self._follow_request()
        else:  # idle: uvicorn's keep-alive timeout closes it if nothing comes
            self._phase = IDLE
            self._cancel()
            self.limits.pending(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        self._phase = CLOSED
        self._cancel()
        self.limits.closed(self)

    def _arm(self, delay: float) -> None:
        self._cancel()
        self._timer = self.loop.call_later(delay, self._expire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._phase == HEADERS:
            self._drop(f"closed a connection from {self._host}: its request line and headers took over "
                       f"{self.guard.header_timeout_s:g} s (--header-timeout)", answer=self._bytes_in)
        elif self._phase == BODY:
            now = self.loop.time()
            if self._waiting_on_us():
                self._last_byte = now  # the client gets a whole window once the server reads again
            idle = now - self._last_byte
            if idle < self.guard.body_timeout_s:
                self._arm(self.guard.body_timeout_s - idle)
                return
            self._drop(f"closed a connection from {self._host}: its request body stalled for over "
                       f"{self.guard.body_timeout_s:g} s (--body-timeout)", answer=not self.cycle.response_started)

    def _waiting_on_us(self) -> bool:
        """Whether no body arrives because of the server: reading paused, or 100-continue not yet sent."""
        if self.flow is not None and self.flow.read_paused:
            return True
        if getattr(self.cycle, "waiting_for_100_continue", False):  # httptools
            return True
        return bool(getattr(getattr(self, "conn", None), "they_are_waiting_for_100_continue", False))  # h11

    def _drop(self, why: str, answer: bool = False, level: int = logging.INFO) -> None:
        """Closes the connection (with a 408 first when `answer`); uvicorn then tells its request, if any."""
        self._phase = CLOSED
        self._cancel()
        self.limits.closed(self)
        logger.log(level, why)
        if not self.transport.is_closing():
            if answer:
                self.transport.write(REQUEST_TIMEOUT_RESPONSE)
            self.transport.close()


def guarded_protocol(settings: ConnectionSettings, limits: ConnectionLimits, base: type | None = None) -> type:
    """uvicorn's HTTP protocol class (httptools where installed, else h11) with these limits, for
    `uvicorn.Config(http=...)`. Every connection it makes shares `limits`."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    attributes: dict[str, Any] = {"limits": limits, "guard": settings, "__doc__": _Guarded.__doc__}
    return type(f"Guarded{base.__name__}", (_Guarded, base), attributes)
