"""The dashboard's web app: `create_app(root)` returns a Starlette app serving the pages, the
`/api/` JSON, the static files (plotly.js from the plotly package's own file) and artifact
downloads. Read-only: only GET/HEAD routes, queries on an index connection with external access
off, and downloads only under the root's `artifacts/` (see files.py)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ledgerx.reader import IndexMissingError
from ledgerx.ui import fmt, pages
from ledgerx.ui.files import ForbiddenPath, iter_fd, open_artifact
from ledgerx.ui.queries import Index

HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# Everything the pages load comes from the server itself; plotly.js needs inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the plotly package (no CDN)."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


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
    index = Index(root, db)
    env = _env()

    def page(request: Request, name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("title", name.removesuffix(".html"))
        html = env.get_template(name).render(
            request=request, root=str(index.root), poll_ms=poll_ms, **ctx
        )
        return HTMLResponse(html, status_code=code)

    def api(obj: Any, code: int = 200) -> Response:
        body = json.dumps(obj, default=str, ensure_ascii=False, allow_nan=False)
        return Response(body, status_code=code, media_type="application/json")

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    # -- runs ------------------------------------------------------------------------------------

    def runs_page(request: Request) -> Response:
        args = pages.runs_args(request.query_params)
        res = index.runs(**args)
        ctx: dict[str, Any] = {
            "args": args,
            "res": res,
            "qs": _qs(request),
            "filters": index.run_filters(),
        }
        if request.url.path == "/partials/runs":
            return page(request, "_runs_rows.html", **ctx)
        return page(request, "runs.html", title="runs", **ctx)

    def api_runs(request: Request) -> Response:
        return api(index.runs(**pages.runs_args(request.query_params)))

    def api_version(request: Request) -> Response:
        return api({"version": index.version()})

    # -- one run -----------------------------------------------------------------------------

    def _detail(request: Request) -> dict[str, Any]:
        qp = request.query_params
        d = pages.run_detail(
            index,
            request.path_params["run_id"],
            metric=qp.get("metric"),
            goal=qp.get("goal", "max"),
            tsort=qp.get("tsort"),
            tdesc=qp.get("tdir", "desc") != "asc",
        )
        if d is None:
            raise HTTPException(404, f"no run {request.path_params['run_id']!r} in the index")
        return d

    def run_page(request: Request) -> Response:
        d = _detail(request)
        return page(request, "run.html", title=d["run"]["run_id"], d=d, qs=_qs(request))

    def api_run(request: Request) -> Response:
        return api(_detail(request))

    # -- compare, alerts, status -------------------------------------------------------------

    def _run_ids(request: Request) -> list[str]:
        raw = ",".join(request.query_params.getlist("runs"))
        return [r for r in (s.strip() for s in raw.split(",")) if r]

    def compare_page(request: Request) -> Response:
        return page(request, "compare.html", c=pages.compare(index, _run_ids(request)))

    def api_compare(request: Request) -> Response:
        return api(pages.compare(index, _run_ids(request)))

    def alerts_page(request: Request) -> Response:
        return page(request, "alerts.html", alerts=index.alerts())

    def api_alerts(request: Request) -> Response:
        return api({"alerts": index.alerts()})

    def status_page(request: Request) -> Response:
        return page(request, "status.html", s=pages.status(index))

    def api_status(request: Request) -> Response:
        return api(pages.status(index))

    # -- files -----------------------------------------------------------------------------------

    def download(request: Request) -> Response:
        path = request.path_params["path"]
        try:
            fd = open_artifact(index.root, path)
        except ForbiddenPath as e:
            raise HTTPException(403, str(e)) from None
        except (FileNotFoundError, NotADirectoryError):
            raise HTTPException(404, "no such artifact") from None
        size = os.fstat(fd).st_size
        name = path.rsplit("/", 1)[-1]
        return StreamingResponse(
            iter_fd(fd),
            media_type="application/octet-stream",
            headers={
                "content-length": str(size),
                "content-disposition": f"attachment; filename*=UTF-8''{_quote(name)}",
            },
        )

    def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"cache-control": "max-age=86400"})  # fmt: skip

    # -- errors ----------------------------------------------------------------------------------

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if wants_json(request):
            return api({"error": exc.detail}, exc.status_code)
        return page(request, "error.html", exc.status_code, title="error", message=exc.detail)

    def no_index(request: Request, exc: Exception) -> Response:
        msg = f"{exc} (the page will work once an index is published)"
        if wants_json(request):
            return api({"error": msg}, 503)
        return page(request, "error.html", 503, title="no index", message=msg)

    routes = [
        Route("/", runs_page),
        Route("/partials/runs", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/compare", compare_page),
        Route("/alerts", alerts_page),
        Route("/status", status_page),
        Route("/download/{path:path}", download),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/compare", api_compare),
        Route("/api/alerts", api_alerts),
        Route("/api/status", api_status),
        Route("/api/version", api_version),
        Route("/static/plotly.min.js", plotly),
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
        exception_handlers={HTTPException: http_error, IndexMissingError: no_index},
    )
    app.state.index = index
    return app


def _qs(request: Request) -> dict[str, str]:
    """The request's query parameters as a dict (templates build links from it)."""
    return dict(request.query_params)


def _quote(name: str) -> str:
    return quote(name, safe="")
