"""The local renderer: turns a job spec into an H.264 MP4.

Everything here runs in a worker process (see :func:`render_job`) and talks to the
gateway process only through files in the job directory, so a job survives the gateway
being killed: the gateway can always tell from the files how far a job got.

``jobs/<id>.json``
    the spec (written by the plugin before the render starts)
``jobs/<id>.progress``
    ``0``-``99`` while rendering; appears when the render really starts
``jobs/<id>.<pid>.part.mp4``
    the video being written; the pid keeps a render orphaned by a killed gateway from
    writing into the file of the render that replaced it
``jobs/<id>.mp4``
    the finished video, moved into place atomically
``jobs/<id>.error``
    why the render failed (plain text)
``jobs/<id>.usage.json``
    what was rendered (seconds, width, height, fps, frames), written before the ``.mp4``
``jobs/<id>.last.png``
    the last frame of the video (the ``last_frame`` artifact), written before the ``.mp4``
``jobs/<id>.pid``
    the process rendering the job, while it runs (each render is its own process, so a
    cancel can kill exactly that render)
``jobs/<id>.cancelled``
    the job was cancelled; nothing renders it any more

Frames are drawn with numpy and scaled with libswscale; text uses a built-in 5x8 bitmap
font, so the renderer needs nothing beyond PyAV and numpy.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import unicodedata
from collections.abc import Callable, Iterator
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from av.video.stream import VideoStream

DEFAULT_FPS = 24
DEFAULT_BACKGROUND = "#203040"

# How far the reference image zooms in over the whole clip (Ken Burns).
ZOOM = 1.15
# Bigger pictures are refused rather than risk exhausting the worker's memory.
MAX_IMAGE_PIXELS = 40_000_000

# 5x8 bitmap font for printable ASCII (0x20-0x7E): 5 column bytes per glyph, bit 0 is
# the top row, bit 7 the descender row.
_FONT_HEX = (
    "0000000000"
    "00005f0000"
    "0007000700"
    "147f147f14"
    "242a7f2a12"
    "2313086462"
    "3649552250"
    "0005030000"
    "001c224100"
    "0041221c00"
    "14083e0814"
    "08083e0808"
    "0050300000"
    "0808080808"
    "0060600000"
    "2010080402"
    "3e5149453e"
    "00427f4000"
    "4261514946"
    "2141454b31"
    "1814127f10"
    "2745454539"
    "3c4a494930"
    "0171090503"
    "3649494936"
    "064949291e"
    "0036360000"
    "0056360000"
    "0814224100"
    "1414141414"
    "0041221408"
    "0201510906"
    "3249794134"
    "7e1111117e"
    "7f49494936"
    "3e41414122"
    "7f4141221c"
    "7f49494941"
    "7f09090901"
    "3e4149497a"
    "7f0808087f"
    "00417f4100"
    "2040413f01"
    "7f08142241"
    "7f40404040"
    "7f020c027f"
    "7f0408107f"
    "3e4141413e"
    "7f09090906"
    "3e4151215e"
    "7f09192946"
    "4649494931"
    "01017f0101"
    "3f4040403f"
    "1f2040201f"
    "3f4038403f"
    "6314081463"
    "0708700807"
    "6151494543"
    "007f414100"
    "0204081020"
    "0041417f00"
    "0402010204"
    "4040404040"
    "0001020400"
    "2054545478"
    "7f48444438"
    "3844444420"
    "384444487f"
    "3854545418"
    "087e090102"
    "98a4a4a47c"
    "7f08040478"
    "00447d4000"
    "4080807d00"
    "7f10284400"
    "00417f4000"
    "7c04180478"
    "7c08040478"
    "3844444438"
    "fc24242418"
    "18242424fc"
    "7c08040408"
    "4854545420"
    "043f444020"
    "3c4040207c"
    "1c2040201c"
    "3c4030403c"
    "4428102844"
    "9ca0a0a07c"
    "4464544c44"
    "0008364100"
    "00007f0000"
    "0041360800"
    "0804081008"
)
_COLUMNS = np.frombuffer(bytes.fromhex(_FONT_HEX), dtype=np.uint8).reshape(95, 5)
# GLYPHS[c, row, col] is True where glyph c (code point c + 32) has ink.
GLYPHS = ((_COLUMNS[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1).astype(bool)
CELL_W, CELL_H = 6, 10  # glyph plus one column of spacing; plus two rows between lines

# Typographic characters NFKD leaves alone but the font can still show.
_ASCII_LOOKALIKES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "•": "*"})


class RenderError(Exception):
    """A job cannot be rendered; the message is shown to the client as is."""


class JobFiles:
    """The files of one job in ``jobs_dir`` (see the module docstring)."""

    def __init__(self, jobs_dir: Path, job_id: str) -> None:
        self.dir = jobs_dir
        self.id = job_id
        self.spec = jobs_dir / f"{job_id}.json"
        self.progress = jobs_dir / f"{job_id}.progress"
        self.video = jobs_dir / f"{job_id}.mp4"
        self.error = jobs_dir / f"{job_id}.error"
        self.usage = jobs_dir / f"{job_id}.usage.json"
        self.last_frame = jobs_dir / f"{job_id}.last.png"
        self.pid = jobs_dir / f"{job_id}.pid"
        self.cancelled = jobs_dir / f"{job_id}.cancelled"
        # The source video of an extend or edit, copied from the gateway's media.
        self.source = jobs_dir / f"{job_id}.source.mp4"

    def part(self) -> Path:
        """The file this process writes the video to until it is complete."""
        return self.part_of(os.getpid())

    def part_of(self, pid: int) -> Path:
        return self.dir / f"{self.id}.{pid}.part.mp4"


def exit_with_parent() -> None:
    """Pool initializer: end this worker as soon as the process that started it dies.

    A pool worker would otherwise wait forever for work from a gateway that was killed
    (keeping the forkserver alive too), and finish a render that the restarted gateway
    renders again anyway.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def render_job(spec_path: str) -> None:
    """Pool-worker entry point: render the job whose spec is at ``spec_path`` in a process
    of its own, and wait for it.

    The render runs as a child process (this file run as a script) so that a
    cancel can kill that one render (see :func:`kill_render`) without breaking the pool
    and the renders of other jobs. Never raises: the outcome is the ``.mp4``, the
    ``.error`` or the ``.cancelled`` file, which the gateway finds even if it restarted.
    """
    spec_file = Path(spec_path)
    files = JobFiles(spec_file.parent, spec_file.stem)
    if files.cancelled.exists():
        return
    # The child exits when its stdin closes, i.e. when this worker dies.
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), spec_path], stdin=subprocess.PIPE)
    write_atomic(files.pid, str(child.pid).encode())
    if files.cancelled.exists():  # cancelled between the check above and the pid file
        child.kill()
    code = child.wait()
    files.pid.unlink(missing_ok=True)
    if code != 0 and not (files.video.exists() or files.error.exists() or files.cancelled.exists()):
        files.part_of(child.pid).unlink(missing_ok=True)
        write_atomic(files.error, f"the render process died (exit status {code})".encode())


