"""The sd_notify protocol: READY, WATCHDOG, STATUS and STOPPING for systemd's Type=notify.

systemd-python's ``systemd.daemon.notify`` is used where it is installed (the ``systemd`` extra);
otherwise the datagram protocol itself: one AF_UNIX datagram to the socket in $NOTIFY_SOCKET (a
path, or an abstract name starting with '@'). Outside systemd (no $NOTIFY_SOCKET) it does nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        self._native = None
        if self.address:
            with contextlib.suppress(ImportError):  # the systemd extra is optional
                self._native = importlib.import_module("systemd.daemon").notify

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        message = "\n".join(fields)
        if self._native is not None:
            return bool(self._native(message))
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop on a receiver that does not read (systemd always does).
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8"), target)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")
