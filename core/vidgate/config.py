"""The operator's configuration: one TOML file, validated at start.

Secrets come from the environment with ``${ENV_VAR}`` interpolation in any string value.
Unknown keys are errors (a typo must not silently disable a limit). Every error names the
file, the key path and what is wrong. See ``docs/operators.md`` for an annotated example.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from cattrs.v import format_exception

from .errors import ConfigError

DEFAULT_DATA_DIR = "./vidgate-data"
MIN_OPERATOR_KEY_LENGTH = 24
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.frozen
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    # The URL clients and vendors reach this gateway at; needed for vendor callbacks.
    public_url: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    # ``metadata`` (compact JSON) is bounded on its own: it is stored and read with every task.
    max_metadata_bytes: int = 64 * 1024
    data_dir: str = DEFAULT_DATA_DIR
    # Serve Prometheus metrics at /metrics (no auth: expose it only on a private network).
    metrics: bool = False
    # Vendor callbacks are small and unauthenticated: a much smaller limit than max_body_bytes.
    max_callback_bytes: int = 256 * 1024
    # A request body must arrive within this long (408 after); the head within header_timeout.
    body_read_timeout_seconds: float = 60.0
    header_timeout_seconds: float = 10.0
    keep_alive_timeout_seconds: float = 5.0
    # Open connections beyond this get 503 at once (uvicorn's limit_concurrency).
    limit_concurrency: int = 2048
    backlog: int = 2048
    # Largest request head (request line and headers) accepted.
    max_header_bytes: int = 16 * 1024
    # API processes `vidgate serve` runs (sharing one listening socket).
    workers: int = 1
    # Event streams (GET .../events): a keep-alive comment this often, and a re-read of
    # the task this often in case another replica changed it (this process wakes at once).
    events_keepalive_seconds: float = 15.0
    events_poll_seconds: float = 2.0
    # Keys that open the read-only operator console and API (GET /console/operator,
    # GET /v1/operator/overview); use ${ENV} references, never literal keys in a shared file.
    operator_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    # How long a key lookup is reused (auth.TokenCache): a token revoked or changed by
    # another process is refused or seen within this; 0 reads the store on every request.
    auth_cache_seconds: float = 1.0


@attrs.frozen
class StoreConfig:
    url: str = f"sqlite:///{DEFAULT_DATA_DIR}/vidgate.db"


@attrs.frozen
class MediaConfig:
    path: str = f"{DEFAULT_DATA_DIR}/media"
    # How long a finished video stays downloadable (drives ``expires_at``).
    retention_hours: float = 24 * 7
    # Largest result (video or thumbnail) stored, in bytes after any Content-Encoding is
    # decoded; enforced while streaming. 512 MiB is several times a minute of 4K at the
    # bitrates vendors deliver, and small enough that one task cannot fill a disk.
    max_result_bytes: int = 512 * 1024 * 1024
    # "s3://BUCKET/PREFIX" stores media in an S3-compatible bucket instead of ``path``.
    url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    # Without these, the usual AWS chain (AWS_* environment, shared files, instance role).
    access_key_id: str | None = attrs.field(default=None, repr=False)
    secret_access_key: str | None = attrs.field(default=None, repr=False)
    # "path" for stores that want bucket names in the path (MinIO and most self-hosted).
    addressing_style: str = "auto"
    part_size_bytes: int = 8 * 1024 * 1024
    # "stream" (through the gateway) or "redirect" (302 to a presigned URL; S3 only).
    serve: str = "stream"
    presign_seconds: int = 300


@attrs.frozen
class WorkerConfig:
    enabled: bool = True
    concurrency: int = 16
    lease_seconds: float = 30.0
    tick_seconds: float = 0.5
    # Upper bound of the backoff between polls after transient errors.
    max_backoff_seconds: float = 60.0
    # Attempts to copy a completed result into media storage before failing the task.
    fetch_attempts: int = 5
    # Result downloads run in their own slots, so slow downloads never hold the slots
    # that poll other tasks.
    fetch_concurrency: int = 8
    # Consecutive failed polls of one task (transport errors, 5xx, malformed answers,
    # unknown status words) before it fails ``poll_failures_exceeded`` and is refunded.
    max_poll_failures: int = 20
    # A vendor saying it does not know a task fails it ``vendor_task_lost`` only this
    # long after the submit: vendors are eventually consistent right after a create.
    not_found_grace_seconds: float = 120.0
    # A task whose submit is in flight is taken over by another process only this long
    # after its lease lapsed (None: ``network.outbound_timeout_seconds``), so that a
    # request a stalled process had sent has reached the vendor, and the takeover's
    # lookup finds it, before anyone thinks of submitting again.
    submit_takeover_grace_seconds: float | None = None

    def takeover_grace(self, network: NetworkConfig) -> float:
        """``submit_takeover_grace_seconds``, its default resolved."""
        grace = self.submit_takeover_grace_seconds
        return network.outbound_timeout_seconds if grace is None else grace


@attrs.frozen
class NetworkConfig:
    outbound_timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 10.0
    image_fetch_timeout_seconds: float = 20.0
    # Result downloads have no total deadline (videos are large); a read that stalls this
    # long ends the attempt, which the worker retries.
    download_idle_timeout_seconds: float = 60.0
    # Whole-transfer bound of one result download attempt, and the slowest transfer
    # accepted (averaged over each window); a trickling vendor ends the attempt.
    download_timeout_seconds: float = 1800.0
    download_min_bytes_per_second: float = 16 * 1024
    download_rate_window_seconds: float = 30.0
    # CIDR ranges client image URLs may resolve to although they are private, loopback or
    # link-local (for tests and private deployments). Empty means public addresses only.
    allow_image_networks: tuple[str, ...] = ()
    # The same for vendor result URLs (every channel; a channel's own
    # ``allow_result_networks`` replaces this list for that channel).
    allow_result_networks: tuple[str, ...] = ()
    # Submit retries on one channel for rate limits before moving to the next channel.
    submit_retries: int = 2
    max_retry_after_seconds: float = 10.0


@attrs.frozen
class WebhooksConfig:
    # Delay before each delivery attempt: the first at once, then after 5 s, 5 min, 30 min,
    # 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (each with jitter); then the event is failed.
    retry_schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    timeout_seconds: float = 15.0
    # CIDR ranges webhook URLs may point at although private or loopback (tests, private
    # deployments). Empty means public addresses only.
    allow_networks: tuple[str, ...] = ()
    # A delivery's lease; a process killed mid-delivery has its events redelivered after it.
    lease_seconds: float = 60.0
    # How long an old signing secret keeps signing after `vidgate tokens webhook-secret --rotate`.
    secret_overlap_hours: float = 24.0


@attrs.frozen
class CoordinationConfig:
    # Redis shared by every replica for breakers, rate windows, worker wake-ups and
    # event fan-out (redis://HOST:PORT/DB, rediss:// for TLS). None: per process.
    redis_url: str | None = None
    # Prefix of every key and pub/sub channel, so deployments can share one Redis.
    key_prefix: str = "vidgate"


@attrs.frozen
class PluginsConfig:
    # None means every installed plugin; a list limits loading to those names.
    enabled: tuple[str, ...] | None = None


@attrs.frozen
class ChannelConfig:
    name: str
    vendor: str
    base_url: str = ""
    models: tuple[str, ...] = ()
    groups: tuple[str, ...] = ("default",)
    priority: int = 0
    weight: int = 1
    credentials: dict[str, Any] = attrs.field(factory=dict, repr=False)
    options: dict[str, Any] = attrs.field(factory=dict)
    model_map: dict[str, str] = attrs.field(factory=dict)
    max_concurrent: int | None = None
    rate_per_minute: float | None = None
    # How long a channel stays out of rotation after an account error or repeated failures.
    cooldown_seconds: float = 60.0
    # Private CIDR ranges this channel's result URLs may point at (None: the
    # ``[network] allow_result_networks`` list).
    allow_result_networks: tuple[str, ...] | None = None


@attrs.frozen
class GroupConfig:
    name: str
    ratio: float = 1.0


REFUND_POLICIES = ("none", "full")


@attrs.frozen
class BillingConfig:
    # What a client gets back when it cancels a task the vendor did not confirm stopping
    # unbilled (no cancel verb, refused, stopped after it started): "none" (the vendor
    # bills it, so the client pays) or "full" (the operator absorbs it).
    refund_on_unconfirmed_cancel: str = "none"


@attrs.frozen
class ModelPrice:
    # An expression over usage facts (see vidgate.prices), e.g. "0.10 * seconds".
    price: str | None = None
    price_per_second: float | None = None
    price_per_request: float | None = None
    # Extra multipliers by resolution tier (e.g. {"1080p" = 1.5}) or by exact size.
    resolution_multipliers: dict[str, float] = attrs.field(factory=dict)
    # Overrides [billing] refund_on_unconfirmed_cancel for this model.
    refund_on_unconfirmed_cancel: str | None = None

    def expression(self) -> str | None:
        """The price expression: ``price``, or what the shorthand keys mean."""
        from .prices import shorthand_expression

        if self.price is not None:
            if not self.resolution_multipliers:
                return self.price
            multiplier = shorthand_expression(None, 1.0, self.resolution_multipliers)
            return f"({self.price}) * {multiplier}"
        return shorthand_expression(self.price_per_second, self.price_per_request, self.resolution_multipliers)


@attrs.frozen
class Config:
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    media: MediaConfig = MediaConfig()
    worker: WorkerConfig = WorkerConfig()
    network: NetworkConfig = NetworkConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    coordination: CoordinationConfig = CoordinationConfig()
    plugins: PluginsConfig = PluginsConfig()
    billing: BillingConfig = BillingConfig()
    channels: tuple[ChannelConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = (GroupConfig("default"),)
    models: dict[str, ModelPrice] = attrs.field(factory=dict)
    # Where the config came from, for messages; not a TOML key.
    source: str = attrs.field(default="<built-in defaults>", kw_only=True)

    def group(self, name: str) -> GroupConfig | None:
        return next((g for g in self.groups if g.name == name), None)

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)


class _WrongType(TypeError):
    """A config value of the wrong type; its message says what the key takes."""


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def reject_bool_as_number(value: Any, cls: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _WrongType(f"expected a number, got {value!r}")
        if cls is int and isinstance(value, float):
            raise _WrongType(f"expected a whole number, got {value!r}")
        return cls(value)

    def strict_str(value: Any, _: type) -> str:
        if not isinstance(value, str):
            raise _WrongType(f"expected a string, got {value!r}")
        return value

    def strict_bool(value: Any, _: type) -> bool:
        # cattrs would take bool(value): the string "false" (or a `${VAR}` holding it) and
        # any non-zero number would read as true. A boolean key takes TOML's true/false.
        if not isinstance(value, bool):
            raise _WrongType(f"expected true or false (a TOML boolean, unquoted), got {value!r}")
        return value

    # Registered before the classes' hooks: those are generated now and keep the field
    # hooks they find, so a hook registered after them would never run for a field.
    conv.register_structure_hook(int, reject_bool_as_number)
    conv.register_structure_hook(float, reject_bool_as_number)
    conv.register_structure_hook(str, strict_str)
    conv.register_structure_hook(bool, strict_bool)
    for cls in (
        ServerConfig,
        StoreConfig,
        MediaConfig,
        WorkerConfig,
        NetworkConfig,
        WebhooksConfig,
        CoordinationConfig,
        PluginsConfig,
        ChannelConfig,
        GroupConfig,
        BillingConfig,
        ModelPrice,
    ):
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True))
    return conv


_converter = _make_converter()


def _interpolate(value: Any, path: str, source: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m[1]
            if name not in os.environ:
                raise ConfigError(f"{source}: {path}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else k, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", source) for i, v in enumerate(value)]
    return value


def _describe(exc: BaseException, source: str) -> str:
    def explain(error: BaseException, type_: type | None) -> str:
        return str(error) if isinstance(error, _WrongType) else format_exception(error, type_)

    messages = cattrs.transform_error(exc, path="", format_exception=explain)
    cleaned = []
    for message in messages:
        # "what @ .server.port" -> "server.port: what" (the key first, as our own errors put it)
        what, _, where = message.rpartition(" @ ")
        where = where.lstrip(".")
        cleaned.append(f"{where}: {what}" if what and where else (what or where))
    return f"{source}: " + "; ".join(cleaned)


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a decoded TOML document and return the Config."""
    data = _interpolate(data, "", source)
    try:
        config = _converter.structure({k: v for k, v in data.items()}, Config)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        raise ConfigError(_describe(exc, source)) from None
    config = attrs.evolve(config, source=source)
    _check_consistency(config)
    return config


