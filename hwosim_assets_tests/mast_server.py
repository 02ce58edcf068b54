"""A local stand-in for the MAST archive, for tests and benchmarks.

The build machines cannot reach mast.stsci.edu, yet the MAST path must run
through astroquery for real. ``MastReplayServer`` answers, on 127.0.0.1, the
requests astroquery 0.4.11's ``Observations`` makes:

* ``POST /portal/Mashup/Mashup.asmx/columnsconfig`` (``colConfigId=...``): the
  column configuration astroquery builds ``query_criteria`` filters from;
* ``POST /api/v0/invoke`` (``request=<Mashup JSON>``): the services
  ``Mast.Caom.Filtered`` (``query_criteria``) and ``Mast.Caom.Products``
  (``get_product_list``), with MAST's filter semantics and paging;
* ``HEAD`` then ``GET /api/v0.1/Download/file?uri=mast:JWST/product/<file>``
  (``download_file``): the file's bytes.

Answers are the recorded responses in ``data/mast/`` filled with rows that
describe the FITS files in a folder, read from their primary headers. The
server can be told to misbehave (5xx, delays, truncated downloads, no results)
and logs every request so tests can check what astroquery asked.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from astropy.io import fits

from hwosim_assets.ingest.mast import COLUMNS_CONFIG_PATH, DOWNLOAD_PATH, INVOKE_PATH, product_type_of
from hwosim_assets.ingest.products import FitsProductError, identify, instrument_mode, observation_id

TEMPLATES = Path(__file__).parent / "data" / "mast"
# Real JWST products beside the repository (../shared/data/jwst), or where HWOSIM_TEST_JWST_DIR says.
REAL_JWST_DIR = Path(
    os.environ.get("HWOSIM_TEST_JWST_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "jwst"
)

DESCRIPTIONS = {
    "x1dints": "exposure (L2b): 1D extracted spectra per integration",
    "x1d": "exposure/target (L2b/L3): 1D extracted spectrum",
    "calints": "exposure (L2b): calibrated 3D image, per integration",
    "cal": "exposure (L2b): calibrated 2D image",
    "i2d": "exposure/target (L2b/L3): rectified 2D image",
    "s2d": "exposure/target (L2b/L3): rectified 2D spectral image",
    "rate": "exposure (L2a): countrate image",
    "rateints": "exposure (L2a): countrate image per integration",
}


def real_jwst_files() -> list[Path]:
    """The real JWST products kept beside the repository, if any."""
    return sorted(REAL_JWST_DIR.glob("*.fits")) if REAL_JWST_DIR.is_dir() else []


def products_to_serve(tmp_dir: Path) -> Path:
    """The folder a replay server should serve: the real JWST files when there
    are any, else the project's sample products written into ``tmp_dir``."""
    if real_jwst_files():
        return REAL_JWST_DIR
    from hwosim_assets.ingest.sample import write_sample_products

    write_sample_products(Path(tmp_dir))
    return Path(tmp_dir)


def _load(name: str) -> dict:
    return json.loads((TEMPLATES / name).read_text())


def _text(header, *keys: str) -> str:
    """The first non-empty value among header keys, as a stripped string."""
    for key in keys:
        value = str(header.get(key, "") or "").strip()
        if value and value.upper() != "N/A":
            return value
    return ""


def _number(header, key: str):
    value = header.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    service: str | None = None  # Mashup service of an invoke request
    params: dict | None = None  # its params
    col_config: str | None = None  # colConfigId of a columnsconfig request
    status: int = 0
    user_agent: str = ""


@dataclass
class _Failure:
    status: int
    remaining: int
    path: str


@dataclass
class _Delay:
    seconds: float
    remaining: int | None
    path: str


