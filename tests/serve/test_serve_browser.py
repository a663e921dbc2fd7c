"""The demo page in a real headless Chromium (Debian's chromium + chromium-driver, selenium).

Moving the diversity slider changes the list (and raises its ILAD), a like changes the next
list, an invalid request shows the service's error message. `.ci/run` installs the browser,
so in CI (CI=true) a missing browser is a failure, not a skip. With
DIVREC_SCREENSHOT=<path> the test also saves a screenshot of the page (of the model
directory DIVREC_SCREENSHOT_MODEL when set, e.g. the ML-100K model of docs/serve-ml100k.toml).
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from serve_util import API_KEY, Server, Zygote, shared_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER) and not os.environ.get("CI"):
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def make_driver(tmp):
    """A headless Chromium with its own profile folder under `tmp`."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,1000",
        f"--user-data-dir={tmp / 'profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=DRIVER), options=opts)
    return driver


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    assert CHROMIUM and DRIVER, "chromium / chromedriver missing (.ci/run installs them)"
    model = os.environ.get("DIVREC_SCREENSHOT_MODEL") or shared_model(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("browser")
    zygote = Zygote()
    pid, url = zygote.start(model, tmp / "events.sqlite")
    driver = make_driver(tmp)
    driver.set_page_load_timeout(60)
    try:
        driver.get(f"{url}/?user=5#key={API_KEY}")
        yield driver
    finally:
        driver.quit()
        os.kill(pid, signal.SIGTERM)
        zygote.close()


def loads(driver) -> int:
    return int(driver.find_element(By.ID, "status").get_attribute("data-loads") or 0)


def wait_load(driver, after: int) -> None:
    WebDriverWait(driver, 30).until(lambda d: loads(d) > after)


def listed(driver) -> list[str]:
    return [
        li.get_attribute("data-item") for li in driver.find_elements(By.CSS_SELECTOR, "#list li")
    ]


def test_slider_like_and_error(page):
    driver = page
    wait_load(driver, 0)
    assert driver.find_element(By.ID, "error").is_displayed() is False
    first = listed(driver)
    assert len(first) == 10
    ilad0 = float(driver.find_element(By.ID, "ilad").text)
    chips = driver.find_elements(By.CSS_SELECTOR, "#list .chip")
    assert chips and chips[0].text

    # moving the slider (keyboard: End = the most diverse setting) changes the list
    n = loads(driver)
    driver.find_element(By.ID, "diversity").send_keys(Keys.END)
    wait_load(driver, n)
    diverse = listed(driver)
    assert driver.find_element(By.ID, "diversity-value").text == "1.00"
    assert diverse != first
    assert float(driver.find_element(By.ID, "ilad").text) > ilad0

    # a like posts feedback and the refreshed list changes (the liked item is consumed)
    liked = diverse[0]
    n = loads(driver)
    driver.find_element(By.CSS_SELECTOR, "#list li .like").click()
    wait_load(driver, n)
    after = listed(driver)
    assert liked not in after and after != diverse
    shot = os.environ.get("DIVREC_SCREENSHOT")
    if shot:
        assert driver.save_screenshot(shot), f"could not write {shot}"

    # an invalid request shows the service's one-line error
    n = loads(driver)
    box = driver.find_element(By.ID, "user")
    box.clear()
    box.send_keys("bad user!", Keys.TAB)
    wait_load(driver, n)
    err = driver.find_element(By.ID, "error")
    assert err.is_displayed() and "user_id" in err.text


def test_page_under_auth_all_sends_the_key_and_drops_it_from_the_url(tmp_path_factory):
    """Under --auth-all every call needs the key: the page sends it with all of them, and a
    key handed over in the fragment does not stay in the address bar."""
    assert CHROMIUM and DRIVER
    tmp = tmp_path_factory.mktemp("browser-auth")
    srv = Server(shared_model(tmp_path_factory), tmp / "events.sqlite", "--auth-all")
    driver = make_driver(tmp)
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{srv.url}/?user=5#key={API_KEY}")
        wait_load(driver, 0)
        assert driver.find_element(By.ID, "error").is_displayed() is False
        assert len(listed(driver)) == 10
        assert API_KEY not in driver.current_url
        n = loads(driver)
        driver.find_element(By.CSS_SELECTOR, "#list li .like").click()
        wait_load(driver, n)
        assert driver.find_element(By.ID, "error").is_displayed() is False
    finally:
        driver.quit()
        srv.stop()
