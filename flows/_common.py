"""Small helpers shared by the flows (no business logic here)."""

from __future__ import annotations

from backlake.lake import Lake
from backlake.settings import get_settings


def open_lake(lake_uri: str | None = None) -> Lake:
    """The lake from settings, or at ``lake_uri`` when a flow parameter gives one."""
    return Lake(get_settings(lake_uri=lake_uri) if lake_uri else get_settings())