def _check_networks(cidrs: tuple[str, ...], where: str) -> None:
    import ipaddress

    for i, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{where}[{i}]: {cidr!r} is not a CIDR range") from None


def _check_consistency(config: Config) -> None:
    src = config.source
    server = config.server
    for key in (
        "max_body_bytes",
        "max_callback_bytes",
        "body_read_timeout_seconds",
        "header_timeout_seconds",
        "keep_alive_timeout_seconds",
        "limit_concurrency",
        "backlog",
        "max_header_bytes",
    ):
        if getattr(server, key) <= 0:
            raise ConfigError(f"{src}: server.{key}: must be positive")
    for i, key in enumerate(server.operator_keys):
        # A short operator key could be guessed; the gateway's own keys have 256 bits.
        if len(key.strip()) < MIN_OPERATOR_KEY_LENGTH:
            raise ConfigError(
                f"{src}: server.operator_keys[{i}]: must be at least {MIN_OPERATOR_KEY_LENGTH} characters"
            )
    net = config.network
    _check_networks(net.allow_image_networks, f"{src}: network.allow_image_networks")
    _check_networks(net.allow_result_networks, f"{src}: network.allow_result_networks")
    for key in ("download_timeout_seconds", "download_rate_window_seconds"):
        if getattr(net, key) <= 0:
            raise ConfigError(f"{src}: network.{key}: must be positive")
    if net.download_min_bytes_per_second < 0:
        raise ConfigError(f"{src}: network.download_min_bytes_per_second: must be 0 or more")
    if config.media.max_result_bytes < 1:
        raise ConfigError(f"{src}: media.max_result_bytes: must be at least 1")
    if server.workers < 1:
        raise ConfigError(f"{src}: server.workers: must be at least 1")
    # Longer would let a revoked key work for minutes on the other processes.
    if not 0 <= server.auth_cache_seconds <= 60:
        raise ConfigError(f"{src}: server.auth_cache_seconds: must be from 0 to 60")
    redis_url = config.coordination.redis_url
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{src}: coordination.redis_url: must be a redis://, rediss:// or unix:// URL")
    if not config.coordination.key_prefix:
        raise ConfigError(f"{src}: coordination.key_prefix: must not be empty")
    if config.worker.fetch_concurrency < 1:
        raise ConfigError(f"{src}: worker.fetch_concurrency: must be at least 1")
    if config.worker.max_poll_failures < 1:
        raise ConfigError(f"{src}: worker.max_poll_failures: must be at least 1")
    if config.worker.not_found_grace_seconds < 0:
        raise ConfigError(f"{src}: worker.not_found_grace_seconds: must not be negative")
    if (config.worker.submit_takeover_grace_seconds or 0) < 0:
        raise ConfigError(f"{src}: worker.submit_takeover_grace_seconds: must not be negative")
    seen: set[str] = set()
    groups = {g.name for g in config.groups}
    for i, ch in enumerate(config.channels):
        where = f"{src}: channels[{i}]"
        if not ch.name:
            raise ConfigError(f"{where}.name: must not be empty")
        if ch.name in seen:
            raise ConfigError(f"{where}.name: channel name {ch.name!r} is used twice")
        seen.add(ch.name)
        if ch.allow_result_networks is not None:
            _check_networks(ch.allow_result_networks, f"{where}.allow_result_networks")
        if ch.weight < 0:
            raise ConfigError(f"{where}.weight: must be 0 or more")
        if ch.max_concurrent is not None and ch.max_concurrent < 1:
            raise ConfigError(f"{where}.max_concurrent: must be at least 1")
        if ch.rate_per_minute is not None and ch.rate_per_minute <= 0:
            raise ConfigError(f"{where}.rate_per_minute: must be positive")
        for g in ch.groups:
            if g not in groups:
                raise ConfigError(f"{where}.groups: group {g!r} is not defined in [[groups]]")
    hooks = config.webhooks
    if not hooks.retry_schedule or any(d < 0 for d in hooks.retry_schedule):
        raise ConfigError(f"{src}: webhooks.retry_schedule: needs at least one delay, none negative")
    if hooks.timeout_seconds <= 0 or hooks.lease_seconds <= hooks.timeout_seconds:
        raise ConfigError(f"{src}: webhooks: timeout_seconds must be positive and below lease_seconds")
    try:
        for cidr in (*hooks.allow_networks, *config.network.allow_image_networks):
            ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ConfigError(f"{src}: allow_networks: {exc}") from None
    for group in config.groups:
        if group.ratio < 0:
            raise ConfigError(f"{src}: groups: ratio of {group.name!r} must be 0 or more")
    from .prices import Price, PriceError

    if config.billing.refund_on_unconfirmed_cancel not in REFUND_POLICIES:
        raise ConfigError(f"{src}: billing.refund_on_unconfirmed_cancel: must be one of {', '.join(REFUND_POLICIES)}")
    _check_media(config)
    for name, price in config.models.items():
        where = f'{src}: models."{name}"'
        if sum(v is not None for v in (price.price, price.price_per_second, price.price_per_request)) > 1:
            raise ConfigError(f"{where}: set one of price, price_per_second or price_per_request")
        for v in (price.price_per_second, price.price_per_request):
            if v is not None and v < 0:
                raise ConfigError(f"{where}: prices must be 0 or more")
        if price.refund_on_unconfirmed_cancel not in (None, *REFUND_POLICIES):
            raise ConfigError(f"{where}.refund_on_unconfirmed_cancel: must be one of {', '.join(REFUND_POLICIES)}")
        if price.price is not None:
            try:
                Price(price.price)
            except PriceError as exc:
                raise ConfigError(f"{where}.price: {exc}") from None


