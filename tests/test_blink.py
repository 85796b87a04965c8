"""The blink view: the reference's auto-STF, the difference panel, and the page in a browser."""

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import nsgflow
from nsgflow.blink import (
    DIFFERENCE_SIGMAS,
    auto_stretch,
    difference_image,
    mtf,
    stretch,
    thumbnail,
)
from nsgflow.gradient import background_noise
from nsgflow.io import write_fits
from nsgflow.pipeline import run_blink
from nsgflow.robust import MAD_TO_SIGMA

CHROMIUM = Path("/usr/bin/chromium")
#: headless, and nothing that reaches the network or keeps state between runs
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def sky() -> np.ndarray:
    """A reference: sky of 1000 with noise 20, a few stars up to 30000, a no-data border."""
    rng = np.random.default_rng(5)
    image = rng.normal(1000, 20, (200, 300))
    image[rng.integers(0, 200, 40), rng.integers(0, 300, 40)] = rng.uniform(2000, 30000, 40)
    image[:, :10] = 0
    return image


def test_auto_stretch_puts_the_sky_at_a_quarter_and_clips_the_shadows(sky):
    transfer = auto_stretch(sky)
    valid = sky[sky != 0]
    median = np.median(valid)
    assert transfer.shadows == pytest.approx(median - 2.8 * MAD_TO_SIGMA * np.median(np.abs(valid - median)))
    assert transfer.shadows == pytest.approx(1000 - 2.8 * 20, abs=3)  # the noise's sigma, not the stars'
    assert transfer.highlights == valid.max()
    grey = stretch(
        np.array([[median, transfer.shadows, transfer.shadows - 50, transfer.highlights, 0]]), transfer
    )
    assert grey[0, 0] / 255 == pytest.approx(0.25, abs=0.02)
    assert list(grey[0, 1:]) == [0, 0, 255, 0]  # black point, below it, white point, no data
    assert np.median(stretch(sky, transfer)[:, 10:]) / 255 == pytest.approx(0.25, abs=0.02)


def test_midtones_transfer_function():
    x = np.linspace(0, 1, 11)
    assert mtf(0.3, 0.3) == pytest.approx(0.5)
    np.testing.assert_allclose(mtf(0.5, x), x)  # balance 1/2: no change
    assert np.all(np.diff(mtf(0.01, x)) > 0) and mtf(0.01, 0.0) == 0 and mtf(0.01, 1.0) == 1


def test_the_difference_scale_ignores_gradients_and_stars(sky):
    ramp = np.linspace(0, 400, sky.shape[1])  # a steep gradient, 20 noise sigmas across
    assert background_noise(sky + ramp * (sky != 0)) == pytest.approx(20, rel=0.05)


def test_difference_image_is_mid_grey_at_zero_and_symmetric():
    sigma = 4.0
    reference = np.full((2, 6), 100.0)
    image = reference + np.array([0, 1, -1, 2, -2, 0]) * DIFFERENCE_SIGMAS * sigma
    image[1] = 100 + np.linspace(-10, 10, 6)
    image[1, 5] = 0  # no data
    grey = difference_image(image, reference, sigma)
    assert list(grey[1]) == [128, 255, 0, 255, 0, 128]  # row 0 (FITS bottom) drawn last
    np.testing.assert_array_equal(grey[0, :5], np.round(127.5 + 127.5 * np.linspace(-0.5, 0.5, 6)[:5]))
    assert grey[0, 5] == 0


@pytest.fixture(scope="module")
def blink_page(frame_set, tmp_path_factory) -> Path:
    """The blink page of the four-frame set, normalized with the public API, as the workflow makes it."""
    folder = tmp_path_factory.mktemp("blink")
    reference = fits.getdata(frame_set["frames"]["frame_01"]["path"])
    thumbnails = []
    for name, frame in sorted(frame_set["frames"].items()):
        data, header = fits.getdata(frame["path"], header=True)
        normalized = (
            data
            if name == "frame_01"
            else nsgflow.normalize(data, reference, target_header=header).normalized
        )
        thumbnails.append(folder / f"{name}.fits")
        write_fits(thumbnails[-1], np.stack([thumbnail(data), thumbnail(normalized)]))
    outputs = {"inputs": folder / "inputs.gif", "normalized": folder / "normalized.gif"}
    run_blink(thumbnails, sorted(frame_set["frames"]), "frame_01", outputs | {"html": folder / "index.html"})
    return folder / "index.html"


