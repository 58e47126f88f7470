"""tools/flash.py internals: the device session, what to deploy, config checks."""
