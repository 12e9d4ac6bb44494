"""Errors that reach the user as one line (the CLI prints them without a traceback)."""

from __future__ import annotations

import os
from os import PathLike

__all__ = ["InputError", "PluginError", "SeplError", "StrategyError", "is_input_file", "not_a_file", "one_line"]


class SeplError(Exception):
    """A problem the user can fix: bad input, bad configuration, a clash of plugins."""


class InputError(SeplError):
    """A file that is missing, unreadable or not in the expected format.

    The message always starts with the file's path, so the one line printed by the CLI
    tells the user which file to look at.
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep (path, problem) when a worker process sends it back
        return (type(self), (self.path, self.problem))


class PluginError(SeplError):
    """A plugin that cannot be loaded, or two plugins that register the same name."""


class StrategyError(SeplError):
    """A strategy that failed on an image, or returned something that is not a label map."""


def not_a_file(path: str | PathLike[str], noun: str, article: str = "a") -> InputError:
    """The error for something named like an input file that is not one: a folder, or a broken
    link (an input left out without a word would be worse).

    >>> str(not_a_file("/nonexistent/x.png", ".png file"))
    '/nonexistent/x.png: is not a readable .png file (a broken link?)'
    """
    if os.path.isdir(path):
        return InputError(path, f"is a folder, not {article} {noun}")
    return InputError(path, f"is not a readable {noun} (a broken link?)")


def is_input_file(path: str | PathLike[str], noun: str, article: str = "a") -> bool:
    """Whether ``path`` is a file: ``False`` when nothing is there; something else named like one
    (a folder, a broken link) is :func:`not_a_file`'s error.

    >>> is_input_file("/nonexistent/x.png", "label map PNG")
    False
    """
    if os.path.isfile(path):
        return True
    if os.path.lexists(path):
        raise not_a_file(path, noun, article)
    return False


def one_line(exc: BaseException, typed: bool = False) -> str:
    """``exc``'s message on one line (its type's name when it has none); ``typed``: an exception
    that is not one of ours (:class:`SeplError`) is prefixed with its type.

    >>> one_line(ValueError("bad\\n  value"), typed=True)
    'ValueError: bad value'
    """
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if typed and not isinstance(exc, SeplError) else text
