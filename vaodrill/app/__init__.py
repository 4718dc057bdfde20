"""The command line and what it shows: the commands, the live view, doctor and the cockpit."""
