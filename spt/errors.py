"""Errors that the CLI turns into one line per problem and exit code 2 (bad input, never a bug)."""

from __future__ import annotations

from typing import Sequence


class InputError(Exception):
    """Bad input from the user (config, data file, arguments). ``problems`` holds one line each."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
