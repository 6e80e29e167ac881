"""Closest-name suggestions for error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (case-insensitive), or None when nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown key 'comision_bps'; did you mean 'commission_bps'? (valid: ...)``"""
    choices = sorted(choices)
    hint = closest(name, choices)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    return f"unknown {kind} {name!r}{did_you_mean} (valid: {', '.join(choices)})"