@dataclass
class MastReplayServer:
    """``with MastReplayServer(folder) as mast: ... mast.url ...``

    Misbehaviour, for tests (all thread-safe, settable while running):
    ``fail_next(status, count, path)``, ``delay(seconds, count, path)``,
    ``truncate_downloads`` (True or "body": fewer bytes than Content-Length,
    then the connection closes; "file": a well-formed but short response,
    fewer bytes than the size the catalog reported) and ``empty_results``.
    """

    products_dir: Path
    truncate_downloads: bool | str = False
    empty_results: bool = False
    requests: list[LoggedRequest] = field(default_factory=list)

    def __post_init__(self):
        self.products_dir = Path(self.products_dir)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._observations_template = _load("observations.json")
        self._products_template = _load("products.json")
        self._col_configs = {
            "Mast.Caom.Cone": _load("columnsconfig_caom.json"),
            "Mast.Caom.Products": _load("columnsconfig_products.json"),
        }
        self.files, self.observations, self.products = self._build_archive()

    # ------------------------------------------------------------- archive

    def _build_archive(self) -> tuple[dict[str, Path], list[dict], list[dict]]:
        """One CAOM observation per observation id (as the files' headers give
        it); one product row per FITS file, named and sized as on disk.

        MAST's own conventions are followed where the files allow: the
        observation is the stage-3 one (``jw02783-o002_t001_miri_p750l-slitlessprism``:
        our observation id with a target part, ``_s<source>`` for a
        fixed-slit or MSA source), proposal ids unpadded, the product subgroup
        the product type upper-cased (decided from the headers, as the
        archive's own ingest does, so a renamed file is listed as what it
        is), calibration level 3 for products named after the association,
        else 2. Files HWOsim cannot read are served too, listed under the
        product type of their file-name suffix.
        """
        files = {p.name: p for p in sorted(self.products_dir.glob("*.fits"))}
        if not files:
            raise FileNotFoundError(f"no .fits files to serve in {self.products_dir}")
        groups: dict[str, list[tuple[Path, fits.Header, str]]] = {}
        for path in files.values():
            header = fits.getheader(path, 0)
            try:
                info = identify(path)
                obs_id, product_type = info.obs_id, info.product_type
            except FitsProductError:
                obs_id, product_type = observation_id(header), product_type_of(path.name)
            groups.setdefault(obs_id, []).append((path, header, product_type))

        observations, products = [], []
        for number, (obs_id, members) in enumerate(sorted(groups.items())):
            obsid = str(87_000_000 + number)
            header = members[0][1]
            program = _text(header, "PROGRAM")
            exp_type = _text(header, "EXP_TYPE").upper()
            instrument = instrument_mode(header)
            optical = ";".join(v for v in (_text(header, "FILTER"), _text(header, "PUPIL", "GRATING")) if v)
            types = {product_type for _, _, product_type in members}
            source = _number(fits.getheader(members[0][0], 1), "SOURCEID")  # on the SCI / EXTRACT1D header
            target = f"s{int(source):05d}" if source is not None and exp_type.startswith("NRS_") else "t001"
            prefix, _, rest = obs_id.partition("_")
            observations.append(
                {
                    "dataproduct_type": "spectrum" if types & {"x1dints", "x1d", "s2d"} else "image",
                    "obs_collection": "JWST",
                    "instrument_name": instrument,
                    "project": "JWST",
                    "filters": optical,
                    "wavelength_region": "INFRARED",
                    "target_name": _text(header, "TARGNAME", "TARGPROP"),
                    "target_classification": _text(header, "TARGDESC"),
                    "obs_id": f"{prefix}_{target}_{rest}",
                    "s_ra": _number(header, "TARG_RA"),
                    "s_dec": _number(header, "TARG_DEC"),
                    "proposal_id": str(int(program)) if program.isdigit() else program,
                    "proposal_pi": _text(header, "PI_NAME"),
                    "calib_level": 3,
                    "t_min": min((_number(h, "EXPSTART") or 0.0 for _, h, _ in members), default=None),
                    "t_max": max((_number(h, "EXPEND") or 0.0 for _, h, _ in members), default=None),
                    "t_exptime": _number(header, "EFFEXPTM"),
                    "obs_title": _text(header, "TITLE"),
                    "obsid": obsid,
                    "objID": str(97_000_000 + number),
                }
            )
            for path, member, product_type in members:
                # Stage-3 products are named after the association (jw02734-o002_...).
                calib_level = 3 if re.match(r"jw\d{5}-", path.name) else 2
                products.append(
                    {
                        "obsID": obsid,
                        "obs_collection": "JWST",
                        "dataproduct_type": observations[-1]["dataproduct_type"],
                        "obs_id": path.name.rsplit(".", 1)[0].rsplit("_", 1)[0],
                        "description": DESCRIPTIONS.get(product_type, product_type),
                        "type": "S",
                        "dataURI": f"mast:JWST/product/{path.name}",
                        "productType": "SCIENCE",
                        "productGroupDescription": "Minimum Recommended Products" if calib_level == 3 else None,
                        "productSubGroupDescription": product_type.upper(),
                        "productDocumentationURL": "",
                        "project": "CALJWST",
                        "prvversion": _text(member, "CAL_VER"),
                        "productFilename": path.name,
                        "size": path.stat().st_size,
                        "proposal_id": observations[-1]["proposal_id"],
                        "parent_obsid": obsid,
                        "dataRights": "PUBLIC",
                        "calib_level": calib_level,
                        "filters": optical,
                    }
                )
        return files, observations, products

    # ----------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the replay server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MastReplayServer:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                replay._handle(self, "GET")

            def do_HEAD(self):
                replay._handle(self, "HEAD")

            def do_POST(self):
                replay._handle(self, "POST")

            def log_message(self, *args):  # the request log is kept in replay.requests
                pass

        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mast-replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> MastReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------- misbehaving

    def fail_next(self, status: int = 500, count: int = 1, path: str = "") -> None:
        """Answer the next ``count`` requests (whose path contains ``path``) with ``status``."""
        with self._lock:
            self._failures.append(_Failure(status, count, path))

    def delay(self, seconds: float, count: int | None = None, path: str = "") -> None:
        """Hold the next ``count`` matching requests (all, if None) for ``seconds``."""
        with self._lock:
            self._delays.append(_Delay(seconds, count, path))

    def behave(self) -> None:
        """Forget every misbehaviour and the request log."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self.requests.clear()
        self.truncate_downloads = False
        self.empty_results = False

    def services(self) -> list[str]:
        """The Mashup services astroquery invoked, in order."""
        return [r.service for r in self.requests if r.service]

    def _take(self, rules: list, path: str):
        with self._lock:
            for rule in rules:
                if rule.path in path and (rule.remaining is None or rule.remaining > 0):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    # ------------------------------------------------------------- serving

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) if method == "POST" else b""
        logged = LoggedRequest(method, url.path, parse_qs(url.query), user_agent=handler.headers.get("User-Agent", ""))
        form = parse_qs(body.decode())
        if url.path == INVOKE_PATH and "request" in form:
            mashup = json.loads(form["request"][0])
            logged.service, logged.params = mashup.get("service"), mashup.get("params")
        elif url.path == COLUMNS_CONFIG_PATH:
            logged.col_config = form.get("colConfigId", [""])[0]
        with self._lock:
            self.requests.append(logged)

        delay = self._take(self._delays, url.path)
        if delay and self._stopping.wait(delay.seconds):
            return
        failure = self._take(self._failures, url.path)
        try:
            if failure:
                logged.status = failure.status
                self._send(handler, failure.status, b"<html><body>Service Unavailable</body></html>", "text/html")
            elif url.path == COLUMNS_CONFIG_PATH and method == "POST":
                logged.status = 200
                self._send_json(handler, self._col_configs.get(logged.col_config, {}))
            elif url.path == INVOKE_PATH and method == "POST" and logged.service:
                logged.status = 200
                self._send_json(handler, self._invoke(mashup))
            elif url.path == DOWNLOAD_PATH and method in ("GET", "HEAD"):
                logged.status = self._download(handler, method, logged.query.get("uri", [""])[0])
            else:
                logged.status = 404
                self._send(handler, 404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. timed out)
            pass

    def _send(self, handler, status: int, payload: bytes, content_type: str, length: int | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload) if length is None else length))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    def _send_json(self, handler, obj) -> None:
        self._send(handler, 200, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _invoke(self, mashup: dict) -> dict:
        """A Mashup answer: the template's envelope and fields, our rows, paged."""
        service, params = mashup["service"], mashup.get("params") or {}
        if service == "Mast.Caom.Filtered":
            template = self._observations_template
            rows = [o for o in self.observations if all(_matches(o, f) for f in params.get("filters", []))]
            if params.get("columns", "*").upper().startswith("COUNT_BIG"):
                n = 0 if self.empty_results else len(rows)
                return _envelope({"fields": [{"name": "Column1", "type": "int"}]}, [{"Column1": n}], 1, 1)
        elif service == "Mast.Caom.Products":
            template = self._products_template
            wanted = set(str(params.get("obsid", "")).split(","))
            rows = [p for p in self.products if p["obsID"] in wanted]
        else:
            return {"status": "ERROR", "msg": f"Unknown service: {service}", "data": [], "fields": []}
        if self.empty_results:
            rows = []
        names = [f["name"] for f in template["fields"]]
        rows = [{name: row.get(name) for name in names} for row in rows]
        return _envelope(template, rows, int(mashup.get("pagesize") or 50000), int(mashup.get("page") or 1))

    def _download(self, handler, method: str, uri: str) -> int:
        path = self.files.get(uri.rsplit("/", 1)[-1]) if uri.startswith("mast:JWST/product/") else None
        if path is None:
            self._send(handler, 404, f"{uri} not found".encode(), "text/plain")
            return 404
        size = path.stat().st_size
        mode = "body" if self.truncate_downloads is True else self.truncate_downloads
        sent = size // 2 if mode else size
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(sent if mode == "file" else size))
        handler.send_header("Content-Disposition", f"attachment; filename={path.name}")
        handler.end_headers()
        if method == "GET":
            with open(path, "rb") as f:
                remaining = sent
                while remaining > 0:
                    block = f.read(min(remaining, 1 << 20))
                    handler.wfile.write(block)
                    remaining -= len(block)
        handler.close_connection = True
        return 200


