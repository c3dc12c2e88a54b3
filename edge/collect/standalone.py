"""A burst when no daemon holds the camera: open the configured source here and keep its frames.

Started as root (sudo) on a Pi, the command first becomes the owner of the state folder (the service's
user, with its groups, so the camera still opens): files it writes stay the daemon's to move and remove.
"""

import logging
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path

from edge.capture import Backoff, Capture, SourceEndedError, open_source
from edge.collect.burst import Kept, LiveFrame, burst
from edge.collect.collector import Origin
from edge.collect.daemon import COLLECT_SIZE, MB
from edge.collect.labelling import Labelling
from edge.config import CollectConfig, Config, state_dir
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.settings import default_device_id
from edge.service import crop
from edge.state import LiveState

log = logging.getLogger(__name__)


def become_owner_of(folder: Path) -> None:
    """As root, run on as the user who owns ``folder`` (when that is not root)."""
    if os.geteuid() != 0 or not folder.exists():
        return
    owner = folder.stat()
    if owner.st_uid == 0:
        return
    user = pwd.getpwuid(owner.st_uid)
    os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
    os.setgid(user.pw_gid)
    os.setuid(owner.st_uid)
    log.info("running as %s, the owner of %s", user.pw_name, folder)


def burst_here(
    config: Config, label: str, count: int, interval_s: float, on_kept: Callable[[Kept], None]
) -> list[Kept]:
    """Open the source, keep ``count`` frames into ``label``, close the source."""
    folder = state_dir(config)
    become_owner_of(folder)
    collect = config.collect or CollectConfig()
    try:
        labelling = Labelling(folder, int(collect.max_mb * MB))
    except OSError as e:
        raise EdgesightError(f"[collect] state_dir {folder}: cannot be used ({e.strerror})", EXIT_CONFIG) from e
    device = config.mqtt.resolved_device_id() if config.mqtt else default_device_id()
    source = open_source(config.source, COLLECT_SIZE)
    origin = Origin(source.description, config.source.roi, device)
    capture = Capture(source, LiveState(device), Backoff(config.source.reconnect_min_s, config.source.reconnect_max_s))

    def next_frame(after: int, timeout_s: float) -> LiveFrame | None:
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = capture.take(remaining)
            except SourceEndedError:
                return None
            if frame is not None and frame.index > after:
                return LiveFrame(crop(frame.image, config.source.roi), frame.ts, frame.index, origin)
        return None

    log.info("capturing %d frame(s) from %s into %s", count, source.description, label)
    try:
        return burst(next_frame, labelling, label, count, interval_s, quality=collect.jpeg_quality, on_kept=on_kept)
    except ValueError as e:
        raise EdgesightError(f"--label: {e}", EXIT_CONFIG) from e
    finally:
        capture.close()
