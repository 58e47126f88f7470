# Crash-safe session journal on flash: see docs/journal.md.
from journal.journal import Journal, JournalFull, RecoveryReport  # noqa: F401