def _check_media(config: Config) -> None:
    from .media import MIN_PART_BYTES, parse_s3_url

    m, where = config.media, f"{config.source}: media"
    if m.url is not None:
        try:
            parse_s3_url(m.url)
        except ValueError as exc:
            raise ConfigError(f"{where}.url: {exc} (expected s3://BUCKET/PREFIX)") from None
    if (m.access_key_id is None) != (m.secret_access_key is None):
        raise ConfigError(f"{where}: set access_key_id and secret_access_key together")
    if m.serve not in ("stream", "redirect"):
        raise ConfigError(f"{where}.serve: must be 'stream' or 'redirect', not {m.serve!r}")
    if m.serve == "redirect" and m.url is None:
        raise ConfigError(f"{where}.serve: 'redirect' needs an S3 url (local files are always streamed)")
    if m.addressing_style not in ("auto", "path", "virtual"):
        raise ConfigError(f"{where}.addressing_style: must be 'auto', 'path' or 'virtual'")
    if m.part_size_bytes < MIN_PART_BYTES:
        raise ConfigError(f"{where}.part_size_bytes: must be at least {MIN_PART_BYTES} (S3's minimum part)")
    if not 1 <= m.presign_seconds <= 7 * 24 * 3600:
        raise ConfigError(f"{where}.presign_seconds: must be from 1 to 604800 (a week, S3's limit)")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(data, str(p))


def default_config() -> Config:
    """The embedded default: SQLite and media under ./vidgate-data, the local vendor."""
    return Config(
        channels=(ChannelConfig(name="local", vendor="local"),),
        source="<embedded default>",
    )