def kill_render(files: JobFiles) -> int | None:
    """Mark the job cancelled and kill the process rendering it; the pid killed, if any."""
    write_atomic(files.cancelled, b"")
    try:
        pid = int(files.pid.read_text())
    except (FileNotFoundError, ValueError):
        return None  # not started yet: render_job sees the marker and never starts it
    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except ProcessLookupError:
        return None
    files.part_of(pid).unlink(missing_ok=True)
    return pid


def _render_process(spec_path: str) -> None:
    """The render itself, in its own process; writes the outcome files."""
    spec_file = Path(spec_path)
    files = JobFiles(spec_file.parent, spec_file.stem)
    part = files.part()
    try:
        spec = json.loads(spec_file.read_bytes())
        write_atomic(files.progress, b"0")
        made = render(spec, part, lambda percent: write_atomic(files.progress, str(percent).encode()))
        write_atomic(files.last_frame, encode_png(last_frame(part)))
        write_atomic(files.usage, json.dumps(made).encode())
        os.replace(part, files.video)
        # Partial files of renders of this job that were killed are garbage now.
        for stale in files.dir.glob(f"{files.id}.*.part.mp4"):
            stale.unlink(missing_ok=True)
    except Exception as exc:  # any failure must end as an .error file, not a lost job
        part.unlink(missing_ok=True)
        message = str(exc) if isinstance(exc, RenderError) else f"render failed: {type(exc).__name__}: {exc}"
        write_atomic(files.error, message.encode())


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        # The raw descriptor, not sys.stdin: a thread blocked in the buffered reader holds
        # its lock, and the interpreter aborts (SIGABRT) if it finalizes meanwhile.
        try:
            while os.read(0, 1 << 16):
                pass
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def render(spec: dict[str, Any], out: Path, on_progress: Callable[[int], None]) -> dict[str, Any]:
    """Render ``spec`` into the MP4 file ``out``; return what was made (usage facts:
    ``seconds``, ``width``, ``height``, ``fps``, ``frames``).

    ``spec`` holds ``prompt``, ``seconds``, ``width``, ``height`` (even), and optionally
    ``fps``, ``background`` (``#rrggbb``) and ``image`` (``{"b64": ..., "mime": ...}``).
    The video has exactly ``seconds * fps`` frames. With ``operation`` ``extend`` and a
    ``source_video`` path, the clip starts at that video's last frame and zooms into it;
    with ``edit``, it is that video's frames with ``prompt`` drawn in as a caption (as
    many frames as the source has). ``on_progress`` gets 0-99 as frames
    are encoded; 100 is left for "the file is in place".
    """
    width, height = int(spec["width"]), int(spec["height"])
    fps = int(spec.get("fps") or DEFAULT_FPS)
    total = int(spec["seconds"]) * fps
    background = parse_colour(spec.get("background") or DEFAULT_BACKGROUND)
    prompt = spec.get("prompt") or ""
    operation = spec.get("operation")
    if operation == "extend":
        frames = image_frames(last_frame(Path(spec["source_video"])), prompt, width, height, total)
    elif operation == "edit":
        total = count_frames(Path(spec["source_video"]))
        frames = edited_frames(Path(spec["source_video"]), prompt, width, height)
    elif spec.get("image"):
        picture = decode_image(spec["image"], background)
        frames = image_frames(picture, prompt, width, height, total)
    else:
        frames = text_frames(prompt, background, width, height, total, fps)

    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(h264_encoder(), rate=fps, options={"preset": "veryfast", "crf": "20"})
        assert isinstance(stream, VideoStream)  # an H.264 encoder makes a video stream
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        time_base = Fraction(1, fps)
        reported = -1
        made = 0
        for index, rgb in enumerate(frames):
            made = index + 1
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, time_base
            container.mux(stream.encode(frame))
            percent = min(99, (index + 1) * 99 // max(total, 1))
            if percent != reported:
                on_progress(percent)
                reported = percent
        container.mux(stream.encode())
    return {"seconds": made / fps, "width": width, "height": height, "fps": fps, "frames": made}


def _decoded(path: Path) -> Iterator[np.ndarray]:
    """The RGB frames of the video at ``path``."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise RenderError(f"the source video could not be decoded: {exc}") from exc


def last_frame(path: Path) -> np.ndarray:
    """The last frame of the video at ``path`` as RGB."""
    last = None
    for last in _decoded(path):  # noqa: B007 (the loop leaves the last frame)
        pass
    if last is None:
        raise RenderError("the source video has no frames")
    return last


def count_frames(path: Path) -> int:
    return sum(1 for _ in _decoded(path)) or 1


def edited_frames(path: Path, prompt: str, width: int, height: int) -> Iterator[np.ndarray]:
    """The frames of the video at ``path`` with ``prompt`` drawn in as a caption."""
    overlay: Overlay | Literal[False] | None = None  # False: the prompt draws no caption
    for rgb in _decoded(path):
        if rgb.shape[:2] != (height, width):
            rgb = resize(rgb, width, height)
        frame = np.array(rgb)
        if overlay is None:
            overlay = caption_overlay(prompt, width, height) or False
        if overlay:
            overlay.draw(frame)
        yield frame


def encode_png(rgb: np.ndarray) -> bytes:
    """``rgb`` as PNG bytes (PyAV's PNG encoder)."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


@functools.cache
def h264_encoder() -> str:
    """The name of the H.264 encoder this PyAV build ships."""
    for name in ("libx264", "h264", "libopenh264"):
        try:
            av.codec.Codec(name, "w")
        except ValueError:
            continue
        return name
    raise RenderError("this PyAV build has no H.264 encoder")


def parse_colour(text: str) -> np.ndarray:
    """``#rgb`` or ``#rrggbb`` as an RGB array of int16."""
    digits = text.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return np.frombuffer(bytes.fromhex(digits), dtype=np.uint8).astype(np.int16)


def decode_image(image: dict[str, Any], background: np.ndarray) -> np.ndarray:
    """Decode the reference image (PNG, JPEG, WebP, GIF: first frame) to RGB.

    Transparency is flattened onto ``background``. Raises :class:`RenderError` when the
    bytes do not decode or hold more than :data:`MAX_IMAGE_PIXELS`.
    """
    try:
        data = base64.b64decode(image["b64"], validate=True)
        with av.open(BytesIO(data), "r") as container:
            frame = next(container.decode(video=0))
            if frame.width * frame.height > MAX_IMAGE_PIXELS:
                raise RenderError(
                    f"the reference image is {frame.width}x{frame.height}; at most "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted"
                )
            rgba = frame.to_ndarray(format="rgba")
    except (av.FFmpegError, binascii.Error, ValueError, KeyError, StopIteration) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise RenderError(f"the reference image could not be decoded: {reason}") from exc
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    wide_alpha = alpha.astype(np.uint16)
    flat = (rgb * wide_alpha + background.astype(np.uint16) * (255 - wide_alpha) + 127) // 255
    return flat.astype(np.uint8)


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an RGB image to exactly ``width`` x ``height`` with libswscale."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()


def cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale and centre-crop an image so it fills ``width`` x ``height`` exactly."""
    h, w = rgb.shape[:2]
    if w * height > h * width:  # wider than the target: cut the sides
        keep = max(1, round(h * width / height))
        rgb = rgb[:, (w - keep) // 2 : (w - keep) // 2 + keep]
    else:
        keep = max(1, round(w * height / width))
        rgb = rgb[(h - keep) // 2 : (h - keep) // 2 + keep]
    return resize(rgb, width, height)


# --- text ------------------------------------------------------------------------------


def to_font_text(text: str) -> str:
    """Map ``text`` onto the characters the font has (accents dropped, others ``?``)."""
    out = []
    for char in unicodedata.normalize("NFKD", text.translate(_ASCII_LOOKALIKES)):
        if unicodedata.combining(char):
            continue
        if char.isspace():
            out.append(" ")
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append("?")
    return "".join(out)


def text_mask(lines: list[str], scale: int) -> np.ndarray:
    """Bitmap (bool, rows x columns) of ``lines``, each centred, at ``scale`` px per dot."""
    columns = max(len(line) for line in lines)
    mask = np.zeros((len(lines) * CELL_H - (CELL_H - 8), columns * CELL_W - 1), dtype=bool)
    for row, line in enumerate(lines):
        codes = np.frombuffer(line.encode("ascii"), dtype=np.uint8) - 32
        cells = np.zeros((len(line), 8, CELL_W), dtype=bool)
        cells[:, :, :5] = GLYPHS[codes]
        strip = cells.transpose(1, 0, 2).reshape(8, -1)[:, :-1]
        left = (mask.shape[1] - strip.shape[1]) // 2
        mask[row * CELL_H : row * CELL_H + 8, left : left + strip.shape[1]] = strip
    return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)


def layout(text: str, max_width: int, max_height: int, scales: range) -> np.ndarray | None:
    """Word-wrap ``text`` at the first of ``scales`` (largest first) at which it fits.

    When it fits at none, it is cut to what fits at the last usable scale and ends in
    ``...``. Returns the ink mask, or None when there is nothing to draw or no room.
    """
    text = " ".join(to_font_text(text).split())
    if not text:
        return None
    cut: tuple[list[str], int] | None = None
    for scale in scales:
        columns = (max_width + scale) // (CELL_W * scale)
        rows = (max_height + 2 * scale) // (CELL_H * scale)
        if columns < 4 or rows < 1:
            continue
        lines = textwrap.wrap(text, columns)
        if len(lines) <= rows:
            return text_mask(lines, scale)
        lines = lines[:rows]
        lines[-1] = lines[-1][: columns - 3].rstrip() + "..."
        cut = (lines, scale)
    return text_mask(*cut) if cut else None


class Overlay:
    """Text on a darkened panel at a fixed place in the frame, drawn onto each frame."""

    def __init__(self, ink: np.ndarray, top: int, left: int, pad: int) -> None:
        self.ink = ink
        self.top, self.left, self.pad = top, left, pad

    def draw(self, frame: np.ndarray) -> None:
        """Darken the panel and write the text into ``frame`` (in place)."""
        h, w = self.ink.shape
        p = self.pad
        frame[self.top - p : self.top + h + p, self.left - p : self.left + w + p] //= 2
        frame[self.top : self.top + h, self.left : self.left + w][self.ink] = 255


def title_overlay(prompt: str, width: int, height: int) -> Overlay | None:
    """The prompt as large centred text, shrinking until it fits."""
    margin = max(4, min(width, height) // 16)
    biggest = max(1, min(width, height) // 90)
    smallest = 2 if min(width, height) >= 180 else 1
    ink = layout(prompt, width - 2 * margin, height - 2 * margin, range(biggest, smallest - 1, -1))
    if ink is None:
        return None
    h, w = ink.shape
    return Overlay(ink, (height - h) // 2, (width - w) // 2, margin // 2)


def caption_overlay(prompt: str, width: int, height: int) -> Overlay | None:
    """The prompt as a small caption of at most two lines near the bottom."""
    scale = max(1, min(width, height) // 180)
    pad = 2 * scale
    ink = layout(prompt, width - 4 * pad, 2 * CELL_H * scale - 2 * scale, range(scale, scale - 1, -1))
    if ink is None:
        return None
    h, w = ink.shape
    return Overlay(ink, height - bar_height(height) - 2 * pad - h, (width - w) // 2, pad)


def bar_height(height: int) -> int:
    return max(2, height // 90)


def draw_progress_bar(frame: np.ndarray, index: int, total: int) -> None:
    """A bar along the bottom edge that fills up as the clip plays."""
    bar = frame[-bar_height(frame.shape[0]) :]
    filled = round(frame.shape[1] * (index + 1) / total)
    bar[:, :filled] = 235
    bar[:, filled:] //= 3


# --- frames ----------------------------------------------------------------------------


def text_frames(
    prompt: str, background: np.ndarray, width: int, height: int, total: int, fps: int
) -> Iterator[np.ndarray]:
    """The prompt on a slowly moving gradient around ``background``."""
    overlay = title_overlay(prompt, width, height)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)
    # Separate horizontal and vertical waves keep each frame one broadcast add.
    tint_x = np.array([40, 25, 55], dtype=np.float32)
    tint_y = np.array([20, 35, 15], dtype=np.float32)
    for index in range(total):
        t = index / fps
        across = background + np.sin(2 * np.pi * (x - t / 5))[:, None] * tint_x
        down = np.sin(2 * np.pi * (0.7 * y + t / 7))[:, None] * tint_y
        frame = np.clip(across[None, :, :] + down[:, None, :], 0, 255).astype(np.uint8)
        draw_progress_bar(frame, index, total)
        if overlay is not None:
            overlay.draw(frame)
        yield frame


def image_frames(picture: np.ndarray, prompt: str, width: int, height: int, total: int) -> Iterator[np.ndarray]:
    """A slow zoom and pan into ``picture``; the first frame is the picture itself."""
    # Work from a copy a little larger than the output, so each frame is a downscale
    # and whole-pixel crop steps move the picture by less than one output pixel.
    big_w, big_h = round(width * ZOOM), round(height * ZOOM)
    big = cover(picture, big_w, big_h)
    overlay = caption_overlay(prompt, width, height)
    for index in range(total):
        p = index / (total - 1) if total > 1 else 0.0
        ease = p * p * (3 - 2 * p)
        zoom = 1 + (ZOOM - 1) * ease
        crop_w, crop_h = min(big_w, round(big_w / zoom)), min(big_h, round(big_h / zoom))
        left, top = round((big_w - crop_w) * 0.7), round((big_h - crop_h) * 0.4)
        frame = resize(big[top : top + crop_h, left : left + crop_w], width, height)
        if index > 0:  # the first frame stays exactly the picture
            draw_progress_bar(frame, index, total)
            if overlay is not None:
                overlay.draw(frame)
        yield frame


if __name__ == "__main__":
    _exit_when_stdin_closes()
    _render_process(sys.argv[1])
    # The outcome is on disk; skip finalization, which the watcher thread could only
    # disturb (it is blocked reading stdin).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
