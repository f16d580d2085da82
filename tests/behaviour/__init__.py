"""One behaviour suite, run on both pool drivers (sync actors and asyncio tasks).

Each scenario is written once against :class:`tests.behaviour.harness.Driver`
and runs twice, through the ``driver`` fixture parametrized ``["sync",
"asyncio"]``: what a user of either kind of pool sees must be the same.
"""
