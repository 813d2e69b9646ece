"""The ZeroMQ adapter of the order execution port."""
