"""The web page in a real headless Chromium: upload an image, see the top-k bars, stay offline."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.procs import ServerProcess
from tests.helpers import require_tool
from tests.services.inference_helpers import inference_server


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require_tool("chromium", available=bool(browser))
    driver = require_tool("chromedriver")
    return str(browser), driver


@pytest.fixture
def server(trained_model: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"SLIPWAY_MODEL_SOURCE": str(trained_model), "SLIPWAY_RELOAD_INTERVAL_S": "0"}
    with inference_server(env, tmp_path / "server.log") as proc:
        proc.wait_ready()
        yield proc


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    binary, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage", "--window-size=1000,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=driver_path, log_output=os.devnull)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_page_uploads_an_image_and_shows_top_k_offline(
    server: ServerProcess, browser: object, image_paths: list[Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(server.url + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: "version" in d.find_element(By.ID, "model").text)
    topk = driver.find_element(By.ID, "topk")  # type: ignore[attr-defined]
    topk.clear()
    topk.send_keys("3")
    driver.find_element(By.ID, "file").send_keys(str(image_paths[0]))  # type: ignore[attr-defined]
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))
    rows = driver.find_elements(By.CSS_SELECTOR, "#results .row")  # type: ignore[attr-defined]
    assert len(rows) == 3
    widths = [
        float(r.find_element(By.CSS_SELECTOR, ".bar").get_attribute("style").split(":")[1][:-2])
        for r in rows
    ]
    assert widths == sorted(widths, reverse=True) and 0 < widths[0] <= 100
    labels = [r.find_element(By.CSS_SELECTOR, ".label").text for r in rows]
    assert all(labels) and len(set(labels)) == 3
    status = driver.find_element(By.ID, "status").text  # type: ignore[attr-defined]
    assert "version" in status and "error" not in status
    driver.save_screenshot(str(tmp_path / "page.png"))  # type: ignore[attr-defined]

    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert any(u.startswith(server.url + "/v1/predict") for u in urls), urls
    # chrome:// pages are the browser's own (its first tab), never network traffic.
    local = (server.url + "/", "data:", "blob:", "about:", "chrome:", "chrome-extension:")
    outside = [u for u in urls if not u.startswith(local)]
    assert not outside, f"requests left 127.0.0.1: {outside}"


@pytest.mark.slow
def test_explain_toggle_shows_the_overlay_next_to_the_result(
    server: ServerProcess, browser: object, image_paths: list[Path]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(server.url + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: "version" in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "explain").click()  # type: ignore[attr-defined]
    driver.find_element(By.ID, "file").send_keys(str(image_paths[0]))  # type: ignore[attr-defined]
    overlay = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result img.overlay"))
    )
    wait.until(lambda d: overlay.get_attribute("naturalWidth") not in (None, "0"))
    assert int(overlay.get_attribute("naturalWidth")) == 224  # a decoded PNG, not a broken image
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    card = driver.find_element(By.CSS_SELECTOR, "#results .result")  # type: ignore[attr-defined]
    top = card.find_element(By.CSS_SELECTOR, ".row.top .label").text
    assert top and top in overlay.get_attribute("alt")  # the map is of the top-1 class shown
    note = card.find_element(By.CSS_SELECTOR, ".explain-note").text
    assert "forwards" in note and "error" not in note
