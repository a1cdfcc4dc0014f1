"""Tests of the device simulators, run over real transports (PTY, virtual CAN)."""
