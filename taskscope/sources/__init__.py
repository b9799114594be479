"""The Source layer: one typed protocol (`base.Source`) through which the CLI and the
dashboard read a process, whatever the look (the live agent, a read-only memory read, and
later a recording, a remote host, several processes). See base.py for the protocol and for
where a new source goes. Every failure of a source is a `ClientError` whose str() is the one
line to show.
"""

from taskscope.client import ClientError, NoAgent
from taskscope.sources.base import (
    CancelResult,
    Capability,
    DeltaUpdate,
    ProcessIdentity,
    ProcessInfo,
    SnapshotUpdate,
    Source,
    StackReply,
    Unsupported,
    Update,
)

__all__ = [
    "CancelResult",
    "Capability",
    "ClientError",
    "DeltaUpdate",
    "NoAgent",
    "ProcessIdentity",
    "ProcessInfo",
    "SnapshotUpdate",
    "Source",
    "StackReply",
    "Unsupported",
    "Update",
]
