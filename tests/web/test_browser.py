"""The page in a real browser (Debian's Chromium, driven by Selenium through
Debian's chromedriver: nothing downloaded), used with the keyboard alone,
and checked by axe-core 4.9 (selenium-axe-python) on every page in both
languages: no serious or critical violation. With TROUSSE_SCREENSHOTS=DIR
it also saves the pages' screenshots there (docs/screenshots/)."""

import os
import shutil

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import set_user

pytestmark = pytest.mark.skipif(
    not shutil.which("chromedriver"), reason="Debian's chromium-driver is not installed"
)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


WEIGHT = """
const page = performance.getEntriesByType("navigation")[0];
const loaded = performance.getEntriesByType("resource");
return [page.encodedBodySize, loaded.length, loaded.reduce((sum, r) => sum + r.encodedBodySize, 0)];
"""


def accessible(driver, name):
    """axe-core finds no serious or critical violation on the page shown; prints its weight."""
    from selenium_axe_python import Axe

    html, requests, loaded = driver.execute_script(WEIGHT)
    print(f"page {name}: {html + loaded} bytes in {1 + requests} requests (HTML {html})")
    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    bad = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {Axe.report(bad)}"
    shots = os.environ.get("TROUSSE_SCREENSHOTS")
    if shots:
        driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def wait_heading(driver, *texts, seconds=20):
    """Waits for a page whose heading is one of `texts` (a navigation ends)."""
    WebDriverWait(driver, seconds, ignored_exceptions=(WebDriverException,)).until(
        lambda d: [h.text for h in d.find_elements(By.TAG_NAME, "h1")] in [[t] for t in texts]
    )


def keys(driver, *pressed):
    ActionChains(driver).send_keys(*pressed).perform()


def tab_to(driver, wanted, most=40):
    """Presses Tab until the focused element's text (or value) contains `wanted`."""
    for _ in range(most):
        keys(driver, Keys.TAB)
        focused = driver.switch_to.active_element
        if wanted in (focused.text or focused.get_attribute("value") or ""):
            return focused
    raise AssertionError(f"Tab never reached {wanted!r}")


def sign_in_with_keyboard(driver, page, sub, lang):
    driver.delete_all_cookies()
    driver.get(f"{page}?lang={lang}")
    accessible(driver, f"sign-in-{lang}")
    tab_to(driver, "your institution")
    keys(driver, Keys.ENTER)
    # the provider's form: its subject field has the focus
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.NAME, "sub"))
    keys(driver, sub, Keys.ENTER)
    wait_heading(driver, "Your courses", "Vos cours")


def test_a_teacher_uses_the_page_with_the_keyboard_in_both_languages(service, browser):
    set_user(service.provider, "alice", name="Alice Martin", groups=["math1-teachers"])
    for lang, heading in (("en", "Your courses"), ("fr", "Vos cours")):
        sign_in_with_keyboard(browser, service.page, "alice", lang)
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
        assert browser.find_element(By.TAG_NAME, "h1").text == heading
        accessible(browser, f"teacher-courses-{lang}")
        tab_to(browser, "math1")
        keys(browser, Keys.ENTER)
        wait_heading(browser, "math1")
        table = browser.find_element(By.TAG_NAME, "table").text
        assert "week1" in table and "final" in table
        accessible(browser, f"teacher-course-{lang}")
        tab_to(browser, "Sign out" if lang == "en" else "Se déconnecter")
        keys(browser, Keys.ENTER)
        WebDriverWait(browser, 20).until(
            lambda d: d.find_elements(By.PARTIAL_LINK_TEXT, "your institution")
        )


def test_a_student_sees_the_course_read_only_without_the_exam(service, browser):
    set_user(service.provider, "bob", name="Bob", groups=["math1-students"])
    sign_in_with_keyboard(browser, service.page, "bob", "en")
    tab_to(browser, "math1")
    keys(browser, Keys.ENTER)
    wait_heading(browser, "math1")
    table = browser.find_element(By.TAG_NAME, "table").text
    assert "week1" in table and "final" not in table
    assert "read only" in browser.find_element(By.ID, "main").text
    accessible(browser, "student-course-en")


