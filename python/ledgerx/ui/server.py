"""Serving the dashboard with uvicorn: in the foreground (`ledgerx ui`) or on a background
thread (`ledgerx daemon --ui-port`). The listening socket is bound before the server starts, so
port 0 works and the printed address is the real one."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from typing import Any

from ledgerx.errors import ConfigError
from ledgerx.ui import require_extra


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv6 when the host is an IPv6 address)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def make_server(
    root: str | os.PathLike[str] | None, host: str, *, db: str | None = None, poll_ms: int = 2000
) -> Any:
    require_extra()
    import uvicorn

    from ledgerx.ui.app import create_app

    app = create_app(root, db=db, host=host if is_loopback(host) else "*", poll_ms=poll_ms)
    # The first page should not pay for opening the index or compiling the templates.
    threading.Thread(target=_warm, args=(app,), name="ledgerx-ui-warm", daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def _warm(app: Any) -> None:
    app.state.index.warm()
    for name in app.state.env.list_templates(extensions=["html"]):
        app.state.env.get_template(name)


class BackgroundServer:
    """The dashboard on a daemon thread (for `ledgerx daemon --ui-port`)."""

    def __init__(self, root: str | os.PathLike[str] | None, host: str, port: int) -> None:
        self.sock = bind(host, port)
        self.url = url(self.sock)
        try:
            self.server = make_server(root, host)
        except BaseException:
            self.sock.close()
            raise
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="ledgerx-ui", daemon=True
        )

    def start(self) -> BackgroundServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        self.sock.close()
