"""The dashboard's request handlers: each page as HTML (Jinja2 templates) and as JSON under
`/api/`, artifact downloads, plotly.js, and the error pages. The app's state holds the `Index`,
the template environment and the poll interval (see app.py)."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import duckdb
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse

from ledgerx.errors import LedgerError
from ledgerx.ui import pages
from ledgerx.ui.files import ForbiddenPath, iter_fd, open_artifact, plotly_js
from ledgerx.ui.queries import Index


def _index(request: Request) -> Index:
    return request.app.state.index  # type: ignore[no-any-return]


def page(request: Request, name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
    state = request.app.state
    ctx.setdefault("title", name.removesuffix(".html"))
    ctx.setdefault("streamed", False)
    ctx.setdefault("plotly", False)
    html = state.env.get_template(name).render(
        request=request, root=str(state.index.root), poll_ms=state.poll_ms, **ctx
    )
    return HTMLResponse(html, status_code=code)


def api(obj: Any, code: int = 200) -> Response:
    body = json.dumps(obj, default=str, ensure_ascii=False, allow_nan=False)
    return Response(body, status_code=code, media_type="application/json")


def _qs(request: Request) -> dict[str, str]:
    """The request's query parameters as a dict (templates build links from it)."""
    return dict(request.query_params)


# -- runs ----------------------------------------------------------------------------------------


def runs_page(request: Request) -> Response:
    index = _index(request)
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
    return api(_index(request).runs(**pages.runs_args(request.query_params)))


def api_version(request: Request) -> Response:
    return api({"version": _index(request).version()})


# -- one run -------------------------------------------------------------------------------------


def _detail(request: Request) -> dict[str, Any]:
    qp = request.query_params
    run_id = request.path_params["run_id"]
    d = pages.run_detail(
        _index(request),
        run_id,
        metric=qp.get("metric"),
        goal=qp.get("goal", "max"),
        tsort=qp.get("tsort"),
        tdesc=qp.get("tdir", "desc") != "asc",
    )
    if d is None:
        raise HTTPException(404, f"no run {run_id!r} in the index")
    return d


def run_page(request: Request) -> Response:
    """The page's head goes out first, so the browser fetches and runs plotly.js (async) while
    the trials are queried; then the rest of the page (404 decided before anything is sent)."""
    state = request.app.state
    run_id = request.path_params["run_id"]
    if _index(request).run(run_id) is None:
        raise HTTPException(404, f"no run {run_id!r} in the index")

    def chunks() -> Iterator[str]:
        yield state.env.get_template("_head.html").render(title=run_id, plotly=True)
        try:
            d = _detail(request)
        except (HTTPException, LedgerError, duckdb.Error) as e:  # the index went away meanwhile
            yield f"<body><p class='failure'>{html.escape(str(e))}</p></body></html>"
            return
        yield state.env.get_template("run.html").render(
            request=request, root=str(state.index.root), poll_ms=state.poll_ms, title=run_id,
            d=d, qs=_qs(request), streamed=True, plotly=True,
        )  # fmt: skip

    return StreamingResponse(chunks(), media_type="text/html; charset=utf-8")


def api_run(request: Request) -> Response:
    return api(_detail(request))


# -- compare, alerts, status ---------------------------------------------------------------------


def _run_ids(request: Request) -> list[str]:
    raw = ",".join(request.query_params.getlist("runs"))
    return [r for r in (s.strip() for s in raw.split(",")) if r]


def compare_page(request: Request) -> Response:
    c = pages.compare(_index(request), _run_ids(request))
    return page(request, "compare.html", c=c, plotly=bool(c["chart"]["keys"]))


def api_compare(request: Request) -> Response:
    return api(pages.compare(_index(request), _run_ids(request)))


def alerts_page(request: Request) -> Response:
    return page(request, "alerts.html", alerts=_index(request).alerts())


def api_alerts(request: Request) -> Response:
    return api({"alerts": _index(request).alerts()})


def status_page(request: Request) -> Response:
    return page(request, "status.html", s=pages.status(_index(request)))


def api_status(request: Request) -> Response:
    return api(pages.status(_index(request)))


# -- files ---------------------------------------------------------------------------------------


def download(request: Request) -> Response:
    """An artifact file, streamed from the descriptor that was checked (files.py)."""
    path = request.path_params["path"]
    try:
        fd = open_artifact(_index(request).root, path)
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
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        },
    )


def plotly(request: Request) -> Response:
    return FileResponse(
        plotly_js(), media_type="text/javascript", headers={"cache-control": "max-age=86400"}
    )


# -- errors --------------------------------------------------------------------------------------


def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return api({"error": exc.detail}, exc.status_code)
    return page(request, "error.html", exc.status_code, title="error", message=exc.detail)


def no_index(request: Request, exc: Exception) -> Response:
    msg = f"{exc} (the page will work once an index is published)"
    if request.url.path.startswith("/api/"):
        return api({"error": msg}, 503)
    return page(request, "error.html", 503, title="no index", message=msg)
