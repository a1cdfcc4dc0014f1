"""Tests of the sma_victron_bridge integration."""
