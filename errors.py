"""The one exception type users see: a sentence that says what was wrong and what to do."""


class IfaError(Exception):
    """A problem the user can fix. The CLI prints its message without a traceback."""


class WorkspaceBusy(IfaError):
    """Another ifa process holds the workspace's write lock for longer than we wait."""


class UnknownLabel(IfaError, KeyError):
    """A label id or name the taxonomy lacks; the message names the nearest valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
