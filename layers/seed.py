"""Placeholder: being written (see the issue tracker); registers no command yet."""


def add_parser(sub) -> None:  # noqa: ARG001 - filled in by the module's owner
    return None
