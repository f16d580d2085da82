"""What a supervisor raises when a child cannot start or restarts too often."""

from __future__ import annotations

from grpcpool.errors import GrpcPoolError

__all__ = ["ChildStartError", "MaxChildrenError", "RestartIntensityError"]


class ChildStartError(GrpcPoolError):
    """A child could not be started (its ``start`` raised or it died starting).

    Attributes:
        child_id: The id of the child that did not start.
    """

    def __init__(self, child_id: str, reason: str) -> None:
        self.child_id = child_id
        super().__init__(f"child {child_id!r} failed to start: {reason}")


class MaxChildrenError(ChildStartError):
    """A supervisor already has ``max_children`` children; the new one was not started.

    A :class:`ChildStartError`, so code that tolerates a child failing to
    start tolerates a full supervisor the same way.

    Attributes:
        max_children: The supervisor's limit.
    """

    def __init__(self, child_id: str, max_children: int) -> None:
        self.max_children = max_children
        super().__init__(child_id, f"the supervisor has max_children ({max_children}) already")


class RestartIntensityError(GrpcPoolError):
    """A supervisor restarted children too often and gave up."""
