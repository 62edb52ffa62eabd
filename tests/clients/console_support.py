"""Support for the console's browser tests: headless Chromium (Debian's `chromium` and
`chromium-driver`, which scripts/setup-clients.sh installs) driven through selenium, with waits
bounded in seconds and a screenshot of every page kept as a test artifact.

Screenshots go to $FLOTILLA_ARTIFACTS (default tests/clients/artifacts/console, gitignored) as
`NN-name.png`, numbered in the order they were taken. The console's hooks the tests rely on are
the ones its pages promise: a page's title is the first `<h1>` of `#view`, links carry the name or
id they lead to, action buttons their label, flash messages land in `#flash`, a task's output in
`pre.logs`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from support import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15.0  # seconds for a page, a refresh or an action's effect to show


def artifacts_dir() -> Path:
    return Path(os.environ.get("FLOTILLA_ARTIFACTS") or REPO / "tests" / "clients" / "artifacts" / "console")


class Browser:
    """One headless Chromium session on one console, taking numbered screenshots."""

    def __init__(self, base_url: str, shots: Path):
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
        if missing:
            pytest.fail(
                f"the console's browser tests need Debian's chromium and chromium-driver ({missing} missing); "
                "install them with scripts/setup-clients.sh",
                pytrace=False,
            )
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            pytest.fail("selenium is not installed: pip install -r tests/clients/requirements.txt", pytrace=False)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--window-size=1400,1000", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        # Console errors (a CSP violation, a script error) are kept for the failure messages.
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        self.taken: list[Path] = []

    def close(self) -> None:
        self.driver.quit()

    # -- pages

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def by_css(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str):
        found = self.wait(lambda: self.visible(selector), f"a visible `{selector}`")
        return found[0]

    def visible(self, selector: str) -> list:
        try:
            return [e for e in self.by_css(selector) if e.is_displayed()]
        except Exception:  # noqa: BLE001 - a stale element between two refreshes: try again
            return []

    def js(self, script: str, *args) -> Any:
        return self.driver.execute_script(script, *args)

    def title(self) -> str:
        """The page's title: the first `<h1>` of the view."""
        return self.js("const h = document.querySelector('#view h1'); return h ? h.textContent.trim() : '';") or ""

    def view_text(self) -> str:
        return self.js("const v = document.getElementById('view'); return v && !v.hidden ? v.innerText : '';") or ""

    def flash(self) -> str:
        return self.js("const f = document.getElementById('flash'); return f && !f.hidden ? f.innerText : '';") or ""

    def path(self) -> str:
        return self.js("return location.pathname;")

    def wait(self, pred: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Calls `pred` until it returns something truthy; fails with the page's state."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = pred()
            except Exception as e:  # noqa: BLE001 - a stale element mid-refresh, an alert: retry
                last = e
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.2)
        try:
            self.shot("failed")
        except Exception:  # noqa: BLE001 - an open alert blocks screenshots
            pass
        raise AssertionError(f"{what} not seen within {timeout:.0f}s (last: {last!r})\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        try:
            logs = [f"{e.get('level')}: {e.get('message')}" for e in self.driver.get_log("browser")][-15:]
        except Exception:  # noqa: BLE001
            logs = ["<no browser log>"]
        try:
            state = f"at {self.path()}, title {self.title()!r}, flash {self.flash()!r}\nview:\n{self.view_text()[:1500]}"
        except Exception as e:  # noqa: BLE001 - an open alert blocks scripts
            state = f"<no page state: {e}>"
        return state + "\nbrowser console:\n" + "\n".join(logs)

    def wait_title(self, text: str) -> str:
        return self.wait(lambda: text in self.title() and self.title(), f"a page titled with {text!r}")

    def link(self, text: str, scope: str = "#view"):
        """A visible link of the view whose text is exactly `text` (a table's first, then any)."""

        def find():
            links = [a for a in self.visible(f"{scope} a") if a.text.strip() == text]
            in_tables = [a for a in links if a.find_elements("xpath", "ancestor::table")]
            return (in_tables or links)[:1]

        return self.wait(find, f"a link {text!r}")[0]

    def click(self, element) -> None:
        """Clicks `element` in the middle of the window, clear of the sticky header."""
        self.js("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    def click_link(self, text: str, scope: str = "#view") -> None:
        self.click(self.link(text, scope))

    def button(self, label: str, scope: str = "#view"):
        def find():
            return [b for b in self.visible(f"{scope} button") if b.text.strip() == label][:1]

        return self.wait(find, f"a button {label!r}")[0]

    def accept_alert(self, timeout: float = 3.0) -> str | None:
        """Accepts a confirm() if one opens within `timeout`; returns its text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                alert = self.driver.switch_to.alert
                text = alert.text
                alert.accept()
                return text
            except Exception:  # noqa: BLE001 - NoAlertPresentException until it opens
                time.sleep(0.1)
        return None

    def session_storage(self) -> dict[str, str]:
        return self.js(
            "const o = {}; for (let i = 0; i < sessionStorage.length; i++) {"
            " const k = sessionStorage.key(i); o[k] = sessionStorage.getItem(k); } return o;"
        )

    def mark(self) -> None:
        """Marks this document: a full reload loses the mark (see `still_marked`)."""
        self.js("window.__marker = 1;")

    def still_marked(self) -> bool:
        return self.js("return window.__marker === 1;") is True

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        return path


def fresh_artifacts() -> Path:
    """The screenshot directory, emptied of an earlier run's pictures."""
    d = artifacts_dir()
    if d.is_dir():
        for p in d.glob("*.png"):
            p.unlink()
    d.mkdir(parents=True, exist_ok=True)
    return d

