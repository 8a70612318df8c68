"""Liveness of processing jobs: stall flags and heartbeat timeouts."""

from service.liveness.sweeper import LivenessSweeper, SweepResult

__all__ = ["LivenessSweeper", "SweepResult"]
