"""The ``vidgate`` command line: serve, worker, plugins, tokens, usage, check-config, submit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import time
from typing import Any

from . import __version__
from .billing import from_micro, to_micro
from .config import Config, default_config, load_config
from .errors import ConfigError, PluginLoadError

DEV_TOKEN_FILE = "dev-token"
_WATCHERS: set[asyncio.Task[None]] = set()  # keeps the parent watch alive


def _config(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or os.environ.get("VIDGATE_CONFIG")
    return load_config(path) if path else default_config()


def _embedded(args: argparse.Namespace) -> bool:
    return not (getattr(args, "config", None) or os.environ.get("VIDGATE_CONFIG"))


# -- serve / worker ----------------------------------------------------------------------


async def _ensure_dev_token(gateway: Any) -> None:
    """First start of the embedded default: create a token and print it once."""
    if await gateway.store.count_tokens() > 0:
        return
    _, key = await gateway.create_token("dev", "default")
    token_file = gateway.config.data_dir / DEV_TOKEN_FILE
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(key + "\n")
    token_file.chmod(0o600)
    print(f"vidgate: created a development token (also saved to {token_file}):", flush=True)
    print(f"  {key}", flush=True)


async def _prepare(config: Config, embedded: bool) -> None:
    """Before any child starts: migrate the store once, print the dev token once."""
    from .gateway import Gateway

    gateway = await Gateway.start(config)
    try:
        if embedded:
            await _ensure_dev_token(gateway)
    finally:
        await gateway.close()


def _exit_with_parent(parent: int) -> None:
    """In a child of `vidgate serve` (pid ``parent``, passed in: it may be gone before the
    child has started): stop, as on SIGTERM, once the parent is gone, even if it was
    killed with SIGKILL and could not stop us itself."""
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)

    async def watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    _WATCHERS.add(asyncio.get_running_loop().create_task(watch()))


def _freeze_start_up() -> None:
    """Move everything start-up loaded (modules, plugins, config), which lives as long as
    the process, out of the collector's sight: a full collection under load then walks
    only what requests and polls made (it walked every module's objects: tens of ms, the
    status path's worst p99)."""
    gc.collect()
    gc.freeze()


async def _run_api(
    config: Config, host: str, port: int, sockets: list[Any] | None = None, stop: asyncio.Event | None = None
) -> None:
    """Serve the API until a signal (or, given ``stop``, until it is set: then the
    caller owns the signals, and uvicorn must not re-raise them at the end)."""
    import uvicorn

    from .api import create_app
    from .gateway import Gateway
    from .serving import uvicorn_config

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            if stop is None:
                with super().capture_signals():
                    yield
            else:
                yield

    gateway = await Gateway.start(config)
    app = create_app(gateway, run_worker=False, close_gateway=True)
    server = Server(uvicorn_config(app, config.server, host, port))
    _freeze_start_up()

    async def stop_on_event() -> None:
        assert stop is not None
        await stop.wait()
        server.should_exit = True

    stopper = asyncio.create_task(stop_on_event()) if stop is not None else None
    try:
        await server.serve(sockets=sockets)
    finally:
        if stopper is not None:
            stopper.cancel()


def _api_process(config: Config, sock: Any, host: str, port: int, log_level: str, parent: int) -> None:
    """One API process of `vidgate serve --workers N` (spawned; shares ``sock``)."""
    from .logs import configure, install_log_rate_limits
    from .serving import raise_open_files_limit

    configure(log_level)
    raise_open_files_limit()
    install_log_rate_limits()

    async def main() -> None:
        _exit_with_parent(parent)
        await _run_api(config, host, port, [sock])

    asyncio.run(main())


def _worker_process(config: Config, log_level: str, parent: int) -> None:
    """The poll worker of `vidgate serve`, in a process of its own (spawned)."""
    from .logs import configure, install_log_rate_limits

    configure(log_level)
    install_log_rate_limits()

    async def main() -> None:
        _exit_with_parent(parent)
        await _run_worker(config, once=False)

    asyncio.run(main())


async def _serve(args: argparse.Namespace) -> int:
    """The API in ``workers`` processes, the poll worker in one more.

    A child that dies ends the whole service (the others are stopped and we exit non-zero):
    a process manager restarts it, and a half-running gateway never looks healthy.
    """
    import multiprocessing

    from .logs import install_log_rate_limits
    from .serving import raise_open_files_limit

    config = _config(args)
    raise_open_files_limit()
    install_log_rate_limits()
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers if args.workers is not None else config.server.workers
    if workers < 1:
        raise ConfigError("--workers: must be at least 1")
    await _prepare(config, _embedded(args))
    spawn = multiprocessing.get_context("spawn")
    children: list[Any] = []
    if config.worker.enabled:
        children.append(
            spawn.Process(
                target=_worker_process,
                args=(config, args.log_level, os.getpid()),
                name="vidgate-worker",
            )
        )
    sock = None
    if workers > 1:
        from .serving import uvicorn_config

        # One listening socket, bound here; every API process accepts from it, as with
        # uvicorn's own --workers.
        sock = uvicorn_config(None, config.server, host, port).bind_socket()
        for i in range(workers):
            children.append(
                spawn.Process(
                    target=_api_process,
                    args=(config, sock, host, port, args.log_level, os.getpid()),
                    name=f"vidgate-api-{i}",
                )
            )
    for child in children:
        child.start()
    print(
        f"vidgate {__version__} serving on http://{host}:{port} (config: {config.source},"
        f" {workers} API process{'es' if workers > 1 else ''},"
        f" worker {'in its own process' if config.worker.enabled else 'disabled'})",
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    code = 0

    async def supervise() -> None:
        nonlocal code
        while not stop.is_set():
            dead = [c for c in children if c.exitcode is not None]
            if dead:
                code = 1
                for c in dead:
                    print(f"vidgate: {c.name} exited ({c.exitcode}); stopping", file=sys.stderr, flush=True)
                stop.set()
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(supervise())
    try:
        if workers == 1:
            await _run_api(config, host, port, stop=stop)
        else:
            await stop.wait()
    finally:
        stop.set()
        await watcher
        for child in children:
            if child.exitcode is None:
                child.terminate()  # SIGTERM: each stops gracefully
        for child in children:
            await asyncio.to_thread(child.join, 20)
            if child.exitcode is None:
                child.kill()
                await asyncio.to_thread(child.join, 5)
        if sock is not None:
            sock.close()
    return code


async def _run_worker(config: Config, *, once: bool) -> None:
    from .gateway import Gateway
    from .worker import Worker

    gateway = await Gateway.start(config)
    worker = Worker(gateway)
    _freeze_start_up()
    try:
        if once:
            await worker.run_until_idle()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)
    finally:
        await gateway.close()


async def _worker(args: argparse.Namespace) -> int:
    await _run_worker(_config(args), once=args.once)
    return 0


# -- plugins ---------------------------------------------------------------------------


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"


def _plugins(args: argparse.Namespace) -> int:
    from .plugins import Plugins

    config = _config(args)
    plugins = Plugins.load(enabled=config.plugins.enabled)
    rows: list[dict[str, Any]] = [
        {
            "name": i.name,
            "distribution": i.distribution,
            "version": i.version,
            "vendors": i.vendors,
            "models": i.models,
            "enabled": i.enabled,
            "status": i.status,
            "error": i.error,
        }
        for i in plugins.infos
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']}  ({r['distribution'] or '-'} {r['version'] or ''})  {r['status']}")
        if r["vendors"]:
            print(f"  vendors: {', '.join(r['vendors'])}")
        if r["models"]:
            print(f"  models:  {', '.join(r['models'])}")
        if r["error"]:
            print(f"  error:   {r['error']}")
    if not rows:
        print("no plugins installed")
    return 0


# -- tokens and usage ---------------------------------------------------------------------


async def _store(config: Config) -> Any:
    from .store import Store

    return await Store.open(config.store.url)


async def _tokens(args: argparse.Namespace) -> int:
    from .auth import hash_key, key_hint, new_key
    from .store import DuplicateTokenName

    config = _config(args)
    store = await _store(config)
    try:
        if args.tokens_command == "create":
            if config.group(args.group) is None:
                print(f"error: group {args.group!r} is not defined in {config.source}", file=sys.stderr)
                return 2
            key = new_key()
            expires = time.time() + args.expires_in_days * 86400 if args.expires_in_days else None
            models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
            try:
                token = await store.create_token(
                    name=args.name,
                    key_hash=hash_key(key),
                    key_hint=key_hint(key),
                    group=args.group,
                    quota=None if args.quota is None else to_micro(args.quota),
                    models=models,
                    expires_at=expires,
                )
            except DuplicateTokenName:
                print(f"error: a token named {args.name!r} already exists; choose another --name", file=sys.stderr)
                return 1
            if args.operator:
                await store.set_token_operator(token.id, True)
            kind = ", operator" if args.operator else ""
            print(f"created token {token.id} ({token.name}, group {token.group}{kind}); the key is shown only now:")
            print(key)
        elif args.tokens_command == "list":
            for t in await store.list_tokens():
                quota = "unlimited" if t.quota is None else f"{from_micro(t.quota):.4f}"
                state = (
                    "revoked"
                    if t.revoked_at
                    else ("expired" if t.expires_at and t.expires_at < time.time() else "active")
                )
                print(
                    f"{t.id}  {t.name:<16} group={t.group:<10} used={from_micro(t.used):.4f} quota={quota}"
                    f"  models={','.join(t.models) if t.models else '*'}  {t.key_hint}  {state}"
                    f"{'  operator' if t.operator else ''}"
                )
        elif args.tokens_command in ("set-webhook", "webhook-secret"):
            token = await store.token(args.token)
            if token is None:
                print(f"error: no token {args.token!r}", file=sys.stderr)
                return 1
            if args.tokens_command == "set-webhook":
                url = None if args.url.lower() in ("", "none") else args.url
                if url is not None:
                    from .net import parse_networks, url_refusal

                    problem = await url_refusal(url, parse_networks(config.webhooks.allow_networks))
                    if problem:
                        print(f"error: the webhook URL {problem}", file=sys.stderr)
                        return 2
                await store.set_token_webhook(token.id, url)
                print(f"default webhook of {token.id} ({token.name}) is now {url or 'none'}")
            else:
                from .webhooks import webhook_secret

                secret = await webhook_secret(
                    store, token, rotate=args.rotate, overlap_hours=config.webhooks.secret_overlap_hours
                )
                if args.rotate:
                    print(f"rotated; the previous secret keeps signing for {config.webhooks.secret_overlap_hours:g} h")
                print(f"webhook signing secret of {token.id} ({token.name}):")
                print(secret)
        elif args.tokens_command in ("revoke", "set-quota"):
            token = await store.token(args.token)
            if token is None:
                named = await store.tokens_named(args.token)
                if len(named) > 1:
                    # Only databases from before names were unique: never guess which one.
                    ids = ", ".join(f"{t.id}{' (revoked)' if t.revoked_at else ''}" for t in named)
                    print(
                        f"error: {len(named)} tokens are named {args.token!r}: {ids}; give the id instead",
                        file=sys.stderr,
                    )
                    return 1
                token = named[0] if named else None
            if token is None:
                print(f"error: no token {args.token!r}", file=sys.stderr)
                return 1
            if args.tokens_command == "revoke":
                if await store.revoke_token(token.id):
                    print(f"revoked {token.id} ({token.name})")
                else:
                    print(f"{token.id} ({token.name}) was already revoked")
            else:
                new_quota = None if args.quota.lower() == "unlimited" else to_micro(float(args.quota))
                await store.set_quota(token.id, new_quota)
                print(f"quota of {token.id} ({token.name}) is now {args.quota}")
    finally:
        await store.close()
    return 0


async def _webhooks(args: argparse.Namespace) -> int:
    store = await _store(_config(args))
    try:
        if args.webhooks_command == "list":
            states = ("failed", "gone") if args.failed else None
            events = await store.list_webhook_events(states=states, limit=args.limit)
            for e in events:
                print(
                    f"{e.id}  {_when(e.created_at)}  {e.type:<18} {e.state:<9} attempts={e.attempts}"
                    f"  {e.task_id}  {e.url}  {e.last_error or ''}".rstrip()
                )
            if not events:
                print("no webhook events")
            return 0
        if not args.event_id and not args.all_failed:
            print("error: give an EVENT_ID or --all-failed", file=sys.stderr)
            return 2
        n = await store.redeliver_webhook_events(None if args.all_failed else args.event_id)
        if n == 0 and args.event_id:
            print(f"error: no webhook event {args.event_id!r}", file=sys.stderr)
            return 1
        print(f"queued {n} event(s) for redelivery")
        return 0
    finally:
        await store.close()


async def _task(args: argparse.Namespace) -> int:
    """Everything an operator may see about one task, attempts included."""
    store = await _store(_config(args))
    try:
        task = await store.get_task(args.task_id)
        if task is None:
            print(f"error: no task {args.task_id!r}", file=sys.stderr)
            return 1
        token = await store.token(task.token_id)
        attempts = await store.attempts(task.id)
    finally:
        await store.close()
    rows = [
        ("task", task.id),
        ("token", f"{token.name if token else '?'} ({task.token_id})"),
        ("model", task.model),
        ("vendor / channel", f"{task.vendor} / {task.channel}"),
        ("vendor task id", task.vendor_task_id or "-"),
        ("status", f"{task.status} ({task.phase}{', hidden' if task.hidden else ''}) {task.progress}%"),
        ("vendor status", task.vendor_status or "-"),
        ("made", f"{task.seconds}s {task.size} {task.resolution or ''}"),
        ("charge", f"{from_micro(task.charge):.4f} estimated{' refunded' if task.refunded else ''}"),
        ("cost", "-" if task.cost is None else f"{from_micro(task.cost):.4f} settled"),
        ("usage", json.dumps(task.usage, sort_keys=True) if task.usage is not None else "-"),
        ("cancel requested", f"{_when(task.cancel_requested_at)} UTC" if task.cancel_requested_at else "-"),
        ("error", f"{task.error_code}: {task.error_message}" if task.error_code else "-"),
        ("created / completed", f"{_when(task.created_at)} / {_when(task.completed_at)} UTC"),
        ("deadline", f"{_when(task.deadline_at)} UTC"),
        ("poll failures", str(task.poll_failures)),
    ]
    for name, value in rows:
        print(f"{name:<20} {value}")
    print("attempts:")
    for a in attempts:
        print(f"  {_when(a.at)}  {a.channel:<16} {a.outcome:<14} {a.detail}")
    return 0


async def _usage(args: argparse.Namespace) -> int:
    store = await _store(_config(args))
    try:
        rows = await store.usage()
    finally:
        await store.close()
    # estimated: pre-deducted at submit; settled: adjustments to the vendors' actual usage;
    # net: what was finally paid.
    print(f"{'token':<16} {'model':<24} {'tasks':>6} {'estimated':>12} {'settled':>12} {'refunded':>12} {'net':>12}")
    for r in rows:
        print(
            f"{r['token']:<16} {r['model'] or '-':<24} {r['tasks']:>6} {from_micro(r['charged']):>12.4f}"
            f" {from_micro(r['settled']):>+12.4f} {from_micro(r['refunded']):>12.4f} {from_micro(r['net']):>12.4f}"
        )
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from .dispatch import to_channel
    from .plugins import Plugins

    config = load_config(args.path)
    plugins = Plugins.load(enabled=config.plugins.enabled)
    problems = []
    for i, ch in enumerate(config.channels):
        vendor = plugins.vendors.get(ch.vendor)
        if vendor is None:
            problems.append(f"{config.source}: channels[{i}].vendor: no enabled plugin provides vendor {ch.vendor!r}")
            continue
        channel = to_channel(ch, plugins)
        messages = plugins.validate_channel(channel)
        for message in messages:
            problems.append(f"{config.source}: channels[{i}].{message}")
        known = set(plugins.vendor_models(ch.vendor))
        if not messages:
            known.update(n for m in plugins.channel_models(channel) for n in (m.name, *m.aliases))
        for m in ch.models:
            if m not in known and m not in ch.model_map:
                problems.append(f"{config.source}: channels[{i}].models: {m!r} is not a model of vendor {ch.vendor!r}")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"{config.source}: ok ({len(config.channels)} channels, {len(config.groups)} groups)")
    return 0


def _new_plugin(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .scaffold import new_plugin

    target = Path(args.dir or f"vidgate-{args.name}")
    try:
        written = new_plugin(args.name, target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"next: cd {target} && pip install -e '.[test]' && pytest")
    return 0


# -- entry point ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidgate", description="One video-generation API in front of many vendors.")
    parser.add_argument("--version", action="version", version=f"vidgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="TOML config file (default: $VIDGATE_CONFIG, else the embedded default)")
        return p

    p = with_config(sub.add_parser("serve", help="serve the API and run the poll worker (in its own process)"))
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="API processes sharing the port (default: [server] workers, 1)")
    p.add_argument("--log-level", default="info")
    p = with_config(sub.add_parser("worker", help="run the poll worker alone"))
    p.add_argument("--once", action="store_true", help="process due tasks until none is due, then exit")
    p.add_argument("--log-level", default="info")
    p = with_config(sub.add_parser("plugins", help="list installed plugins"))
    p.add_argument("--json", action="store_true")
    tokens = sub.add_parser("tokens", help="manage API tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    c = with_config(tsub.add_parser("create", help="create a token; prints its key once, as the last line"))
    c.add_argument("--name", required=True)
    c.add_argument("--group", default="default")
    c.add_argument("--quota", type=float, help="balance in price units (default: unlimited)")
    c.add_argument("--models", help="comma-separated models this token may use (default: all of its group)")
    c.add_argument("--expires-in-days", type=float)
    c.add_argument(
        "--operator",
        action="store_true",
        help="the token may also read the operator console (/console/operator): every channel, task and token",
    )
    with_config(tsub.add_parser("list", help="list tokens"))
    r = with_config(tsub.add_parser("revoke", help="revoke a token at once"))
    r.add_argument("token", help="token id or name")
    q = with_config(tsub.add_parser("set-quota", help="set a token's quota"))
    q.add_argument("token", help="token id or name")
    q.add_argument("quota", help="a number, or 'unlimited'")
    w = with_config(tsub.add_parser("set-webhook", help="set a token's default webhook URL ('none' clears it)"))
    w.add_argument("token", help="token id or name")
    w.add_argument("url")
    w = with_config(tsub.add_parser("webhook-secret", help="print a token's webhook signing secret (last line)"))
    w.add_argument("token", help="token id or name")
    w.add_argument("--rotate", action="store_true", help="make a new secret; the old one keeps signing for a while")
    hooks = sub.add_parser("webhooks", help="webhook deliveries: list and redeliver")
    hsub = hooks.add_subparsers(dest="webhooks_command", required=True)
    w = with_config(hsub.add_parser("list", help="recent webhook events, newest first"))
    w.add_argument("--failed", action="store_true", help="only events that failed or whose endpoint is gone")
    w.add_argument("--limit", type=int, default=100)
    w = with_config(hsub.add_parser("retry", help="redeliver one event, or every failed one"))
    w.add_argument("event_id", nargs="?")
    w.add_argument("--all-failed", action="store_true")
    with_config(sub.add_parser("usage", help="estimated charges, settlements, refunds and net per token and model"))
    p = with_config(sub.add_parser("task", help="show one task as operators see it, with its attempts"))
    p.add_argument("task_id")
    p = sub.add_parser("check-config", help="validate a config file without starting")
    p.add_argument("path")
    p = sub.add_parser("new-plugin", help="scaffold a vendor plugin distribution that passes its tests")
    p.add_argument("name", help="the vendor id, e.g. acme (package vidgate_acme)")
    p.add_argument("--dir", help="where to write it (default: ./vidgate-NAME)")
    from .client import add_submit_parser

    add_submit_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .logs import configure

    args = build_parser().parse_args(argv)
    configure(getattr(args, "log_level", "warning"))
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "worker":
            return asyncio.run(_worker(args))
        if args.command == "plugins":
            return _plugins(args)
        if args.command == "tokens":
            return asyncio.run(_tokens(args))
        if args.command == "webhooks":
            return asyncio.run(_webhooks(args))
        if args.command == "usage":
            return asyncio.run(_usage(args))
        if args.command == "task":
            return asyncio.run(_task(args))
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "new-plugin":
            return _new_plugin(args)
        if args.command == "submit":
            from .client import run_submit

            return asyncio.run(run_submit(args))
    except (ConfigError, PluginLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
