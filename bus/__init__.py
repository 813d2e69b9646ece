"""The ZeroMQ adapter of the order execution port: wire codec, client protocol, clients, CLI."""

from bus.blocking import BlockingOrderExecutionPort, BlockingOrderHandle, BlockingUpdateStream
from bus.client import ZmqOrderExecutionPort
from bus.monitor import BlockingMonitor

__all__ = [
    "BlockingMonitor",
    "BlockingOrderExecutionPort",
    "BlockingOrderHandle",
    "BlockingUpdateStream",
    "ZmqOrderExecutionPort",
]
