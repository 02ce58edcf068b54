"""Every environment variable HWOsim reads, in one place.

The Dagster layer calls :meth:`Settings.from_env` once, when the code location
loads, and builds its resources from the result; nothing else reads
``os.environ``. The README's configuration table is generated from
:data:`ENV_VARS`, so the two cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# name -> (default, meaning). Secrets (AWS keys, MySQL passwords) are listed in
# the README but never read here: boto3 and dagster-mysql take them from the
# environment themselves, so they never pass through our code or logs.
ENV_VARS: dict[str, tuple[str, str]] = {
    "HWOSIM_HOME": (".hwosim", "working folder for the embedded default (local lake, SQLite files)"),
    "HWOSIM_LAKE_URL": (
        "",
        "lake location: empty or a path = local folder `$HWOSIM_HOME/lake`; `s3://bucket/prefix` = S3 API",
    ),
    "HWOSIM_LAKE_RETRY_SECONDS": (
        "60",
        "how long an S3 lake operation keeps retrying, with backoff, once S3 stops answering (long enough for a restart); then the run fails naming the lake and the key",
    ),
    "HWOSIM_SOURCE": (
        "sample",
        "`sample` (offline simulated JWST products), `mast` (the MAST archive via astroquery) or `files` (your own products at `HWOSIM_SOURCE_URL`)",
    ),
    "HWOSIM_SOURCE_URL": (
        "",
        "with `HWOSIM_SOURCE=files`: a folder, or `s3://bucket/prefix`, holding JWST products (`*.fits`, any names)",
    ),
    "HWOSIM_MAST_URL": ("https://mast.stsci.edu", "MAST server astroquery talks to"),
    "HWOSIM_MAST_TIMEOUT": ("60", "seconds before a MAST request times out"),
    "HWOSIM_MAST_RETRIES": ("3", "retries of a failed MAST request, with backoff"),
    "HWOSIM_STREAM_DB_URL": (
        "",
        "SQLAlchemy URL of the stream tables; empty = SQLite `$HWOSIM_HOME/streams.db`; `mysql+pymysql://user:pw@host/db` for MySQL/MariaDB",
    ),
    "HWOSIM_SEED": ("20261124", "global seed of every perturbation and stream fault"),
    "HWOSIM_PROFILES": ("", "path of a user profiles.yaml; empty = the packaged defaults"),
    "HWOSIM_STREAMS": ("", "path of a user streams.yaml; empty = the packaged defaults"),
    "HWOSIM_MODELS": ("", "path of a user models.yaml (the models scorecards score); empty = the packaged baselines"),
    "HWOSIM_TILE_SIZE": ("128", "edge in pixels of the image tiles (packets) of bronze image tables"),
}


def _int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name) or ENV_VARS[name][0]
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name) or ENV_VARS[name][0]
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    home: Path
    lake_url: str
    lake_retry_seconds: float
    source: str
    source_url: str
    mast_url: str
    mast_timeout: float
    mast_retries: int
    stream_db_url: str
    seed: int
    profiles_path: str
    streams_path: str
    tile_size: int
    models_path: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        get = lambda name: env.get(name) or ENV_VARS[name][0]  # noqa: E731
        home = Path(get("HWOSIM_HOME")).absolute()
        source = get("HWOSIM_SOURCE").lower()
        if source not in ("sample", "mast", "files"):
            raise ValueError(f"HWOSIM_SOURCE={source!r}: expected 'sample', 'mast' or 'files'")
        source_url = get("HWOSIM_SOURCE_URL")
        if source == "files" and not source_url:
            raise ValueError(
                "HWOSIM_SOURCE=files needs HWOSIM_SOURCE_URL: a folder or s3://bucket/prefix of JWST products"
            )
        lake_url = get("HWOSIM_LAKE_URL") or str(home / "lake")
        stream_db_url = get("HWOSIM_STREAM_DB_URL") or f"sqlite:///{home / 'streams.db'}"
        lake_retry_seconds = _float(env, "HWOSIM_LAKE_RETRY_SECONDS")
        if not 0 <= lake_retry_seconds < float("inf"):  # also refuses nan
            raise ValueError(
                f"HWOSIM_LAKE_RETRY_SECONDS={get('HWOSIM_LAKE_RETRY_SECONDS')!r}: "
                "expected a finite number of seconds >= 0 (0 = fail at the first outage)"
            )
        tile_size = _int(env, "HWOSIM_TILE_SIZE")
        if tile_size < 8:
            raise ValueError(f"HWOSIM_TILE_SIZE={tile_size}: tiles must be at least 8 pixels")
        return cls(
            home=home,
            lake_url=lake_url,
            lake_retry_seconds=lake_retry_seconds,
            source=source,
            source_url=source_url,
            mast_url=get("HWOSIM_MAST_URL"),
            mast_timeout=_float(env, "HWOSIM_MAST_TIMEOUT"),
            mast_retries=_int(env, "HWOSIM_MAST_RETRIES"),
            stream_db_url=stream_db_url,
            seed=_int(env, "HWOSIM_SEED"),
            profiles_path=get("HWOSIM_PROFILES"),
            streams_path=get("HWOSIM_STREAMS"),
            tile_size=tile_size,
            models_path=get("HWOSIM_MODELS"),
        )


def env_table_markdown() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, (default, meaning) in ENV_VARS.items():
        lines.append(f"| `{name}` | `{default}` | {meaning} |" if default else f"| `{name}` | | {meaning} |")
    return "\n".join(lines)
