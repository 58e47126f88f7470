"""Reference backend: verify signed session records, store them exactly once, acknowledge, and
publish signed tariffs, card lists and commands. `python -m backend --help` lists the commands."""
