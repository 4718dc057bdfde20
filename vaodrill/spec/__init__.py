"""What a drill asks: the drill spec, its durations and restore-point rules, read and checked from YAML."""
