"""A tiny stand-in for JupyterLab in tests: same token scheme, ``/lab`` and ``/api/status``.

Usage: ``python standin_notebook.py PORT`` with ``JUPYTER_TOKEN`` and ``RAY_ADDRESS`` set.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = os.environ.get("JUPYTER_TOKEN", "")
STARTED = datetime.now(UTC).isoformat()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _authorized(self) -> bool:
        query = parse_qs(urlsplit(self.path).query)
        header = self.headers.get("Authorization", "")
        return bool(TOKEN) and (query.get("token", [""])[0] == TOKEN or header == f"token {TOKEN}")

    def do_GET(self) -> None:  # http.server's naming
        path = urlsplit(self.path).path
        if not self._authorized():
            self.send_response(403)
            self.end_headers()
            return
        if path == "/api/status":
            body = json.dumps({"last_activity": os.environ.get("STANDIN_LAST_ACTIVITY") or STARTED}).encode()
            kind = "application/json"
        else:
            body = (f"<html><body><h1>stand-in notebook</h1><p id='ray'>RAY_ADDRESS={os.environ.get('RAY_ADDRESS')}"
                    f"</p></body></html>").encode()
            kind = "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
