"""How the ``siamcl`` command talks: help that shows every default, plain-text descriptions,
and usage errors as one line with exit status 2."""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

__all__ = ["HelpFormatter", "OneLineErrorParser", "plain_text", "shown_default"]

# Sphinx roles (:class:`~siamcl.store.PrototypeStore`) and literals (``x``) of docstrings
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str | None) -> str:
    """A docstring as plain text for the terminal: Sphinx roles and literals unwrapped."""
    if not text:
        return ""

    def role(match: re.Match[str]) -> str:
        tilde, target = match.groups()
        return target.rsplit(".", 1)[-1] if tilde else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, text)).strip()


def shown_default(value: Any) -> str:
    """A default as a person would type or read it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's help ends with its default unless it
    already states it (``(default ...)`` or ``(VALUE)``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS:
            return text
        shown = shown_default(action.default)
        if "%(default)" in text or "default" in text.lower() or f"({shown})" in text:
            return text
        return f"{text} (default: {shown.replace('%', '%%')})"


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
