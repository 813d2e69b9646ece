"""Example strategies: runnable processes that trade through the public port API.

- ``examples.market_maker``: two-sided quoting with inventory skew (asyncio port).
- ``examples.twap``: a parent order worked in time slices by one child order (blocking port).

Both take the venue's endpoints and their strategy id from ``--command`` / ``--events`` /
``--strategy`` or from ``ORDERBUS_COMMAND`` / ``ORDERBUS_EVENTS`` / ``ORDERBUS_STRATEGY``, log to
stderr and print one JSON summary line on stdout when they end. ``examples/venue.yaml`` is the
venue they are tuned for (``docker-compose.yml`` runs them all; see docs/deployment.md).
"""
