"""JWST products from the MAST archive, through astroquery.

``query_catalog`` turns a :class:`Selection` into a catalog manifest
(records.CATALOG_SCHEMA, one row per product file) and ``download_product``
lands one of those files byte-exact. Both go through astroquery's real
``Observations`` client, so what runs in tests against the local replay server
(hwosim_assets_tests/mast_server.py) is what runs against mast.stsci.edu.

Products are grouped by the MAST observation that owns them; its id, without
the target part (``products.observation_id_from_mast``), is the same one the
files' own headers give, and becomes a Dagster partition key.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import polars as pl
import requests
from astroquery import log as astroquery_log
from astroquery.exceptions import InvalidQueryError, RemoteServiceError
from astroquery.mast import ObservationsClass

from hwosim_assets.checksums import sha256_of
from hwosim_assets.ingest.products import observation_id_from_mast
from hwosim_assets.ingest.selection import Selection, normalize_program, select_products  # noqa: F401 (re-exported)
from hwosim_assets.records import CATALOG_SCHEMA

if TYPE_CHECKING:
    from astropy.table import Row

# astroquery 0.4.11 endpoints, relative to the server URL.
INVOKE_PATH = "/api/v0/invoke"
COLUMNS_CONFIG_PATH = "/portal/Mashup/Mashup.asmx/columnsconfig"
DOWNLOAD_PATH = "/api/v0.1/Download/file"
BUNDLE_PATH = "/api/v0.1/Download/bundle"

BACKOFF_SECONDS = 0.5  # first wait between retries; doubles each time


class MastError(RuntimeError):
    """Anything that went wrong talking to MAST."""


class MastQueryError(MastError):
    """A catalogue query failed or found nothing."""


class MastDownloadError(MastError):
    """A product could not be downloaded intact."""


# --------------------------------------------------------------------- ids


def product_type_of(filename: str) -> str:
    """The JWST file suffix: ``..._nis_x1dints.fits`` -> ``x1dints``."""
    stem = filename.rsplit(".", 1)[0]
    return stem.rsplit("_", 1)[-1].lower()


# ------------------------------------------------------------ astroquery glue


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """Gives every request a timeout: astroquery 0.4.11 sends MAST queries and
    downloads with ``timeout=None`` (wait forever), and its own ``TIMEOUT`` is
    only checked after a response has arrived."""

    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        if timeout is None:
            timeout = self.timeout
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


def observations_client(server_url: str, timeout: float) -> ObservationsClass:
    """A fresh astroquery ``Observations`` client that talks to ``server_url``.

    astroquery 0.4.11 reads ``astroquery.mast.conf.server`` once, at import,
    into class attributes of its portal connection (``MAST_REQUEST_URL`` and
    friends), so changing ``conf.server`` later has no effect. The instance's
    portal connection is pointed at the server instead - as STScI's own tools
    (jwql) do - which changes no global state, so sources for different servers
    can live side by side. Each client also gets its own column-config cache
    (astroquery shares one per process) and a per-request timeout.
    """
    base = server_url.rstrip("/")
    client = ObservationsClass()
    portal = client._portal_api_connection
    portal.MAST_REQUEST_URL = base + INVOKE_PATH
    portal.COLUMNS_CONFIG_URL = base + COLUMNS_CONFIG_PATH
    portal.MAST_DOWNLOAD_URL = base + DOWNLOAD_PATH
    portal.MAST_BUNDLE_URL = base + BUNDLE_PATH
    portal._column_configs = {}
    adapter = _TimeoutAdapter(timeout)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)
    return client


def _retryable(exc: BaseException) -> bool:
    """Timeouts, dropped connections and 5xx are worth another try; 4xx and
    malformed answers are not."""
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(
        exc, (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError, TimeoutError)
    )


T = TypeVar("T")


def _with_retries(call: Callable[[], T], retries: int, describe: Callable[[BaseException], str], error: type) -> T:
    for attempt in range(retries + 1):
        try:
            return call()
        except (requests.RequestException, RemoteServiceError, InvalidQueryError, TimeoutError) as exc:
            if attempt < retries and _retryable(exc):
                time.sleep(BACKOFF_SECONDS * 2**attempt)
                continue
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise error(f"{describe(exc)}{tries}: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable")


def _cell(row: Row, name: str) -> Any:
    """A value of an astropy table row, None when masked or absent."""
    if name not in row.colnames:
        return None
    value = row[name]
    if value is np.ma.masked or isinstance(value, np.ma.core.MaskedConstant):
        return None
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------- query


def query_catalog(selection: Selection, *, server_url: str, timeout: float = 60, retries: int = 3) -> pl.DataFrame:
    """The JWST products MAST has for a selection, as a catalog manifest.

    Observations are queried with ``Observations.query_criteria`` (JWST only,
    by program, target and - when given in full - instrument mode), their
    products listed with ``get_product_list``, then filtered and capped with
    :func:`select_products`. A product listed under several observations
    (a level-2 exposure is also a member of its stage-3 observation) is kept
    once, under the observation with the highest calibration level.
    """
    if not (selection.programs or selection.targets):
        raise ValueError(f"{selection}: give at least one program or target, not all of JWST")
    client = observations_client(server_url, timeout)

    def describe(service: str) -> Callable[[BaseException], str]:
        return lambda exc: f"MAST {service} at {server_url} failed for {selection}"

    criteria: dict = {"obs_collection": "JWST"}
    if selection.programs:  # MAST writes JWST proposal ids unpadded ("2734")
        criteria["proposal_id"] = sorted({str(int(p)) if p.isdigit() else p for p in selection.programs})
    if selection.targets:
        criteria["target_name"] = list(selection.targets)
    if selection.instruments and all("/" in i for i in selection.instruments):
        criteria["instrument_name"] = list(selection.instruments)

    observations = _with_retries(
        lambda: client.query_criteria(**criteria), retries, describe("Mast.Caom.Filtered"), MastQueryError
    )
    if len(observations) == 0:
        raise MastQueryError(f"MAST at {server_url} has no JWST observations for {selection}")
    products = _with_retries(
        lambda: client.get_product_list(observations), retries, describe("Mast.Caom.Products"), MastQueryError
    )

    parents = {str(_cell(o, "obsid")): o for o in observations}
    best: dict[str, tuple[int, dict]] = {}
    for p in products:
        parent = parents.get(str(_cell(p, "parent_obsid") or _cell(p, "obsID")))
        filename = _cell(p, "productFilename") or ""
        if parent is None or not filename.endswith(".fits"):
            continue
        checksum = _cell(p, "checksum")
        row = {
            "obs_id": observation_id_from_mast(_cell(parent, "obs_id") or ""),
            "program": normalize_program(str(_cell(parent, "proposal_id") or "")),
            "instrument": _cell(parent, "instrument_name"),
            "target": _cell(parent, "target_name"),
            "product_type": (_cell(p, "productSubGroupDescription") or product_type_of(filename)).lower(),
            "calib_level": _cell(p, "calib_level"),
            "filename": filename,
            "data_uri": _cell(p, "dataURI"),
            "size": _cell(p, "size"),
            "checksum": checksum if isinstance(checksum, str) and re.fullmatch(r"[0-9a-f]{64}", checksum) else None,
            "source": "mast",
            "simulated": False,
        }
        rank = _cell(parent, "calib_level") or 0
        if row["data_uri"] not in best or rank > best[row["data_uri"]][0]:
            best[row["data_uri"]] = (rank, row)

    catalog = pl.DataFrame([row for _, row in best.values()], schema=CATALOG_SCHEMA, orient="row")
    chosen = select_products(catalog, selection)
    if chosen.is_empty():
        raise MastQueryError(
            f"MAST at {server_url} lists {len(catalog)} FITS products in {len(observations)} observations, "
            f"none of them matching {selection}"
        )
    return chosen


# ---------------------------------------------------------------- download


def download_product(row: Mapping, dest_dir: Path, *, server_url: str, timeout: float = 60, retries: int = 3) -> Path:
    """Download one catalog row's file to ``dest_dir/<filename>``, checked.

    The file goes to a temporary name in ``dest_dir`` first and is renamed
    only once its size (and SHA-256, when the catalog has one) match, so
    ``dest_dir`` never holds a partial or corrupt product under its real name.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    filename, uri = row["filename"], row["data_uri"]
    client = observations_client(server_url, timeout)
    base_url = server_url.rstrip("/") + DOWNLOAD_PATH
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)

    def attempt() -> None:
        # verbose=True is astroquery's streaming path (blocks straight to disk);
        # with verbose=False, 0.4.11 holds the whole file in memory first. Its
        # progress bar goes to a string buffer while its log level is above INFO.
        level = astroquery_log.level
        astroquery_log.setLevel("WARNING")
        try:
            status, msg, url = client.download_file(
                uri, local_path=str(tmp), base_url=base_url, cache=False, verbose=True
            )
        finally:
            astroquery_log.setLevel(level)
        if status != "COMPLETE":  # astroquery reports HTTP errors as a status, not an exception
            code = re.search(r"\b(\d{3}) (?:Server|Client) Error", msg or "")
            response = requests.Response()
            response.status_code = int(code.group(1)) if code else 0
            raise requests.HTTPError(f"astroquery reported {status}: {msg}", response=response)

    try:
        _with_retries(
            attempt, retries, lambda exc: f"download of {filename} ({uri}) from {server_url}", MastDownloadError
        )
        actual = tmp.stat().st_size
        if actual != row["size"]:
            raise MastDownloadError(f"{filename}: expected {row['size']} bytes, got {actual} from {server_url}")
        if row.get("checksum"):
            digest = sha256_of(tmp)
            if digest != row["checksum"]:
                raise MastDownloadError(f"{filename}: expected sha256 {row['checksum']}, got {digest}")
        target = dest_dir / filename
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)
