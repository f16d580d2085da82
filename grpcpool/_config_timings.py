"""Timings of the pool's own rules that are not config keys (beside :mod:`grpcpool.config`).

Each is a judgement the rules make (how often a suspect connection is
checked, when a slow connect counts as a failure, how long a move may take),
fixed here beside its reason rather than offered as a knob.
"""

__all__ = [
    "ADDRESS_RETRY_MAX",
    "LEAVE_WAIT",
    "MOVE_SLACK",
    "REFUSED_CALL_PAUSE",
    "SLOW_CONNECT",
    "SUSPECT_CHECK_INTERVAL",
]

# Passive health: a call through the pool channel that fails with UNAVAILABLE
# has its connection checked at once, but a connection's worker is asked at
# most once per this many seconds (a dead connection under load fails many
# calls at once; one check answers for all of them).
SUSPECT_CHECK_INTERVAL = 1.0
# An asyncio call refused because no connection is ready fails after this many
# seconds, not at once: a caller retrying in a loop would otherwise hold its
# event loop's thread, and the GIL, from what brings connections back.
REFUSED_CALL_PAUSE = 0.001
# Where a pool places its connections: an address whose connections all fail
# gets none for a while, then one is tried there again, after a backoff that
# starts at connection.backoff_min and grows to at most this many seconds
# (never above connection.backoff_max), so that a healed backend serves again
# within seconds; while no connection of the pool is ready at all, an address
# is tried again after at most backoff_min / 2, since then nothing is lost by
# trying.
ADDRESS_RETRY_MAX = 4.0
# A connect still not ready after this many seconds (a black-holed address
# accepts TCP and never answers) counts as a failure for placement; the worker
# itself keeps trying until connection.connect_timeout.
SLOW_CONNECT = 3.0
# A move's replacement must be ready (connected and health-checked) within
# connection.connect_timeout + connection.ping_timeout + this many seconds, or
# it is given up and its address avoided for a while.
MOVE_SLACK = 1.0
# A worker the balancer retired is left out of its plans for up to this many
# seconds while it leaves the pool's view (its channel drains meanwhile).
LEAVE_WAIT = 5.0
# A push resolver's watch that failed (endpoint.resolver with watch()) is
# started again after a backoff from this many seconds up to WATCH_RETRY_MAX;
# the pool keeps its last known addresses meanwhile.
WATCH_RETRY_MIN = 0.5
WATCH_RETRY_MAX = 30.0
# EtcdResolver: a lost etcd stream (a member down, etcd restarting) is tried
# again after a backoff from ETCD_RETRY_MIN up to ETCD_RETRY_MAX seconds, and
# its pool's connections to etcd reconnect within the same bounds, so the
# registry is followed again within about a second of etcd answering.
ETCD_RETRY_MIN = 0.1
ETCD_RETRY_MAX = 1.0
# EtcdResolver: how long one Range or Authenticate call to etcd may take.
ETCD_CALL_TIMEOUT = 5.0
