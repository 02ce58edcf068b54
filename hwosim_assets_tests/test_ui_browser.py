"""A figure, seen the way a user sees it: in Debian's chromium, driven by
Playwright, on the real webserver. The `perturbation_fidelity` asset is
materialized into a persistent instance (its report rows made cheap here;
the rows themselves are tested in test_perturb_fidelity.py), the webserver
serves that instance, and the browser opens the asset's Events tab, clicks
`[Show Markdown]` beside `plot_preview` and finds the inline PNG decoded
at the preview's own size. The screenshot is kept in the test's tmp folder.
"""

from __future__ import annotations

import base64
import shutil
import struct
import time
import urllib.request

import dagster as dg

from hwosim_assets_tests import services
from hwosim_assets_tests.test_webserver import REPO, _embedded_env, _free_port

CHROMIUM_FLAGS = [  # no traffic beyond 127.0.0.1 (the probe's flags: background services off)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def test_the_fidelity_figure_shows_in_the_browser(tmp_path, monkeypatch):
    chromium = services.require_binary("chromium", "Debian package chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from hwosim_assets.defs.lake.resources import LocalLake
    from hwosim_assets.defs.perturb.fidelity import perturbation_fidelity
    from hwosim_assets.perturb import fidelity

    env = _embedded_env(tmp_path)
    rows = [
        fidelity.Row("read_noise", "sample", level, "added scatter / declared", 1.0 + 0.01 * level, 1.0, 1e4, 3)
        for level in (1, 3, 5)
    ]
    monkeypatch.setattr(fidelity, "report", lambda levels: rows)
    lake = LocalLake(root=env["HWOSIM_HOME"] + "/lake")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        result = dg.materialize([perturbation_fidelity], resources={"lake": lake}, instance=instance)
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    preview = base64.b64decode(meta["plot_preview"].value.split("base64,", 1)[1].rstrip(")"))
    width, height = png_size(preview)

    port = _free_port()
    exe = shutil.which("dagster-webserver")
    assert exe
    server = services.ServerProcess(
        "dagster-webserver",
        [exe, "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        tmp_path / "webserver.log",
        env=env,
        cwd=REPO,
    )
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: _up(base), "dagster-webserver", timeout=180)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/assets/perturbation_fidelity?view=events", wait_until="networkidle")
            link = page.locator("tr", has_text="plot_preview").get_by_text("[Show Markdown]")
            deadline = time.monotonic() + 60
            while not link.count() and time.monotonic() < deadline:
                skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit dialog
                if skip.count():
                    skip.first.click()
                page.wait_for_timeout(1000)
            assert link.count(), f"no plot_preview row on the Events tab: {page.locator('body').inner_text()[:2000]}"
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.first.click()
            link.first.click()
            image = page.get_by_role("dialog").locator("img")
            image.first.wait_for(timeout=30_000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.first.element_handle())
            shown = image.first.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            page.wait_for_timeout(1000)  # the dialog fades in
            page.screenshot(path=str(tmp_path / "plot_preview.png"))
            browser.close()
        assert tuple(shown) == (width, height), f"the dialog shows a {shown} image, the preview is {width}x{height}"
    finally:
        server.stop(grace=30)


def _up(base: str) -> bool:
    try:
        return urllib.request.urlopen(f"{base}/server_info", timeout=5).status == 200
    except OSError:
        return False
