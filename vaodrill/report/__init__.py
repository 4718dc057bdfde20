"""What a run proves: the report model and its renderings, the timeline, the evidence pack, history and verify."""
