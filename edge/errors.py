"""The one exception for expected failures, and the exit codes the CLIs document.

Codes follow BSD sysexits so that systemd (``RestartPreventExitStatus=78``) and scripts can tell a
broken config from a crash.
"""

EXIT_OK = 0
EXIT_SOFTWARE = 70  # a bug: the traceback is printed
EXIT_USAGE = 64  # bad command-line arguments
EXIT_DATA = 65  # bad input data: an unreadable image, an empty class, a bundle that fails its checks
EXIT_NO_INPUT = 66  # a file or folder that does not exist
EXIT_UNAVAILABLE = 69  # a needed runtime or library is missing
EXIT_CONFIG = 78  # bad configuration: systemd must not restart-loop on it


class EdgesightError(Exception):
    """A failure the user can fix: ``str(e)`` is the one-line message, ``exit_code`` the process status."""

    def __init__(self, message: str, exit_code: int = EXIT_DATA) -> None:
        super().__init__(message)
        self.exit_code = exit_code
