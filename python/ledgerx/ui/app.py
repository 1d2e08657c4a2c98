"""The dashboard's web app: `create_app(root)` returns a Starlette app serving the pages, the
`/api/` JSON, the static files (plotly.js from the plotly package's own file) and artifact
downloads. Read-only: only GET/HEAD routes, queries on an index connection with external access
off, and downloads only under the root's `artifacts/` (see files.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ledgerx.reader import IndexMissingError
from ledgerx.ui import fmt, views
from ledgerx.ui.queries import Index

HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# Everything the pages load comes from the server itself; plotly.js needs inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Pure ASGI middleware: CSP and friends on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.policies["json.dumps_kwargs"] = {"default": str, "ensure_ascii": False}
    env.filters.update(fmt.FILTERS)
    env.globals["link"] = fmt.link
    return env


def create_app(
    root: str | os.PathLike[str] | None = None,
    *,
    db: str | None = None,
    host: str = "127.0.0.1",
    poll_ms: int = 2000,
) -> Starlette:
    """The dashboard for the ledger at `root` (its index at `db` when given)."""
    routes = [
        Route("/", views.runs_page),
        Route("/partials/runs", views.runs_page),
        Route("/runs/{run_id}", views.run_page),
        Route("/compare", views.compare_page),
        Route("/alerts", views.alerts_page),
        Route("/status", views.status_page),
        Route("/download/{path:path}", views.download),
        Route("/api/runs", views.api_runs),
        Route("/api/runs/{run_id}", views.api_run),
        Route("/api/compare", views.api_compare),
        Route("/api/alerts", views.api_alerts),
        Route("/api/status", views.api_status),
        Route("/api/version", views.api_version),
        Route("/static/plotly.min.js", views.plotly),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if host in LOOPBACK:  # DNS rebinding: a loopback server answers only to loopback names
        middleware.append(
            Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: views.http_error, IndexMissingError: views.no_index},
    )
    app.state.index = Index(root, db)
    app.state.env = _env()
    app.state.poll_ms = poll_ms
    return app
