"""The one exception tree of the gateway.

Every expected failure (a bad file, a bad config, a missing device) is a ``GatewayError``: the
command line prints ``str(error)`` as one line and exits 2, the daemon logs it and carries on where
that is safe. The structured fields let the status page and tests say *where* without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Root of every error the gateway expects and explains to its user.

    ``exit_code`` is the command line's; ``http_status`` the API's (400: the request was wrong,
    unless a subclass says whose fault it is).
    """

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} ({self.hint})" if self.hint else text


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration file, at a path such as ``web.chart.views[2].xScale.min``."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(GatewayError):
    """The configuration file cannot be used; ``problems`` lists every error found."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        summary = "; ".join(str(p) for p in problems[:3]) + ("; ..." if count > 3 else "")
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in the configuration: {summary}",
            where=source,
            hint="fix the file and check it with `trackside-gateway check-config FILE`",
        )

    def lines(self) -> list[str]:
        """One line per problem, prefixed by the file (and line where known), for printing."""
        out = []
        for p in self.problems:
            at = self.source
            if p.line:
                at += f":{p.line}" + (f":{p.column}" if p.column else "")
            out.append(f"{at}: {p}")
        return out


class InputFileError(GatewayError):
    """A recorded file (FIT, Excel, CSV) is missing, corrupt, truncated or of the wrong kind."""

    def __init__(self, path: str, message: str, *, location: str | None = None, hint: str | None = None) -> None:
        self.path = path
        self.location = location
        where = f"{path} ({location})" if location else path
        super().__init__(message, where=where, hint=hint)


class DecodeError(GatewayError):
    """A sensor payload cannot be decoded; ``offset`` names the byte at fault when known."""

    def __init__(self, kind: str, message: str, *, offset: int | None = None) -> None:
        self.kind = kind
        self.offset = offset
        where = f"{kind} byte {offset}" if offset is not None else kind
        super().__init__(message, where=where)


class SpoolError(GatewayError):
    """The on-box event store cannot accept or return events (not the client's fault: HTTP 503)."""

    http_status = 503


class ReplayError(GatewayError):
    """A replay that cannot be started or controlled (a bad speed, an unknown or ended replay)."""


class ApiError(GatewayError):
    """A request the API refuses, with its HTTP status (and headers such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.http_status = status
        self.headers = headers or {}
        super().__init__(message)


class NotFound(GatewayError):
    """Something asked for by name does not exist (HTTP 404)."""

    http_status = 404


class Busy(GatewayError):
    """The box is doing as much of this kind of work as it may at once (HTTP 503, Retry-After)."""

    http_status = 503

    def __init__(self, message: str, *, retry_after_s: int = 10, where: str | None = None,
                 hint: str | None = None) -> None:
        self.headers = {"Retry-After": str(retry_after_s)}
        super().__init__(message, where=where, hint=hint)
