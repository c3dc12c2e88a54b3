"""A network camera for the system test's guest: JPEG files served as an HTTP MJPEG stream, in a loop.

Standard library only, so it runs on the guest's bare python3. Stopping it with SIGSTOP freezes the
stream mid-connection, as a hung camera does.

    python3 camera.py FRAMES_DIR --port 8081 --fps 10
"""

import argparse
import http.server
import itertools
import time
from pathlib import Path


def serve(frames: list[bytes], port: int, fps: float) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for jpeg in itertools.cycle(frames):
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
                    time.sleep(1 / fps)
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, format: str, *args: object) -> None:
            return

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames", type=Path, help="folder of .jpg files, served in name order")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args()
    frames = [path.read_bytes() for path in sorted(args.frames.glob("*.jpg"))]
    if not frames:
        parser.error(f"{args.frames}: no .jpg files")
    serve(frames, args.port, args.fps)


if __name__ == "__main__":
    main()
