"""Home Assistant glue, one module per device kind: coordinator and entity descriptions."""
