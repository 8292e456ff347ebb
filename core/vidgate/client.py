"""``vidgate submit``: a small client of the gateway's own API, with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from .request import sniff_image_type


def add_submit_parser(sub: Any) -> None:
    p = sub.add_parser("submit", help="submit a task to a gateway, optionally wait and download")
    p.add_argument("prompt")
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--image", type=Path, help="reference image file (first frame)")
    p.add_argument("--seconds", type=int)
    p.add_argument("--size")
    p.add_argument("--wait", action="store_true", help="wait until the task finishes")
    p.add_argument("-o", "--output", type=Path, help="download the video here (implies --wait)")
    p.add_argument("--url", default=os.environ.get("VIDGATE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--key", default=os.environ.get("VIDGATE_API_KEY"), help="API key (default: $VIDGATE_API_KEY)")


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of a ``text/event-stream`` body (comments skipped)."""
    kind = "message"
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)


def _bar(progress: int, status: str, width: int = 30) -> str:
    filled = width * progress // 100
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {progress:3d}% {status:<12}"


async def run_submit(args: argparse.Namespace) -> int:
    if not args.key:
        print("error: pass --key or set VIDGATE_API_KEY", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"model": args.model, "prompt": args.prompt}
    if args.seconds:
        body["seconds"] = args.seconds
    if args.size:
        body["size"] = args.size
    if args.image:
        data = await asyncio.to_thread(args.image.read_bytes)
        mime = sniff_image_type(data) or "application/octet-stream"
        body["image"] = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    headers = {"Authorization": f"Bearer {args.key}"}
    base = args.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=120)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        async with http.post(f"{base}/v1/video/generations", json=body) as resp:
            task = await resp.json()
            if resp.status != 200:
                print(f"error: {task.get('error', {}).get('message', task)}", file=sys.stderr)
                return 1
        print(task["id"])
        if not (args.wait or args.output):
            return 0
        tty = sys.stderr.isatty()
        # The progress comes from the task's event stream; it ends with the terminal event.
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=120)
        async with http.get(f"{base}/v1/video/generations/{task['id']}/events", timeout=timeout) as resp:
            if resp.status != 200:
                error = await resp.json()
                print(f"\nerror: {error.get('error', {}).get('message', error)}", file=sys.stderr)
                return 1
            async for _kind, data in sse_events(resp.content):
                task = json.loads(data)
                if tty:
                    print(_bar(task["progress"], task["status"]), end="", file=sys.stderr, flush=True)
        if tty:
            print(file=sys.stderr)
        if task["status"] != "completed":  # failed, cancelled, or the stream broke off
            message = (task.get("error") or {}).get("message") or "the task did not complete"
            print(f"{task['status']}: {message}", file=sys.stderr)
            return 1
        print(f"completed: {task['seconds']}s {task['size']}", file=sys.stderr)
        if args.output:
            async with http.get(f"{base}/v1/videos/{task['id']}/content") as resp:
                resp.raise_for_status()
                with args.output.open("wb") as f:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        await asyncio.to_thread(f.write, chunk)
            print(f"saved {args.output}", file=sys.stderr)
    return 0