def _envelope(template: dict, rows: list[dict], pagesize: int, page: int) -> dict:
    start = (page - 1) * pagesize
    return {
        "status": "COMPLETE",
        "msg": "",
        "fields": template["fields"],
        "data": rows[start : start + pagesize],
        "paging": {
            "page": page,
            "pageSize": pagesize,
            "pagesFiltered": max(1, -(-len(rows) // pagesize)),
            "rows": len(rows[start : start + pagesize]),
            "rowsFiltered": len(rows),
            "rowsTotal": len(rows),
        },
    }


def _matches(row: dict, flt: dict) -> bool:
    """MAST's filter semantics: a discrete column matches any of the values
    (case-insensitive, multi-valued columns split on their separator, one
    ``%`` wildcard in ``freeText``); a continuous one lies within min..max."""
    key = next((k for k in row if k.lower() == flt["paramName"].lower()), None)
    value = row.get(key) if key else None
    values = flt.get("values", [])
    if values and isinstance(values[0], dict):
        return value is not None and all(
            (v.get("min") is None or value >= v["min"]) and (v.get("max") is None or value <= v["max"]) for v in values
        )
    parts = str(value if value is not None else "").split(flt["separator"]) if flt.get("separator") else [str(value)]
    parts = [p.strip().lower() for p in parts]
    if any(p in {str(v).lower() for v in values} for p in parts):
        return True
    pattern = flt.get("freeText")
    if pattern:
        regex = ".*".join(re.escape(piece) for piece in pattern.lower().split("%"))
        return any(re.fullmatch(regex, p) for p in parts)
    return False
