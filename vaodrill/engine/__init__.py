"""Runs a drill: plan order, stages and their polling cadence, signals and live progress."""
