"""Every option's default in the commands' --help."""

from __future__ import annotations

import argparse


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Appends "(default: X)" to the help of every option of parser that has a default and whose
    help does not name it already. argparse.ArgumentDefaultsHelpFormatter does this only for
    options with a help text, and also prints "(default: None)" for options without a default."""
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        # identity, not ==: a default of 0 is shown, one of False (a flag) is not
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.help and "default" in action.help:
            continue
        action.help = f"{action.help} (default: %(default)s)" if action.help else "(default: %(default)s)"
