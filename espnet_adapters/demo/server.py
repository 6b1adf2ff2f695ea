"""The demo's HTTP server (standard library): ``GET /`` the page, ``POST /api/transcribe`` the work.

``POST /api/transcribe?route=soft&name=clip.wav`` with the audio file as the
request body answers JSON: ``routed`` (the transcript with the chosen routing,
formats.Transcript.as_dict), ``base`` (the base model's, no adapter), ``plot`` (a
PNG data URL of :func:`~espnet_adapters.demo.plots.routing_figure`) and ``seconds``
(the wall time of both decodings).  ``route`` is one of hard, soft, threshold, or
``lang=XX`` (one adapter forced).  A file that cannot be read answers 400 with
``{"error": "..."}``.  One request decodes at a time (the model is shared).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from espnet_adapters.demo.plots import routing_figure
from espnet_adapters.transcribe.engine import RouteOptions, Transcriber
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
MAX_UPLOAD = 200 * 1024 * 1024  # bytes
DEMO_ROUTES = ("threshold", "soft", "hard")


def route_choices(transcriber: Transcriber) -> list[str]:
    """The page's routing options: the LID strategies (when there is a LID), then each adapter forced."""
    routes = list(DEMO_ROUTES) if transcriber.has_lid else []
    return routes + [f"lang={lang}" for lang in transcriber.adapter_names]


def parse_route(value: str, default: RouteOptions) -> RouteOptions:
    """A ``route`` query value as RouteOptions (tau and top_k: the demo's)."""
    if value.startswith("lang="):
        return dataclasses.replace(default, lang=value[5:])
    return dataclasses.replace(default, route=value, lang=None)


def render_page(transcriber: Transcriber) -> bytes:
    choices = route_choices(transcriber)
    default = transcriber.routing.name
    options = "".join(f'<option value="{html.escape(c)}"{" selected" if c == default else ""}>{html.escape(c)}</option>'
                      for c in choices)
    text = PAGE.read_text(encoding="utf-8")
    text = text.replace("__ADAPTERS__", html.escape(", ".join(transcriber.adapter_names))).replace("__ROUTES__", options)
    return text.encode("utf-8")


def make_handler(transcriber: Transcriber) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    page = render_page(transcriber)
    base_route = dataclasses.replace(transcriber.routing, route="base", lang=None)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
            logger.info("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if urlparse(self.path).path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/api/transcribe":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {url.path}"})
                return
            query = parse_qs(url.query)
            name = Path(query.get("name", ["upload.wav"])[0]).name or "upload.wav"
            size = int(self.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_UPLOAD:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"{name}: expected 1 byte to {MAX_UPLOAD} bytes of audio"})
                return
            body = self.rfile.read(size)
            tmp_dir = None
            try:
                routing = parse_route(query.get("route", [transcriber.routing.name])[0], transcriber.routing)
                with tempfile.TemporaryDirectory(prefix="demo.") as tmp, lock:
                    tmp_dir = tmp
                    path = Path(tmp) / name
                    path.write_bytes(body)
                    start = time.perf_counter()
                    routed = transcriber.transcribe(path, routing)
                    base = transcriber.transcribe(path, base_route)
                    seconds = time.perf_counter() - start
            except UserInputError as err:
                message = str(err) if tmp_dir is None else str(err).replace(f"{tmp_dir}/", "")
                self._json(HTTPStatus.BAD_REQUEST, {"error": message})
                return
            routed.file = base.file = name
            plot = "data:image/png;base64," + base64.b64encode(routing_figure(routed)).decode("ascii")
            self._json(HTTPStatus.OK, {"routed": routed.as_dict(), "base": base.as_dict(), "plot": plot,
                                       "seconds": round(seconds, 3)})

    return Handler


def serve(transcriber: Transcriber, host: str, port: int, ready: threading.Event | None = None) -> None:
    """Serve until interrupted; ``port`` 0 picks a free port (logged, and set on ``ready.port``)."""
    server = ThreadingHTTPServer((host, port), make_handler(transcriber))
    logger.info("demo at http://%s:%d/ (Ctrl-C stops it)", host, server.server_address[1])
    if ready is not None:
        ready.port = server.server_address[1]  # type: ignore[attr-defined]
        ready.server = server  # type: ignore[attr-defined]
        ready.set()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopped")
    finally:
        server.server_close()
