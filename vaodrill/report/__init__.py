"""What a run proves: the report model and its renderings, the files and their seal, timeline, evidence, history."""
