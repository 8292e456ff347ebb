"""Thumbnails made by the gateway from a stored video, for vendors that give none."""

from __future__ import annotations

from pathlib import Path

THUMBNAIL_TYPE = "image/webp"


def make_thumbnail(video: Path, target: Path, max_width: int = 640) -> None:
    """Write a WebP still of ``video``'s first frame (scaled down) to ``target``.

    Blocking (decodes and encodes): call it in a thread.
    """
    import av

    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
    width, height = frame.width, frame.height
    if width > max_width:
        height = max(2, round(height * max_width / width) // 2 * 2)
        width = max_width
    tmp = target.with_name(target.name + ".part")
    with av.open(str(tmp), mode="w", format="webp") as out:
        stream = out.add_stream("libwebp", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        picture = frame.reformat(width=width, height=height, format="yuv420p")
        for packet in stream.encode(picture):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    tmp.replace(target)
