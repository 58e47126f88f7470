"""The operator's dashboard (#22): `create_app(db_target, ...)`, served by `python -m backend web`."""
from __future__ import annotations


def create_app(*args, **kwargs):
    """backend.web.app.create_app, imported on use (the CLI imports this package for its parsers)."""
    from backend.web.app import create_app as make  # noqa: PLC0415

    return make(*args, **kwargs)
