"""Secrets (the MQTT password, the HTTP bearer token) from a file or from systemd's credentials.

A secret never sits in the config itself: the config names a file, or systemd's ``LoadCredential=``
puts it under ``$CREDENTIALS_DIRECTORY``. The value is never logged.
"""

import os
from pathlib import Path

from edge.errors import EXIT_CONFIG, EdgesightError


def read_secret(path: str, credential: str, key: str) -> str | None:
    """The secret in ``path``, else in ``$CREDENTIALS_DIRECTORY/<credential>``, else None.

    A named file that cannot be read, or that is empty, is a config error naming ``key`` (e.g.
    ``[mqtt] password_file``); a trailing newline is not part of the secret.
    """
    if not path:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory or not (Path(directory) / credential).is_file():
            return None
        path = str(Path(directory) / credential)
    try:
        value = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise EdgesightError(
            f"{key}: cannot read {path} ({reason}); fix the path or its permissions", EXIT_CONFIG
        ) from e
    if not value:
        raise EdgesightError(f"{key}: {path} is empty; write the secret into it", EXIT_CONFIG)
    return value
