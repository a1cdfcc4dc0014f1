"""Pure battery-control logic: battery snapshots, charge state machine and limit policy."""
