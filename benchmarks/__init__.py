"""Benchmarks for grpcpool: every figure of issue 6 / SPEC section 7, side by side.

Run them with ``make bench`` (``python -m benchmarks``); ``--quick`` runs every
benchmark with tiny counts (the smoke test uses it). They are scripts with
their own small harness (:mod:`benchmarks.harness`: medians of repeated,
interleaved rounds, their spread, verdicts that say "within noise" when the
rounds straddle a target, and "not measured" rows for figures that failed;
:mod:`benchmarks.report` renders them), not unit tests, and assert nothing
about timing.

Modules, one per group of figures:

- :mod:`benchmarks.hotpath`: (1) ``get_channel`` beside a bare tuple read,
  (2) the proxy future beside a pykka ``ask``, (3) throughput with threads.
- :mod:`benchmarks.rpc`: (4) unary echo RPCs, (5) a stream-limited server.
- :mod:`benchmarks.lifecycle`: (6) drop detection, recovery, pool start.
- :mod:`benchmarks.footprint`: (7) threads and RSS per worker.
- :mod:`benchmarks.forking`: (8) forked children that crash.
- :mod:`benchmarks.routing`: (9) the pool channel, routed per call.
- :mod:`benchmarks.backends`: (10a-c) one pool over several backends.
- :mod:`benchmarks.healing`: (10d, 10e) backends killed and restarted under
  calls, beside a bare grpcio ``round_robin`` channel.
- :mod:`benchmarks.aio`: (11) the asyncio pool.
- :mod:`benchmarks.idle`: (12) the CPU an idle ready pool costs, sync and asyncio,
  beside bare grpcio channels.
- :mod:`benchmarks.outliers`: (13) routing around slow and failing backends:
  ``peak_ewma``, outlier detection and panic (:mod:`benchmarks.ejection`),
  hedging (:mod:`benchmarks.hedging`), on :mod:`benchmarks.faults`' four
  backends whose faults switch while they run.
- :mod:`benchmarks.capacity`: (14) per-connection call caps, the call queue
  and autoscale against a stream-limited server, beside grpcio's A105
  ``connectionScaling``.
- :mod:`benchmarks.server`: the echo server, run in its own process
  (:mod:`benchmarks.server_faults`: the faults it switches).
- :mod:`benchmarks.callers`: caller threads and backend processes for figure 10.

:mod:`benchmarks.retire_close` is a one-off measure outside ``make bench``
(``python -m benchmarks.retire_close``): how soon a retired connection's TCP
connection closes, idle or after its last call.
"""
