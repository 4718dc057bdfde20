"""The command line and what it shows: commands, live view, doctor, cockpit and history views."""
