"""The demo's report in real headless Chromium: every section present, every image decoded, no console error,
and a screenshot saved. Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` with the
standard library only. A copy of the page with a broken image and a script error checks that both are caught.

Skips where Debian's `chromium` is not installed (`apt-get install -y chromium`; `.ci/run` installs it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import saeseeds as ss
from saeseeds.analysis.instability import AnalyzeOptions
from saeseeds.cli import main
from saeseeds.report.html.discover import discover, walk

CHROMIUM = shutil.which("chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
TIMEOUT_S = 60.0
MAX_LATENTS = 20
SCREENSHOT_DIR = os.environ.get("SAESEEDS_SCREENSHOT_DIR")
"""Where to keep the screenshot after the test (default: the test's temporary directory only)."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it on CI)",
    ),
]


class Chromium:
    """A headless Chromium spoken to over CDP on file descriptors 3 (commands in) and 4 (replies out)."""

    def __init__(self, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # move the child's ends above 10 so that placing them at 3 and 4 cannot overwrite one with the other
        high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def child_fds() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=child_fds,
        )
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one command and wait for its reply (events that arrive meanwhile are kept in `events`)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The next event named `method` (others are kept)."""
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer within the timeout")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit status {self.proc.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open_page(self, width: int = 1400, height: int = 900) -> None:
        """Attach to the first page and enable what the checks listen to."""
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.set_width(width, height)

    def load(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and error log entries (failed loads, CSP) seen so far."""
        self.send("Runtime.evaluate", {"expression": "1"})  # flush events that are still on their way
        found = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"{details.get('text', '')} {details.get('exception', {}).get('description', '')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "")[:300])
        return found

    def set_width(self, width: int, height: int = 900) -> None:
        """Lay the page out at `width` CSS pixels (a desktop, a laptop)."""
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, path: Path, max_height: int = 16000) -> bytes:
        """The page from its top, at most `max_height` pixels of it, as PNG written to `path`."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        png = base64.b64decode(self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1},
        })["data"])
        path.write_bytes(png)
        return png

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)


PAGE_STATE = """JSON.stringify({
  errors: document.documentElement.getAttribute("data-errors"),
  messages: document.documentElement.getAttribute("data-error-messages"),
  ready: document.documentElement.getAttribute("data-ready"),
  images: Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                                 width: i.naturalWidth})),
  sections: Array.from(document.querySelectorAll("section.output")).map(s => s.dataset.kind),
  subsections: Array.from(document.querySelectorAll("section.sub")).map(s => s.dataset.kind),
  claims: document.querySelectorAll(".claims tbody tr").length,
  latents: document.querySelectorAll("details.latent").length,
  contexts: document.querySelectorAll(".ctx mark").length,
  tocLinks: Array.from(document.querySelectorAll("nav.toc a")).map(a => a.getAttribute("href")),
  ids: Array.from(document.querySelectorAll("[id]")).map(e => e.id),
  shared: Array.from(document.querySelectorAll("#headline .headline .tile"))
    .filter(t => t.querySelector(".tlabel").textContent.includes("shared")).map(t => t.querySelector(".tvalue").textContent),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
})"""
WIDTHS = (1400, 1024)
"""Screenshots at a desktop and at a laptop width."""
PERCENT_SPREAD = re.compile(r"^\d+\.\d% ± \d+\.\d%$")

FILTER = """(() => {
  const box = document.querySelector(".latents");
  const input = box.querySelector(".lsearch");
  const first = box.querySelector("details.latent .lid").textContent.slice(1);
  input.value = first; input.dispatchEvent(new Event("input"));
  const shown = Array.from(box.querySelectorAll("details.latent")).filter(d => !d.hidden).length;
  const text = box.querySelector(".lcount").textContent;
  input.value = ""; input.dispatchEvent(new Event("input"));
  return JSON.stringify({shown, text, first});
})()"""


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    """The demo, shrunk, and its report, built once for this module.

    The demo runs without its analysis, which is then added with few random controls and no model-based
    ablation (`ss.analyze` on the demo's run and its last comparison), so the page has every kind of
    section at a fraction of the demo's cost.
    """
    out = tmp_path_factory.mktemp("browser") / "demo"
    status = main(["demo", "--out", str(out), "--no-progress", "--skip-analysis", "--train.num_tokens", "2048",
                   "--train.batch_size", "512", "--train.eval_tokens", "1024", "--lm.max_chunks", "24",
                   "--lm.eval_chunks", "8", "--study.num_latents", "384", "--study.milestones", "0.5,1.0"])
    assert status == 0
    found = walk(discover(out))
    run_dir = next(o.path for o in found if o.kind == "run")
    compare = sorted(o.path for o in found if o.kind == "compare")[-1]
    opts = AnalyzeOptions(n_random=10, lm_loss=False, max_tokens=0, subspace_dim=8, n_show=2)
    ss.analyze(run_dir, cross=compare, options=opts, out=out / "analysis")
    assert main(["report", str(out), "--max-latents", str(MAX_LATENTS)]) == 0
    return out / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chrome = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        chrome.open_page()
        yield chrome
    finally:
        chrome.close()


def test_demo_report_renders_in_chromium(demo_report, browser, tmp_path) -> None:
    browser.load(demo_report.as_uri())
    state = json.loads(browser.evaluate(PAGE_STATE))
    assert browser.console_errors() == []
    assert state["ready"] == "1" and state["errors"] == "0", state["messages"]
    broken = [i["alt"] for i in state["images"] if not i["ok"]]
    assert broken == [] and len(state["images"]) >= 10, broken
    assert {"demo", "run", "compare", "analyze"} <= set(state["sections"]), state["sections"]
    assert {"config", "versions", "latents", "analysis-config"} <= set(state["subsections"])
    assert state["claims"] >= 2 * 4  # the claims of both configurations
    assert state["latents"] % MAX_LATENTS == 0 and state["latents"] >= 2 * MAX_LATENTS and state["contexts"] > 0
    dangling = [h for h in state["tocLinks"] if h[1:] not in state["ids"]]
    assert dangling == [] and len(state["ids"]) == len(set(state["ids"]))
    filtered = json.loads(browser.evaluate(FILTER))
    assert filtered["shown"] >= 1 and filtered["text"].startswith(f"{filtered['shown']} of {MAX_LATENTS}"), filtered
    # the answer first: the headline is the first section and gives the shared fraction as a percentage ± sd
    assert state["sections"][0] == "headline", state["sections"]
    assert state["shared"] and all(PERCENT_SPREAD.match(v) for v in state["shared"]), state["shared"]
    browser.evaluate('document.querySelector("details.latent").open = true; 1')  # show one latent's body
    shots = []
    for width in WIDTHS:
        browser.set_width(width)
        laid_out = json.loads(browser.evaluate(PAGE_STATE))
        assert laid_out["overflow"] <= 0, f"the page scrolls sideways at {width} px"
        for name, height in ((f"demo_report-{width}.png", 16000), (f"demo_report-{width}-top.png", 2200)):
            png = browser.screenshot(tmp_path / name, height)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
            shots.append(tmp_path / name)
    browser.set_width(WIDTHS[0])
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(SCREENSHOT_DIR) / shot.name)


def test_broken_image_and_script_error_are_caught(demo_report, browser, tmp_path) -> None:
    """The checks above can fail: one corrupted image and one thrown error are both reported."""
    html = demo_report.read_text(encoding="utf-8")
    html, n = re.subn(r'src="data:image/png;base64,[^"]{40}', 'src="data:image/png;base64,AAAAbroken', html,
                      count=1)
    assert n == 1
    html = html.replace("</body>", "<script>window.notAFunction();</script></body>")
    bad = tmp_path / "broken.html"
    bad.write_text(html, encoding="utf-8")
    browser.load(bad.as_uri())
    state = json.loads(browser.evaluate(PAGE_STATE))
    assert sum(not i["ok"] for i in state["images"]) == 1
    assert int(state["errors"]) >= 2 and "image failed" in state["messages"] and "script error" in state["messages"]
    assert any("notAFunction" in e for e in browser.console_errors())
