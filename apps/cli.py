"""Argument types shared by the command lines: a bad value is refused by the parser, with one line, before anything is
loaded or written."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts: candidates, prompts per shard, limits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (seeds, part numbers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def at_least(low: int, why: str = ""):
    """An argument type: a whole number >= low; `why` says in the error what the bound is."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{f' ({why})' if why else ''}, got {value}")
        return value

    return parse


def image_side(text: str) -> int:
    """An image side in pixels: a positive multiple of 32 (SANA-Sprint's rule), at most 8192."""
    value = positive_int(text)
    if value % 32 or value > 8192:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 between 32 and 8192, got {value}")
    return value


def fraction(text: str) -> float:
    """A share from 0 up to (not including) 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value
