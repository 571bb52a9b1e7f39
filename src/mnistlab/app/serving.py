"""Run the web app under uvicorn, in one process or several: `mnistlab serve` is ``bind`` then ``serve``.

What the ASGI app (``server.py``) cannot do itself lives here:

- **Binding first.** :func:`bind` claims the port before anything says "serving", so a taken port is one
  clear error (uvicorn would print it as a log line after our banner and exit 3).
- **A deadline for the request headers.** uvicorn's h11 protocol has none: ``timeout_keep_alive`` only
  covers an idle connection and is cancelled by every byte received, so a client that trickles one header
  byte every few seconds holds its connection for ever (slowloris), and an ASGI middleware is only called
  once the headers are complete. :class:`DeadlineH11Protocol` adds that deadline to uvicorn's protocol.
  (``h11_max_incomplete_event_size``, 16 KiB by default, already bounds the headers' size.)
- **Several worker processes.** uvicorn's ``Multiprocess`` supervisor, the one behind ``uvicorn --workers``,
  starts fresh interpreters that build the app from an import string (an app factory); our settings reach
  them as JSON in ``$MNISTLAB_SERVE``. The same factory works without our CLI::

      MNISTLAB_SERVE='{"run_dir": "runs/x"}' uvicorn --factory mnistlab.app.serving:app_from_env \\
          --http mnistlab.app.serving:DeadlineH11Protocol --ws none --workers 4
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from mnistlab.app.serve_config import SERVE_ENV, ServeConfig, ServeLimits
from mnistlab.app.server import create_app
from mnistlab.errors import MnistlabError
from mnistlab.runs import Run, load_run

BACKLOG = 2048  # pending connections the kernel queues (uvicorn's default)
KEEP_ALIVE = 5  # s an idle connection stays open between requests (uvicorn's default)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), or a one-line error saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on accepted sockets
    # whose proto says TCP; without it every keep-alive response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # As uvicorn does: a restarted server may reuse a port whose old connections are in TIME_WAIT. Linux still
    # refuses a port that another socket listens on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # listening at once: a second bind with SO_REUSEADDR would otherwise succeed
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            reason += " (is another server running there? choose another --port)"
        elif exc.errno == errno.EACCES and port < 1024:
            reason += " (ports below 1024 need privileges; choose another --port)"
        raise MnistlabError(f"cannot serve on {url(host, port)}: {reason}") from None
    sock.set_inheritable(True)  # worker processes share it
    return sock


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(config: ServeConfig, sock: socket.socket, run: Run) -> None:
    """Serve ``run`` on the bound ``sock`` until Ctrl-C: in this process, or in ``config.workers`` processes."""
    if config.workers == 1:
        app = create_app(run, config.limits)
        uvicorn.Server(uvicorn_config(app, config)).run(sockets=[sock])
        return
    # Each worker loads the run itself (from the same folder the parent has just validated).
    os.environ[SERVE_ENV] = config.to_json()
    Multiprocess(uvicorn_config(f"{__name__}:app_from_env", config), sockets=[sock]).run()


def app_from_env() -> FastAPI:
    """App factory for worker processes and ``uvicorn --factory``: the run and limits come from $MNISTLAB_SERVE."""
    text = os.environ.get(SERVE_ENV, "")
    try:
        config = ServeConfig.from_json(text)
    except ValueError as exc:
        raise MnistlabError(f'${SERVE_ENV}: {exc}; expected e.g. {{"run_dir": "runs/x"}}') from None
    return create_app(load_run(config.run_dir), config.limits)


class DeadlineConfig(uvicorn.Config):
    """uvicorn's Config plus the header deadline, which it carries to :class:`DeadlineH11Protocol`."""

    def __init__(self, app: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout


def uvicorn_config(app: FastAPI | str, config: ServeConfig) -> DeadlineConfig:
    return DeadlineConfig(
        app,
        header_timeout=config.limits.request_timeout,
        factory=isinstance(app, str),
        host=config.host,
        port=config.port,
        workers=config.workers,
        http=DeadlineH11Protocol,
        ws="none",  # the app has no websocket routes
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE,
        log_level="warning",
    )


@functools.cache
def _header_timeout_from_env() -> float:
    """For `uvicorn --http ...:DeadlineH11Protocol`, whose plain Config has no header_timeout: the request timeout
    in $MNISTLAB_SERVE if it is there, else the default."""
    try:
        return ServeConfig.from_json(os.environ.get(SERVE_ENV, "")).limits.request_timeout
    except ValueError:
        return ServeLimits.request_timeout


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request's headers must be complete ``header_timeout`` seconds after the
    connection opened (the first request) or after their first byte arrived (later ones), else 408 and the
    connection is closed.

    h11 reports the client's side as IDLE until a whole request line and header block has been parsed, so the
    deadline runs while ``conn.their_state`` is IDLE. It is set once when that wait begins and is not pushed
    back by further bytes, unlike uvicorn's keep-alive timer. Between requests, a silent connection is
    closed by uvicorn's keep-alive timeout (5 s); before the first one uvicorn has no timer at all.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout = getattr(config, "header_timeout", None) or _header_timeout_from_env()
        self._header_deadline: Any = None  # asyncio.TimerHandle while armed

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not waiting:
            self._cancel_deadline()
        elif self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        body = f"request headers not received within {self.header_timeout:g} s\n".encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)  # no response started (their side is IDLE), so h11 needs no say
        self.transport.close()
