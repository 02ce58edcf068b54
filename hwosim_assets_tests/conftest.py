"""Shared fixtures: real servers, one of each per test session (see services.py).

Fixture names are a contract with every test module: ``mariadb``,
``seaweedfs``, ``s3_bucket`` and ``s3_env``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwosim_assets.ingest import sample
from hwosim_assets_tests import services
from hwosim_assets_tests.mast_server import REAL_JWST_DIR, real_jwst_files


@pytest.fixture(scope="session")
def mariadb():
    """A MariaDB server: ``.url`` (database ``hwosim``), ``.new_database(name)``,
    ``.host/.port/.user/.password/.database``, ``.stop()/.start()/.restart()``.
    A test that stops it must start it again (``restart()`` does both)."""
    db = services.start_mariadb()
    yield db
    services.close_mariadb(db)


@pytest.fixture(scope="session")
def seaweedfs():
    """A SeaweedFS S3 API that requires credentials: ``.endpoint_url``,
    ``.access_key``, ``.secret_key``, ``.new_bucket()``, ``.env()``, ``.client()``."""
    fs = services.start_seaweedfs()
    yield fs
    services.close_seaweedfs(fs)


@pytest.fixture
def s3_bucket(seaweedfs):
    """A new, empty bucket, deleted with its contents after the test."""
    name = seaweedfs.new_bucket()
    yield name
    try:
        seaweedfs.drop_bucket(name)
    except Exception:
        pass  # the whole server folder goes at session end anyway


@pytest.fixture
def s3_env(seaweedfs, monkeypatch):
    """AWS_* variables pointing boto3 (and so S3Lake) at the session's SeaweedFS."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe a metadata service
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs.env()


@pytest.fixture(scope="module", params=["sample", "real"])
def served_dir(request, tmp_path_factory) -> Path:
    """What the MAST replay server serves: the sample products always, and the
    real JWST files of shared/data/jwst when that folder holds any."""
    if request.param == "real":
        if not real_jwst_files():
            pytest.skip(f"no real JWST products (*.fits) in {REAL_JWST_DIR}; see its README")
        return REAL_JWST_DIR
    folder = tmp_path_factory.mktemp("served")
    sample.write_sample_products(folder)
    return folder
