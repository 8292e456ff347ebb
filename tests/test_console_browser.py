"""The web console in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright for Python) against a real `vidgate serve` on the embedded default.

Skipped when chromium or playwright is missing, except in CI (`CI=true`), where `.ci/run`
installs both. Screenshots of every step go to ``test-artifacts/console/`` (ignored by git).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import pytest
from processes import GatewayProcess

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("VIDGATE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts" / "console"
TIMEOUT_MS = 90_000


def _need(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright is not installed (pip install playwright; never `playwright install`)")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        _need(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


def png(width: int, height: int) -> bytes:
    """A gradient PNG, encoded with the standard library only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, 40, y * 255 // height))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _logged_path(line: str) -> str | None:
    """The path of an access log line (JSON), else None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry.get("path") if isinstance(entry, dict) else None


def _answers(s: GatewayProcess) -> bool:
    """Our process, not another one on the port, answers: its log records the request."""
    try:
        with urllib.request.urlopen(s.url + "/healthz", timeout=10) as r:
            if r.status != 200:
                return False
    except OSError:
        return False
    log = s.workdir / "gateway.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and s.proc is not None and s.proc.poll() is None:
        if any(_logged_path(line) == "/healthz" for line in log.read_text().splitlines()):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server(tmp_path):
    # free_port() only picks a port that was free a moment ago: on a machine shared with
    # other test runs another process can take it first, and then our gateway exits at
    # bind while the start check connects to the other process. Start again on a new port.
    for attempt in range(3):
        workdir = tmp_path / f"gateway-{attempt}"
        workdir.mkdir()
        s = GatewayProcess(workdir)
        s.start()
        if _answers(s):
            break
        s.stop()
    else:
        raise AssertionError("vidgate serve did not stay up: " + (workdir / "gateway.log").read_text()[-2000:])
    yield s
    s.stop()


@pytest.fixture
def browser():
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(request):
    directory = ARTIFACTS / request.node.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)

    def shot(page, name: str):
        # A sync page returns the image; an async one a coroutine, which the caller awaits.
        return page.screenshot(path=str(directory / f"{name}.png"), full_page=True)

    return shot


def _card(page, prompt: str):
    return page.get_by_role("article", name=prompt, exact=True).first


def _wait_status(card, status: str) -> None:
    card.locator(".status", has_text=status).wait_for(timeout=TIMEOUT_MS)


def test_console_generates_plays_cancels_and_escapes(server, browser, shots, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console_errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    created: list[dict] = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST" and r.url.endswith("/v1/video/generations") and created.append(json.loads(r.post_data))
        ),
    )

    response = page.goto(server.url + "/console")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp

    # Sign in with the development token: the key goes to sessionStorage, never a URL.
    page.get_by_label("API key").fill(server.dev_token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Model").wait_for()
    assert server.dev_token not in page.url
    assert page.evaluate("Object.values(sessionStorage)") == [server.dev_token]
    assert "local-v1" in page.get_by_label("Model").locator("option").all_inner_texts()
    shots(page, "1-signed-in")

    # An API validation error is shown as the API's message with the field named.
    page.get_by_label("Prompt").fill("too long")
    page.get_by_label("Seconds").fill("99")
    page.get_by_role("button", name="Generate").click()
    alert = page.locator("#create-error")
    alert.wait_for()
    assert "(field: seconds)" in alert.inner_text() and "between 1 and" in alert.inner_text()
    shots(page, "1b-field-error")
    page.get_by_label("Seconds").fill("4")
    page.get_by_label("Metadata (JSON)").fill("{oops")
    page.get_by_role("button", name="Generate").click()
    page.locator("#create-error", has_text="(field: metadata)").wait_for()

    # Text to video, with live progress from the event stream.
    fox = "a red fox running through snow"
    page.get_by_label("Prompt").fill(fox)
    page.get_by_label("Model").select_option("local-v1")
    page.get_by_label("Seconds").fill("4")
    page.get_by_label("Size").fill("640x360")
    page.get_by_label("Metadata (JSON)").fill('{"background": "#203040"}')
    page.get_by_role("button", name="Generate").click()
    card = _card(page, fox)
    card.wait_for()
    assert created[-1]["metadata"] == {"background": "#203040"} and created[-1]["seconds"] == 4
    seen: list[int] = []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        status = card.locator(".status").inner_text()
        value = int(card.locator("progress").evaluate("p => p.value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        if len(seen) == 3:
            shots(page, "2-rendering")
        if status == "completed":
            break
        page.wait_for_timeout(50)
    assert card.locator(".status").inner_text() == "completed"
    assert seen == sorted(seen) and len(set(seen)) > 2, seen  # progress rose, live

    # The finished video plays (fetched with the key into a blob) and has a thumbnail.
    video = card.locator("video")
    video.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle(), timeout=TIMEOUT_MS)
    assert video.evaluate("v => v.src.startsWith('blob:')")
    video.evaluate("v => v.play()")
    page.wait_for_function("v => v.currentTime > 0.2", arg=video.element_handle(), timeout=TIMEOUT_MS)
    assert card.locator("img.thumbnail").evaluate("i => i.complete && i.naturalWidth > 0")
    assert card.locator(".cost").inner_text().startswith("cost ")
    shots(page, "3-playing")

    # Image to video from a picked PNG.
    picture = tmp_path / "first-frame.png"
    picture.write_bytes(png(160, 90))
    page.get_by_label("Prompt").fill("the picture comes alive")
    page.get_by_label("Seconds").fill("2")
    page.get_by_label("Size").fill("320x180")
    # Dropping a file on the image box picks it too.
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        base64.b64encode(png(16, 16)).decode(),
    )
    page.wait_for_function("() => (document.getElementById('image-preview').src || '').startsWith('data:image/png')")
    page.locator("#image-clear").click()
    page.get_by_label("Metadata (JSON)").fill("")
    page.get_by_label("Image").set_input_files(str(picture))
    page.locator("#image-preview").wait_for()
    page.get_by_role("button", name="Generate").click()
    alive = _card(page, "the picture comes alive")
    assert created[-1]["image"] == "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode()
    _wait_status(alive, "completed")
    alive.locator("video").wait_for(timeout=TIMEOUT_MS)
    shots(page, "4-image-to-video")
    page.locator("#image-clear").click()

    # A long render is cancelled from its card.
    long = "a long slow pan over mountains"
    page.get_by_label("Prompt").fill(long)
    page.get_by_label("Seconds").fill("12")
    page.get_by_label("Size").fill("1280x720")
    page.get_by_role("button", name="Generate").click()
    slow = _card(page, long)
    slow.get_by_role("button", name="Cancel").click()
    _wait_status(slow, "cancelled")
    assert slow.locator("video").count() == 0
    shots(page, "5-cancelled")

    # Markup in a prompt is shown as text and never runs.
    evil = "<img src=x onerror=alert(1)>"
    page.get_by_label("Prompt").fill(evil)
    page.get_by_label("Seconds").fill("1")
    page.get_by_label("Size").fill("320x180")
    page.get_by_role("button", name="Generate").click()
    hostile = _card(page, evil)
    _wait_status(hostile, "completed")
    assert hostile.locator("h3").inner_text() == evil
    assert page.locator('img[src="x"]').count() == 0
    shots(page, "6-escaped-prompt")

    # A reload keeps the session (sessionStorage) and lists the key's tasks with their status.
    page.reload()
    page.get_by_role("article").first.wait_for()
    statuses = page.locator("article .status").all_inner_texts()
    assert statuses.count("completed") == 3 and statuses.count("cancelled") == 1, statuses
    _card(page, fox).locator("video").wait_for(timeout=TIMEOUT_MS)

    # Delete removes a finished task.
    _card(page, evil).get_by_role("button", name="Delete").click()
    page.get_by_role("article", name=evil, exact=True).wait_for(state="detached")
    page.wait_for_function(
        "[...document.querySelectorAll('article video')].every(v => v.readyState >= 2)", timeout=TIMEOUT_MS
    )
    shots(page, "7-list")
    page.wait_for_timeout(300)
    assert dialogs == []
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors


def test_operator_console_shows_the_local_channel(server, browser, shots):
    out = subprocess.run(
        [sys.executable, "-m", "vidgate.cli", "tokens", "create", "--name", "ops", "--operator"],
        cwd=server.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "VIDGATE_CONFIG"},
    )
    operator_key = out.stdout.strip().splitlines()[-1]
    body = json.dumps({"model": "local-v1", "prompt": "one for the books", "seconds": 1, "size": "160x90"}).encode()
    submit = urllib.request.Request(
        server.url + "/v1/video/generations",
        data=body,
        headers={
            "Authorization": f"Bearer {server.dev_token}",
            "Content-Type": "application/json",
            "Prefer": "wait=60",
        },
    )
    with urllib.request.urlopen(submit, timeout=90) as r:
        assert json.load(r)["status"] == "completed"
    page = browser.new_page(viewport={"width": 1280, "height": 800})

    # A client key is refused with the API's message.
    page.goto(server.url + "/console/operator")
    page.get_by_label("Operator key").fill(server.dev_token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#sign-in-error", has_text="not an operator key").wait_for()

    page.get_by_label("Operator key").fill(operator_key)
    page.get_by_role("button", name="Sign in").click()
    channels = page.locator("#channels")
    channels.locator("td", has_text="local").first.wait_for()
    row = channels.locator("tbody tr").first
    cells = row.locator("td").all_inner_texts()
    assert cells[:3] == ["local", "local", "closed"], cells
    assert cells[4] == "0"  # nothing in flight
    assert page.locator("#statuses tbody tr").first.locator("td").all_inner_texts() == ["completed", "1"]
    # The embedded default prices nothing, so nothing is billed (test_console.py covers usage rows).
    assert page.locator("#usage tbody td").first.inner_text() == "Nothing billed yet."
    shots(page, "operator")


def _extendable_vendor():
    """The scripted vendor plus a model whose Model says it can extend (as a plugin built
    for the extend contract will): the console reads that from GET /v1/models."""
    from scripted_vendor import Scripted

    from vidgate import Model

    class Extendable(Scripted):
        models = (*Scripted.models, Model("scripted-x", vendor_model="sx", operations=frozenset({"extend"})))

    return Extendable()


async def test_buttons_follow_model_capabilities(tmp_path, shots):
    """Remix shows only for a model with the remix capability, Extend only for one with
    extend, and Extend posts {"prompt", "seconds", "video": {"id"}} to /v1/videos/extensions."""
    _playwright()
    from playwright.async_api import async_playwright
    from scripted_vendor import scripted_config

    from vidgate.testing import run_gateway

    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": _extendable_vendor()}) as gw:
        key = await gw.token()
        made = {}
        for model in ("scripted-1", "scripted-2", "scripted-x"):
            _, task = await gw.post("/v1/video/generations", key, json={"model": model, "prompt": f"made by {model}"})
            made[model] = (await gw.wait(task["id"], key))["id"]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                posted: list[tuple[str, str | None]] = []
                page.on("request", lambda r: r.method == "POST" and posted.append((r.url, r.post_data)))
                await page.goto(gw.url + "/console")
                await page.get_by_label("API key").fill(key)
                await page.get_by_role("button", name="Sign in").click()
                cards = {m: page.get_by_role("article", name=f"made by {m}", exact=True) for m in made}
                for card in cards.values():
                    await card.locator(".status", has_text="completed").wait_for(timeout=TIMEOUT_MS)

                async def buttons(model: str) -> list[str]:
                    return await cards[model].locator(".actions button").all_inner_texts()

                assert await buttons("scripted-1") == ["Delete", "Remix"]
                assert await buttons("scripted-2") == ["Delete"]
                assert await buttons("scripted-x") == ["Delete", "Extend"]

                # Remix makes a new task, shown as its own card.
                await cards["scripted-1"].get_by_role("button", name="Remix").click()
                await cards["scripted-1"].get_by_label("Remix prompt").fill("now at night")
                await cards["scripted-1"].get_by_role("button", name="Submit remix").click()
                remix = page.get_by_role("article", name="now at night", exact=True)
                await remix.locator(".status", has_text="completed").wait_for(timeout=TIMEOUT_MS)
                assert made["scripted-1"] in await remix.locator(".facts").inner_text()

                # Extend posts the extension request; what the gateway answers is shown.
                await cards["scripted-x"].get_by_role("button", name="Extend").click()
                await cards["scripted-x"].get_by_label("Extension prompt").fill("and then it rains")
                await cards["scripted-x"].get_by_label("Extra seconds").fill("4")
                await cards["scripted-x"].get_by_role("button", name="Submit extension").click()
                await page.wait_for_function(
                    "() => document.querySelector('article .forms .error:not([hidden])')"
                    " || [...document.querySelectorAll('article')].some(a => a.ariaLabel === 'and then it rains')",
                    timeout=TIMEOUT_MS,
                )
                [extension] = [
                    json.loads(body or "null") for url, body in posted if url.endswith("/v1/videos/extensions")
                ]
                assert extension == {"prompt": "and then it rains", "seconds": 4, "video": {"id": made["scripted-x"]}}
                await shots(page, "capabilities")
            finally:
                await browser.close()