def tab_to_id(driver, element_id, most=60):
    """Presses Tab until the element with this id has the focus."""
    for _ in range(most):
        keys(driver, Keys.TAB)
        if driver.switch_to.active_element.get_attribute("id") == element_id:
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def test_a_teacher_searches_reviews_builds_and_makes_an_exam(service, browser):
    import time

    set_user(service.provider, "alice", name="Alice Martin", groups=["math1-teachers"])
    sign_in_with_keyboard(browser, service.page, "alice", "en")
    browser.get(f"{service.page}courses/math1")
    tab_to(browser, "New environment")
    keys(browser, Keys.ENTER)
    wait_heading(browser, "New environment — math1")
    tab_to_id(browser, "name")
    keys(browser, "week2")
    tab_to_id(browser, "search")
    keys(browser, "gre")
    WebDriverWait(browser, 20).until(lambda d: "Add greet" in d.find_element(By.ID, "found").text)
    accessible(browser, "new-environment-en")
    tab_to(browser, "Add greet")
    keys(browser, Keys.ENTER)
    assert browser.find_element(By.ID, "packages").get_attribute("value").split() == ["greet"]
    tab_to(browser, "Review the solved environment")
    keys(browser, Keys.ENTER)
    WebDriverWait(browser, 60).until(
        lambda d: d.current_url.endswith("/preview") and d.find_elements(By.TAG_NAME, "h1")
    )
    assert "Solved environment" in browser.find_element(By.TAG_NAME, "h1").text, (
        browser.find_element(By.ID, "main").text
    )
    packages = browser.find_element(By.TAG_NAME, "table").text
    assert "greet" in packages, packages
    # week1 fetched greet and greeting-data: their installed sizes are known
    assert "Installed size" in browser.find_element(By.ID, "main").text
    assert "Changes since week1" in browser.find_element(By.ID, "main").text
    accessible(browser, "preview-en")
    tab_to(browser, "Build it")
    clicked = time.monotonic()
    keys(browser, Keys.ENTER)
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.ID, "status").text == "ready")
    print(f"build clicked to ready shown: {time.monotonic() - clicked:.2f} s (cached packages)")
    assert browser.find_element(By.ID, "log").text, "the log shows the build"
    # shown again once built (its log replayed), with its one version and the exam form
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, ".versions li")
            and d.find_elements(By.ID, "exam-name")
            and "ready" in d.find_element(By.ID, "log").text
        )
    )
    accessible(browser, "build-en")
    tab_to_id(browser, "exam-name")
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
    keys(browser, "week2-final")
    tab_to_id(browser, "opens")
    keys(browser, "2099-01-01T09:00:00Z")
    tab_to(browser, "Create the exam")
    keys(browser, Keys.ENTER)
    wait_heading(browser, "week2-final exam", seconds=60)
    exam_page = browser.current_url
    browser.get(f"{service.page}courses/math1")
    table = browser.find_element(By.TAG_NAME, "table").text
    assert "week2-final" in table and "week2" in table
    # the same pages in French
    for url, name in (
        (f"{service.page}courses/math1/new?lang=fr", "new-environment-fr"),
        (f"{exam_page}?lang=fr", "exam-fr"),
    ):
        browser.get(url)
        accessible(browser, name)
    # week2 changed (in French): reviewed, built, then rolled back to its first version
    browser.get(f"{service.page}courses/math1/new?lang=fr")
    tab_to_id(browser, "name")
    keys(browser, "week2")
    tab_to_id(browser, "packages")
    keys(browser, "greeting-data")
    tab_to(browser, "Voir l'environnement résolu")
    keys(browser, Keys.ENTER)
    wait_heading(
        browser, "Environnement résolu : week2 — math1", "Environnement résolu: week2 — math1"
    )
    assert "greet" in browser.find_element(By.ID, "main").text  # removed since week2's first
    accessible(browser, "preview-fr")
    tab_to(browser, "Le construire")
    keys(browser, Keys.ENTER)
    WebDriverWait(browser, 120, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.find_element(By.ID, "status").text == "prêt"
    )

    # the page shown while building is shown again once built, with its versions
    # read in the wait: the page may be shown again between a wait and a read
    def two_versions_newest_current(d):
        texts = [v.text for v in d.find_elements(By.CSS_SELECTOR, ".versions li")]
        return texts if len(texts) == 2 and "actuel" in texts[0] else False

    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        two_versions_newest_current
    )
    tab_to(browser, "Revenir à cette version")
    keys(browser, Keys.ENTER)
    # the page is shown again after the roll-back: a list read meanwhile may be short
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException, IndexError)).until(
        lambda d: "actuel" in d.find_elements(By.CSS_SELECTOR, ".versions li")[1].text
    )
    accessible(browser, "rolled-back-fr")
    browser.get(f"{service.page}?lang=en")
