"""Resources for the whole code location, chosen from the environment once, at load time.

The embedded default needs no server: sample products, a lake in a local
folder, stream tables in SQLite. Setting HWOSIM_SOURCE (with HWOSIM_SOURCE_URL
for your own files), HWOSIM_LAKE_URL and HWOSIM_STREAM_DB_URL switches each to
the real service (MAST or your files, S3, MySQL).
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from hwosim_assets.defs.lake.resources import lake_from_url
from hwosim_assets.defs.mast.resources import FilesSource, MastSource, SampleSource
from hwosim_assets.defs.project import HwosimConfig
from hwosim_assets.defs.streams.resources import StreamDatabase
from hwosim_assets.settings import Settings


def resources_from_settings(settings: Settings, secrets_by_name: bool = True) -> dict[str, dg.ConfigurableResource]:
    """The resource set for one environment; tests call it with their own Settings.

    A stream database URL that holds a password is handed to Dagster as
    `dg.EnvVar("HWOSIM_STREAM_DB_URL")`: resource config is stored in every
    job snapshot and shown in the UI, so only the variable's name may go
    there; the run resolves it from its own environment. (The S3 keys never
    pass through resources: boto3 reads them from the environment itself.)
    `secrets_by_name=False` gives the resolved URL, for the `hwosim`
    command, which stores nothing.
    """
    if settings.source == "sample":
        source = SampleSource()
    elif settings.source == "files":
        source = FilesSource(url=settings.source_url)
    else:
        source = MastSource(server_url=settings.mast_url, timeout=settings.mast_timeout, retries=settings.mast_retries)
    return {
        "lake": lake_from_url(settings.lake_url, retry_seconds=settings.lake_retry_seconds),
        "source": source,
        "stream_db": StreamDatabase(
            url=dg.EnvVar("HWOSIM_STREAM_DB_URL")
            if secrets_by_name and sa.make_url(settings.stream_db_url).password
            else settings.stream_db_url
        ),
        "hwosim": HwosimConfig(
            seed=settings.seed,
            profiles_path=settings.profiles_path,
            streams_path=settings.streams_path,
            tile_size=settings.tile_size,
            models_path=settings.models_path,
        ),
    }
