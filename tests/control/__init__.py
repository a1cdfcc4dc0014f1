"""Tests of the pure battery-control logic."""
