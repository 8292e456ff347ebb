"""The vendor contract suite: the guarantees every vendor plugin must keep, as tests.

A plugin runs it against its fake (a :class:`vidgate.fakekit.FakeVendor`) with a few
lines in its ``tests/test_contract.py``::

    from vidgate.testing import contract
    from vidgate_acme import plugin
    from vidgate_acme.fake import FakeAcme

    class TestAcmeContract(contract.VendorContract):
        plugin = plugin
        fake = FakeAcme          # called with no arguments: a fresh fake per test
        model = "acme-1"
        image_model = "acme-1"   # None skips the image-to-video case

Each ``test_*`` method starts the fake and a whole gateway (``run_gateway``) with one
channel of the plugin's vendor, and drives it over HTTP. The fake's prompt keywords
(:data:`vidgate.fakekit.KEYWORDS`) inject the faults. Override :meth:`credentials`,
:meth:`body` or :attr:`config` where a vendor needs something else; override a case
with ``pytest.mark.skip`` only with a reason the README states.

Cases for optional vendor verbs (``test_cancel``, ``test_batch_poll``) skip unless the
plugin declares the verb (:meth:`VendorContract.declares`); ``test_batch_poll`` also needs
:attr:`VendorContract.batch_poll_path`, the recorded path of the plugin's list call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pluggy
import pytest

from . import hookspecs
from .fakekit import FakeJob, FakeVendor
from .testing import RunningGateway, captured_logs, dump_store, run_gateway, tiny_png

__all__ = ["VendorContract"]


class VendorContract:
    """Subclass in a plugin's tests and set :attr:`plugin`, :attr:`fake`, :attr:`model`."""

    #: The plugin object (what the ``vidgate`` entry point points at).
    plugin: ClassVar[Any] = None
    #: A callable returning a fresh :class:`FakeVendor` (usually the fake's class).
    fake: ClassVar[Callable[[], FakeVendor] | None] = None
    #: A text-to-video model of the plugin.
    model: ClassVar[str] = ""
    #: An image-to-video model, or None when the vendor has none.
    image_model: ClassVar[str | None] = None
    #: Width and height of the PNG the image case sends.
    image_size: ClassVar[tuple[int, int]] = (512, 512)
    #: Extra fields of every request body (``{"seconds": 5}``).
    request: ClassVar[Mapping[str, Any]] = {}
    #: Config merged into the gateway config (top-level tables are merged key by key).
    config: ClassVar[Mapping[str, Any]] = {}
    #: Channel ``options`` (the poll interval is already short).
    channel_options: ClassVar[Mapping[str, Any]] = {}
    #: How long (s) one case may run before it fails.
    case_timeout: ClassVar[float] = 60.0
    #: The outbound timeout (s) the gateway uses; ``[slow]`` polls take twice as long.
    outbound_timeout: ClassVar[float] = 1.0
    #: The path of the plugin's batch-poll (list) call as the fake records it (an exact
    #: string or a compiled regex, see :meth:`FakeVendor.recorded`); ``test_batch_poll``
    #: counts these requests. None skips that case for a plugin that declares ``poll_many``.
    batch_poll_path: ClassVar[str | re.Pattern[str] | None] = None
    #: The HTTP method of that list call (None: any method).
    batch_poll_method: ClassVar[str | None] = "GET"
    #: How many tasks ``test_batch_poll`` keeps in flight at once.
    batch_poll_tasks: ClassVar[int] = 6

    # -- override points --------------------------------------------------------------

    def credentials(self, fake: FakeVendor) -> dict[str, Any]:
        """The channel's credentials for ``fake`` (default ``{"api_key": fake.secret}``)."""
        return {"api_key": fake.secret}

    def secrets(self, fake: FakeVendor) -> list[str]:
        """Strings that must never leak: every credential value, and the fake's secret."""
        values = [v for v in self.credentials(fake).values() if isinstance(v, str)]
        return sorted({fake.secret, *values})

    def base_url(self, fake: FakeVendor) -> str:
        """The channel's ``base_url`` for ``fake`` (default ``fake.url``)."""
        return fake.url

    def body(self, prompt: str, *, image: bool = False) -> dict[str, Any]:
        """The request body for a case (``POST /v1/video/generations``)."""
        body: dict[str, Any] = {"model": self.image_model if image else self.model, "prompt": prompt, **self.request}
        if image:
            body["image"] = "data:image/png;base64," + base64.b64encode(tiny_png(*self.image_size)).decode()
        return body

    def declares(self, verb: str) -> bool:
        """True when the plugin implements vendor verb ``verb`` (``cancel``, ``poll_many``)."""
        from .vendor import VendorPlugin

        mine = getattr(type(self.plugin), verb, None)
        return mine is not None and mine is not getattr(VendorPlugin, verb, None)

    # -- harness ----------------------------------------------------------------------

    def _run(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(factory(), self.case_timeout)

        asyncio.run(bounded())

    def gateway_config(self, fake: FakeVendor) -> dict[str, Any]:
        """The whole gateway config of a case: one channel on ``fake``, prices of 1/s."""
        vendor = self.plugin.name
        cfg: dict[str, Any] = {
            "plugins": {"enabled": []},  # the plugin comes in through extra_plugins
            "channels": [
                {
                    "name": "contract",
                    "vendor": vendor,
                    "base_url": self.base_url(fake),
                    "credentials": self.credentials(fake),
                    "options": {"poll_interval": 0.05, **self.channel_options},
                }
            ],
            "network": {"outbound_timeout_seconds": self.outbound_timeout, "allow_image_networks": ["127.0.0.0/8"]},
            "worker": {"lease_seconds": 3.0},
            "models": {m: {"price_per_second": 1.0} for m in {self.model, self.image_model} if m},
        }
        for key, value in self.config.items():
            if isinstance(value, Mapping) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        return cfg

    @contextlib.asynccontextmanager
    async def served_fake(self) -> AsyncIterator[FakeVendor]:
        """A fresh fake, served; ``[slow]`` polls outlast the outbound timeout."""
        make = type(self).fake  # a class attribute, not a method
        assert make is not None, "set `fake` on the contract class"
        fake = make()
        fake.slow_seconds = self.outbound_timeout * 2
        async with fake.serve():
            yield fake

    def gateway(self, fake: FakeVendor, tmp_path: Path) -> contextlib.AbstractAsyncContextManager[RunningGateway]:
        """A gateway on ``fake`` with its data under ``tmp_path``."""
        return run_gateway(self.gateway_config(fake), tmp_path, extra_plugins={self.plugin.name: self.plugin})

    async def submit(self, gw: RunningGateway, key: str, prompt: str, *, image: bool = False) -> dict[str, Any]:
        """Submit a case's task and return the created task (asserts HTTP 200)."""
        status, task = await gw.post("/v1/video/generations", key, json=self.body(prompt, image=image))
        assert status == 200, f"submit answered HTTP {status}: {task}"
        return task  # type: ignore[no-any-return]

    @staticmethod
    def answered(fake: FakeVendor, status: int, fault: str) -> bool:
        """Whether ``fake`` answered a request with the fault keyword ``fault`` (its record's
        :attr:`~vidgate.fakekit.Recorded.fault`), or with HTTP ``status`` (fakes whose
        records do not say the fault). The first lets a vendor that answers errors at HTTP
        200 with its own code (MiniMax V1, Kling) run these cases unchanged."""
        return any(getattr(r, "fault", None) == fault or r.status == status for r in fake.requests)

    @staticmethod
    def job_for(fake: FakeVendor, prompt: str) -> FakeJob:
        """The one fake job whose prompt contains ``prompt``."""
        jobs = [j for j in fake.jobs.values() if prompt in j.prompt]
        assert len(jobs) == 1, f"expected one vendor job for {prompt!r}, the fake has {len(jobs)}"
        return jobs[0]

    async def assert_completed(
        self, gw: RunningGateway, key: str, task: dict[str, Any], fake: FakeVendor, prompt: str
    ) -> dict[str, Any]:
        """Wait for ``task``; check it completed, its video is the fake's bytes, and it
        was billed exactly what the fake was asked to make."""
        done = await gw.wait(task["id"], key, timeout=self.case_timeout * 0.8)
        assert done["status"] == "completed", done
        job = self.job_for(fake, prompt)
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == fake.result_bytes(job), "the video is not what the vendor made"
        await self.assert_billed(gw, done, job)
        return done

    async def assert_billed(self, gw: RunningGateway, task: dict[str, Any], job: FakeJob) -> None:
        """The task shows and was charged for what the vendor received (price 1/s)."""
        from .billing import to_micro

        if job.seconds is not None:
            assert task["seconds"] == str(job.seconds), (task["seconds"], job.seconds)
        if job.size is not None:
            assert task["size"] == job.size, (task["size"], job.size)
        row = await gw.gateway.store.db.fetchone(
            "SELECT amount FROM ledger WHERE task_id = ? AND kind = 'charge'", task["id"]
        )
        assert row is not None, "no charge recorded"
        assert row["amount"] == to_micro(float(task["seconds"])), (row["amount"], task["seconds"])

    # -- the cases ----------------------------------------------------------------------

    def test_text_to_video(self, tmp_path: Path) -> None:
        """A text task completes, serves the vendor's video and bills what was sent."""

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "a fox in the snow")
                await self.assert_completed(gw, key, task, fake, "a fox in the snow")

        self._run(case)

    def test_image_to_video(self, tmp_path: Path) -> None:
        """An image task completes; the vendor received an image."""
        if self.image_model is None:
            pytest.skip("the plugin declares no image-to-video model (image_model = None)")

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "the picture comes alive", image=True)
                await self.assert_completed(gw, key, task, fake, "the picture comes alive")
                job = self.job_for(fake, "the picture comes alive")
                assert job.data.get("image"), "the fake saw no image in the create call"

        self._run(case)

    def test_unknown_status_keeps_task_alive(self, tmp_path: Path) -> None:
        """A status word the plugin does not know neither fails nor completes the task."""

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "odd states [unknown-status]")
                await self.assert_completed(gw, key, task, fake, "odd states")
                assert self.job_for(fake, "odd states").unknown_polls == 1

        self._run(case)

    def test_transient_poll_faults_do_not_fail_the_task(self, tmp_path: Path) -> None:
        """HTTP 500, a non-JSON page and a timeout while polling are retried."""

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "bumpy road [500] [malformed] [slow]")
                await self.assert_completed(gw, key, task, fake, "bumpy road")
                assert self.answered(fake, 500, "500") and self.answered(fake, 502, "malformed"), fake.requests

        self._run(case)

    def test_rate_limited_create_is_retried(self, tmp_path: Path) -> None:
        """A 429 on create is retried (Retry-After honoured) and the task completes."""

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "patience [429]")
                await self.assert_completed(gw, key, task, fake, "patience")
                assert self.answered(fake, 429, "429"), "the fake never rate-limited the create"

        self._run(case)

    def test_vendor_failure_fails_and_refunds(self, tmp_path: Path) -> None:
        """A job the vendor fails ends ``failed`` and the charge is refunded."""

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "doomed [fail]")
                done = await gw.wait(task["id"], key, timeout=self.case_timeout * 0.8)
                assert done["status"] == "failed" and done["error"]["message"], done
                rows = await gw.gateway.store.db.fetchall(
                    "SELECT kind, amount FROM ledger WHERE task_id = ?", task["id"]
                )
                assert sum(r["amount"] for r in rows) == 0 and len(rows) == 2, rows

        self._run(case)

    def test_restart_mid_task(self, tmp_path: Path) -> None:
        """Stop the gateway while a task runs; a new one on the same data finishes it."""

        async def case() -> None:
            async with self.served_fake() as fake:
                async with self.gateway(fake, tmp_path) as gw:
                    key = await gw.token()
                    task = await self.submit(gw, key, "across a restart [hold]")
                    await gw.wait(task["id"], key, until=("in_progress",), timeout=self.case_timeout * 0.8)
                    job = self.job_for(fake, "across a restart")
                    while job.polls < 1:
                        await asyncio.sleep(0.02)
                creates = len(fake.jobs)
                fake.release(job)
                async with self.gateway(fake, tmp_path) as gw:
                    await self.assert_completed(gw, key, task, fake, "across a restart")
                assert len(fake.jobs) == creates, "the task was submitted again after the restart"

        self._run(case)

    def test_secrets_never_leak(self, tmp_path: Path) -> None:
        """A vendor error quoting the credential is scrubbed; no credential appears in
        any response, log line or store row, for a completed and a refused task."""

        async def case() -> None:
            async with self.served_fake() as fake:
                with captured_logs() as logs:
                    async with self.gateway(fake, tmp_path) as gw:
                        key = await gw.token()
                        task = await self.submit(gw, key, "clean run")
                        await self.assert_completed(gw, key, task, fake, "clean run")
                        status, refused = await gw.post(
                            "/v1/video/generations", key, json=self.body("leaky [echo-key]")
                        )
                        assert status >= 400, refused
                        await gw.get("/v1/videos", key)
                        await gw.get(f"/v1/videos/{task['id']}", key)
                assert self.answered(fake, 400, "echo-key"), "the fake never echoed the key"
                texts = {
                    "responses": "\n".join(gw.transcript),
                    "logs": logs.getvalue(),
                    "the store": dump_store(tmp_path / "data" / "vidgate.db"),
                }
                assert gw.transcript, "the transcript captured nothing"
                for where, text in texts.items():
                    for secret in self.secrets(fake):
                        assert secret not in text, f"a credential appears in {where}"

        self._run(case)

    def test_other_vendors_answered_none(self) -> None:
        """Every vendor-scoped hook answers None for a vendor that is not the plugin's."""
        pm = pluggy.PluginManager("vidgate")
        pm.add_hookspecs(hookspecs)
        pm.register(self.plugin, name="contract")
        scoped = [
            name
            for name, spec in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("vidgate_") and "vendor" in inspect.signature(spec).parameters
        ]
        if not scoped:
            pytest.skip("the core has no vendor-scoped hooks")
        for name in scoped:
            caller = getattr(pm.hook, name)
            params = [p for p in inspect.signature(getattr(hookspecs, name)).parameters if p != "self"]
            kwargs: dict[str, Any] = {p: None for p in params}
            kwargs["vendor"] = f"not-{self.plugin.name}"
            answer = caller(**kwargs)
            assert answer in (None, []), f"{name} answered {answer!r} for another vendor"

    # -- verbs a plugin may declare -----------------------------------------------------

    def test_cancel(self, tmp_path: Path) -> None:
        """A ``[hold]`` task cancelled through the API ends ``cancelled``: the plugin's
        cancel reached the vendor, progress stops, and the token pays at most the charge
        (a confirmed cancel before work started refunds it whole), each ledger entry once."""
        if not self.declares("cancel"):
            pytest.skip("the plugin declares no cancel verb")

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "a long render [hold]")
                # Wait until the vendor has the job, so the cancel has something to cancel.
                for _ in range(200):
                    if fake.jobs:
                        break
                    await asyncio.sleep(0.02)
                seen = len(fake.requests)
                status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
                assert status == 200, answer
                done = await gw.wait(task["id"], key, timeout=self.case_timeout * 0.8)
                assert done["status"] == "cancelled", done
                assert len(fake.requests) > seen, "the plugin's cancel never reached the vendor"
                again_status, again = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
                assert again_status == 200 and again["status"] == "cancelled", again
                rows = await gw.gateway.store.db.fetchall(
                    "SELECT kind, amount FROM ledger WHERE task_id = ?", task["id"]
                )
                kinds = [r["kind"] for r in rows]
                assert len(kinds) == len(set(kinds)), rows
                charge = sum(r["amount"] for r in rows if r["kind"] == "charge")
                paid = sum(r["amount"] for r in rows)
                assert 0 <= paid <= charge, rows

        self._run(case)

    def test_batch_poll(self, tmp_path: Path) -> None:
        """Several tasks in flight at once are polled together: they all complete with
        fewer of the plugin's list calls (:attr:`batch_poll_path`, as the fake recorded
        them) than tasks, and every list call carried at least one task."""
        if not self.declares("poll_many"):
            pytest.skip("the plugin declares no batch-poll verb")
        if self.batch_poll_path is None:
            pytest.skip("set batch_poll_path to the recorded path (str or regex) of the plugin's list call")
        path, method = self.batch_poll_path, self.batch_poll_method
        count = self.batch_poll_tasks

        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                prompts = [f"batch member {i} [hold]" for i in range(count)]
                tasks = await asyncio.gather(*(self.submit(gw, key, p) for p in prompts))
                # Every job held running until all have been polled at least once, so
                # the tasks are in flight together when they are released.
                for _ in range(500):
                    if len(fake.jobs) == count and all(j.polls >= 1 for j in fake.jobs.values()):
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the held tasks were never all polled")
                before = len(fake.recorded(method, path))
                fake.release()
                for task, prompt in zip(tasks, prompts, strict=True):
                    await self.assert_completed(gw, key, task, fake, prompt.removesuffix(" [hold]"))
                lists = fake.recorded(method, path)
                assert lists, f"no recorded request matched batch_poll_path {path!r}"
                after = len(lists) - before
                assert 1 <= after < count, f"{count} released tasks took {after} list calls to complete"
                assert len(lists) < count * 2, f"{count} tasks took {len(lists)} list calls in all"

        self._run(case)