def _fd_from(fd: int, lowest: int = 10) -> int:
    """``fd`` moved to a number of at least ``lowest``, clear of the 3 and 4 the browser is given."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class Browser:
    """Headless Chromium driven by the DevTools protocol over a pipe (``--remote-debugging-pipe``).

    Chromium reads commands on its file descriptor 3 and answers on 4, one
    JSON message each, ended by a NUL byte: no port, no websocket library.
    """

    def __init__(self, profile: Path, log: Path, timeout: float = 30):
        command_read, self._commands = (_fd_from(fd) for fd in os.pipe())
        self._replies, reply_write = (_fd_from(fd) for fd in os.pipe())
        # bash, not sh: dash takes single-digit file descriptors only
        shell = f'exec "$0" "$@" 3<&{command_read} 4>&{reply_write} {command_read}<&- {reply_write}>&-'
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                ["bash", "-c", shell, str(CHROMIUM), *flags, "about:blank"],
                pass_fds=(command_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # its own process group: its helpers are stopped with it
            )
        os.close(command_read)
        os.close(reply_write)
        self.timeout, self._buffer, self._last_id = timeout, b"", 0

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._replies, 1 << 16) if ready else b""
            if not chunk:
                raise TimeoutError("Chromium did not answer (see its log)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Run one DevTools command (in a page's ``session``) and return its result; events are skipped."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        os.write(
            self._commands, json.dumps(message | ({"sessionId": session} if session else {})).encode() + b"\0"
        )
        deadline = time.monotonic() + self.timeout
        while (reply := self._message(deadline)).get("id") != self._last_id:
            pass
        assert "error" not in reply, (method, reply["error"])
        return reply["result"]

    def open(self, url: str) -> str:
        """Open ``url`` in a new page; return the page's session once the page has loaded."""
        target = self.send("Target.createTarget", url=url)["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + self.timeout
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not self.evaluate(session, loaded):  # the new page is about:blank at first
            assert time.monotonic() < deadline, f"{url} did not load"
            time.sleep(0.1)
        return session

    def evaluate(self, session: str, expression: str) -> object:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send(
            "Runtime.evaluate", session, expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def press(self, session: str, key: str, code: int) -> None:
        """Press and release a key (``key`` as in KeyboardEvent.key, ``code`` its Windows key code)."""
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent", session, type=kind, key=key, code=key, windowsVirtualKeyCode=code
            )

    def close(self) -> None:
        """Ask Chromium to quit; kill its process group if it has not within 10 s."""
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (AssertionError, OSError, TimeoutError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):  # already gone, helpers and all
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


#: The frame label and, per image on the page, the median grey (red channel: the images are grey) and
#: the fraction of pixels at exactly mid grey (128).
SHOWN = """(async () => {
  const images = [...document.querySelectorAll('img')];
  await Promise.all(images.map(image => image.decode()));
  const greys = images.map(image => {
    const canvas = document.createElement('canvas');
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const values = rgba.filter((_, k) => k % 4 === 0).sort();
    return {median: values[values.length >> 1], mid: values.filter(v => v === 128).length / values.length};
  });
  return {label: document.getElementById('label').textContent, greys: greys};
})()"""


def _chromium_or_skip() -> None:
    """Skip the test without Chromium, except in CI (CI=true), where its absence fails it."""
    if CHROMIUM.is_file():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {CHROMIUM} is missing; .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setitem(globals(), "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true, but .* is missing"):
        _chromium_or_skip()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _chromium_or_skip()


def test_blink_page_steps_with_the_arrow_keys_and_shows_sky_and_differences(blink_page, tmp_path):
    _chromium_or_skip()
    browser = Browser(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = browser.open(blink_page.as_uri())
        shown = [browser.evaluate(page, SHOWN)]
        for _ in range(4):
            browser.press(page, "ArrowRight", 39)
            shown.append(browser.evaluate(page, SHOWN))
        browser.press(page, "ArrowLeft", 37)
        shown.append(browser.evaluate(page, SHOWN))
    finally:
        browser.close()
    names = ["frame_00", "frame_01", "frame_02", "frame_03"]
    labels = [f"{k + 1} / 4: {name}" for k, name in enumerate(names)]
    assert [s["label"] for s in shown] == [*labels, labels[0], labels[3]]
    inputs, normalized, difference = ([s["greys"][k] for s in shown[:4]] for k in range(3))
    # the inputs differ; every normalized frame's sky is the reference's, at a quarter of white
    assert np.ptp([g["median"] for g in inputs]) > 50
    assert inputs[1]["median"] / 255 == pytest.approx(0.25, abs=0.02)
    for grey in normalized:
        assert grey["median"] / 255 == pytest.approx(0.25, abs=0.02)
    # normalized - reference: about mid grey; the reference's own is exactly 0 wherever it has data
    for grey in difference:
        assert abs(grey["median"] - 128) < 15
    assert difference[1]["mid"] > 0.95
    assert max(difference[k]["mid"] for k in (0, 2, 3)) < 0.2
