"""Talking to a running daemon's API over HTTP, with its bearer token: the device's own commands
(``collect``, ``dataset-export``, ``status``) reach it on 127.0.0.1 through its config, the workstation
at a URL."""

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

from edge.config import Config
from edge.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, EdgesightError
from edge.publish.secrets import read_secret

TOKEN_HINT = "; give the daemon's token (--token-file)"


def local_daemon(config: Config) -> tuple[str, str | None] | None:
    """The URL and token of the daemon this config runs, seen from its own machine; None without [http]."""
    http = config.http
    if http is None:
        return None
    host = "127.0.0.1" if http.host in ("", "0.0.0.0", "::") else http.host
    return f"http://{host}:{http.port}", read_secret(http.token_file, "http_token", "[http] token_file")


@contextlib.contextmanager
def post(url: str, path: str, document: dict[str, Any], token: str | None, timeout_s: float) -> Iterator[IO[bytes]]:
    """POST ``document`` as JSON and yield the response body as a stream. A daemon that cannot be reached
    raises EdgesightError with EXIT_UNAVAILABLE (before anything is read), a refusal EXIT_CONFIG."""
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url.rstrip("/") + path, json.dumps(document).encode(), headers, method="POST")
    with _open(request, url, path, token, timeout_s, TOKEN_HINT) as response:
        yield response


def get_json(url: str, path: str, token: str | None, timeout_s: float, hint: str = TOKEN_HINT) -> Any:
    """GET ``path`` and decode its JSON; errors as :func:`post`'s, ``hint`` said after a 401."""
    request = urllib.request.Request(url.rstrip("/") + path)
    with _open(request, url, path, token, timeout_s, hint) as response:
        try:
            return json.load(response)
        except (ValueError, OSError) as e:
            raise EdgesightError(f"{url}{path}: the answer is not JSON ({e})", EXIT_UNAVAILABLE) from e


@contextlib.contextmanager
def _open(
    request: urllib.request.Request, url: str, path: str, token: str | None, timeout_s: float, hint: str
) -> Iterator[IO[bytes]]:
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read())["error"]
        except (ValueError, KeyError, TypeError, OSError):
            reason = e.reason
        raise EdgesightError(
            f"{url}{path}: refused: HTTP {e.code} {reason}{hint if e.code == 401 else ''}", EXIT_CONFIG
        ) from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise EdgesightError(f"{url}: cannot reach the daemon ({reason})", EXIT_UNAVAILABLE) from e
    with response:
        yield response
