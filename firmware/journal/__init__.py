# Crash-safe session journal on flash: see docs/journal.md.
from journal.journal import Journal, JournalFull  # noqa: F401
from journal.recovery import RecoveryReport  # noqa: F401
