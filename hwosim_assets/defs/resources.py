"""Resources for the whole code location, chosen from the environment once, at load time.

The embedded default needs no server: sample products, a lake in a local
folder, stream tables in SQLite. Setting HWOSIM_SOURCE (with HWOSIM_SOURCE_URL
for your own files), HWOSIM_LAKE_URL and HWOSIM_STREAM_DB_URL switches each to
the real service (MAST or your files, S3, MySQL).
"""

from __future__ import annotations

import dagster as dg

from hwosim_assets.defs.lake.resources import lake_from_url
from hwosim_assets.defs.mast.resources import FilesSource, MastSource, SampleSource
from hwosim_assets.defs.streams.resources import StreamDatabase
from hwosim_assets.settings import Settings


class HwosimConfig(dg.ConfigurableResource):
    """Project-wide knobs that are not a connection: the global seed, the
    profile and stream files, the tile size of image packets."""

    seed: int = 20261124
    profiles_path: str = ""
    streams_path: str = ""
    tile_size: int = 128


def resources_from_settings(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resource set for one environment; tests call it with their own Settings."""
    if settings.source == "sample":
        source = SampleSource()
    elif settings.source == "files":
        source = FilesSource(url=settings.source_url)
    else:
        source = MastSource(server_url=settings.mast_url, timeout=settings.mast_timeout, retries=settings.mast_retries)
    return {
        "lake": lake_from_url(settings.lake_url, retry_seconds=settings.lake_retry_seconds),
        "source": source,
        "stream_db": StreamDatabase(url=settings.stream_db_url),
        "hwosim": HwosimConfig(
            seed=settings.seed,
            profiles_path=settings.profiles_path,
            streams_path=settings.streams_path,
            tile_size=settings.tile_size,
        ),
    }
