"""Upper bounds of a config's sizes and times (re-exported by :mod:`grpcpool.config`).

They live apart from the defaults so that the section checks
(``grpcpool._config_sections``) can read them without importing the config
classes they check.
"""

# The most pool.max_size may be: every worker is a thread (its actor), so a
# typo must not ask for millions of them.
HARD_MAX_POOL_SIZE = 16384

# --- upper bounds of the times, in seconds -----------------------------------
# grpcio takes a time as milliseconds in a C int, so nothing may reach
# 2147483.648 s; these bounds are far below that, and low enough that a time
# typed in milliseconds (keepalive=30000, connect_timeout=10000) is an error
# rather than a pool that pings once in eight hours.
MAX_KEEPALIVE = 7200.0  # 2 hours, the TCP keepalive default
MAX_KEEPALIVE_TIMEOUT = 3600.0
MAX_PING_INTERVAL = 3600.0
MAX_PING_TIMEOUT = 600.0
MAX_CONNECT_TIMEOUT = 3600.0
# A drain may wait for long streams to finish, so it may be long.
MAX_DRAIN_TIMEOUT = 86400.0
MAX_BACKOFF = 3600.0  # backoff_min and backoff_max
MAX_TELEMETRY_INTERVAL = 86400.0
MAX_RESOLVE_INTERVAL = 86400.0
MAX_RESOLVE_TIMEOUT = 3600.0
# A connection replaced more often than every half second would spend its
# life connecting; a month is past any server's connection age limit.
MIN_MAX_AGE = 0.5
MAX_MAX_AGE = 30 * 86400.0
