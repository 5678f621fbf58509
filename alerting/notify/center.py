"""The notification center: which new alerts go to which channels, and the threads that send
them without ever holding up the alert worker.

::

    offer(changes) ──> routing ──> bounded queue ──> dispatcher ──> lane per channel ──> sender
      (worker's        (cheap,      (full: drop,      (rate limit,     (own thread: delivery,
       thread)          in place)    count, log)       digest)          retries)

Only new alerts notify: the detections later folded into an alert do not, so a storm of
identical detections, being one alert, is one message. Each route matches by minimum severity,
agencies, tiers and rules (an empty list matches all); an alert goes once to each channel of
the routes it matches, in the language of the first such route naming that channel. A digest
is written in the language of the first route that names its channel.

Without ``start`` nothing runs by itself: ``pump`` does, in the caller's thread, what the
threads would do by now on the injected clock. That is how the tests drive rate limits,
digests and retries without sleeping.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alerting.notify.base import Sender
from alerting.notify.channels import make_sender
from alerting.notify.lane import ChannelLane, ChannelStats, RetryPolicy
from alerting.notify.render import SEVERITY_RANK, MessageRenderer
from socpipe.records import Alert
from socpipe.settings import Language, NotificationRoute, NotificationSettings

if TYPE_CHECKING:
    # Only a type here: importing the store would load the Elasticsearch client with us.
    from alerting.store import AlertChange

log = logging.getLogger(__name__)

__all__ = ["ChannelStats", "NotificationCenter", "NotificationStats", "RetryPolicy"]

# A queued item: the alert and the (channel, language) pairs it goes to. None stops the
# dispatcher.
_Work = tuple[Alert, list[tuple[str, Language]]] | None


@dataclass(frozen=True)
class NotificationStats:
    """Counts so far: messages ``sent`` and ``failed`` (given up on), alerts ``dropped`` at a
    full queue and ``digested`` (held over a rate for a digest), and the same per channel."""

    sent: int
    failed: int
    dropped: int
    digested: int
    channels: dict[str, ChannelStats] = field(default_factory=dict)


class NotificationCenter:
    """Sends notifications of new alerts to the channels their routes name, paced per channel;
    see the module docstring.

    ``senders`` replaces the senders built from the settings, by channel name (tests pass
    ``RecordingSender``s). ``clock`` is monotonic seconds; ``retry`` says how failures are
    retried.
    """

    QUEUE_SIZE = 10_000
    # Alert ids already notified, so that a batch applied twice does not notify twice.
    REMEMBERED_IDS = 100_000
    # A full queue is reported at most this often (with the count), not once per alert.
    DROP_REPORT_S = 60.0

    def __init__(
        self,
        settings: NotificationSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        senders: Mapping[str, Sender] | None = None,
        retry: RetryPolicy | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._queue: queue.Queue[_Work] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._notified: OrderedDict[str, None] = OrderedDict()
        self._dropped = 0
        self._dropped_unreported = 0
        self._drop_reported_at: float | None = None
        self._closed = False
        self._dispatcher: threading.Thread | None = None
        self._workers: dict[str, threading.Thread] = {}
        self._lanes: dict[str, ChannelLane] = {}
        # Disabled, or nowhere to send: nothing is built, so no secret file is read either.
        self.active = settings.enabled and bool(settings.routes)
        if not self.active:
            return
        given = dict(senders or {})
        unknown = sorted(set(given) - {channel.name for channel in settings.channels})
        if unknown:
            raise ValueError(f"senders for channels not in the settings: {unknown}")
        renderer = MessageRenderer(console_url=settings.console_url, timezone=settings.timezone)
        rng = random.Random()  # noqa: S311 - jitter of retry waits, not a secret
        for channel in settings.channels:
            first = next((r for r in settings.routes if channel.name in r.channels), None)
            if first is None:
                continue  # named by no route: it would never send
            self._lanes[channel.name] = ChannelLane(
                given.get(channel.name) or make_sender(channel),
                renderer,
                rate_per_minute=settings.rate_per_minute,
                digest_interval_s=settings.digest_interval_s,
                digest_language=first.language,
                clock=clock,
                retry=retry or RetryPolicy(),
                rng=rng,
            )

    # --- routing ------------------------------------------------------------------------------

    def targets(self, alert: Alert) -> list[tuple[str, Language]]:
        """The channels ``alert`` goes to, each once, with the language of the first matching
        route that names it."""
        chosen: dict[str, Language] = {}
        for route in self.settings.routes:
            if _matches(route, alert):
                for name in route.channels:
                    chosen.setdefault(name, route.language)
        return [(name, language) for name, language in chosen.items() if name in self._lanes]

    def offer(self, changes: Sequence[AlertChange]) -> None:
        """Queue notifications of the new alerts among ``changes`` (what a batch did, once
        Elasticsearch acknowledged it). Never blocks: when the queue is full the notification
        is dropped, counted and reported."""
        if not self.active or self._closed:
            return
        for change in changes:
            if not change.new or not self._first_time(change.alert.id):
                continue
            targets = self.targets(change.alert)
            if not targets:
                continue
            try:
                self._queue.put_nowait((change.alert, targets))
            except queue.Full:
                self._drop(change.alert)

    def _first_time(self, alert_id: str) -> bool:
        with self._lock:
            if alert_id in self._notified:
                return False
            self._notified[alert_id] = None
            if len(self._notified) > self.REMEMBERED_IDS:
                self._notified.popitem(last=False)
            return True

    def _drop(self, alert: Alert) -> None:
        with self._lock:
            self._dropped += 1
            self._dropped_unreported += 1
            now = self._clock()
            if (
                self._drop_reported_at is not None
                and now - self._drop_reported_at < self.DROP_REPORT_S
            ):
                return
            count, self._dropped_unreported = self._dropped_unreported, 0
            self._drop_reported_at = now
        log.warning(
            "notification queue full (%d waiting): dropped %d notification(s) of new alerts "
            "since the last report, the latest of alert %s; the alerts are in Elasticsearch",
            self._queue.qsize(),
            count,
            alert.id,
        )

    # --- running ------------------------------------------------------------------------------

    def _admit(self, work: tuple[Alert, list[tuple[str, Language]]]) -> None:
        alert, targets = work
        for name, language in targets:
            try:
                self._lanes[name].admit(alert, language)
            except Exception:
                # A template's bug: this alert's message is lost, not the dispatcher.
                log.exception("notification channel %s: cannot render alert %s", name, alert.id)

    def pump(self) -> None:
        """Do, in this thread, what is due by the clock: admit what was offered, then deliver
        per channel. For tests and tools; not once ``start`` ran its threads."""
        if self._dispatcher is not None:
            raise RuntimeError("pump() is for a center that was not started")
        self._drain()
        for lane in self._lanes.values():
            lane.run_due()

    def _drain(self) -> None:
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not None:
                self._admit(work)

    def start(self) -> None:
        """Run the dispatcher and one thread per channel (daemons: they never hold up exit)."""
        if not self.active or self._dispatcher is not None or self._closed:
            return
        for name, lane in self._lanes.items():
            worker = threading.Thread(target=lane.work, name=f"notify-{name}", daemon=True)
            self._workers[name] = worker
            worker.start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="notify-dispatch", daemon=True
        )
        self._dispatcher.start()

    def _dispatch(self) -> None:
        while (work := self._queue.get()) is not None:
            self._admit(work)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking alerts, send what is queued, held or due (digests now) for up to
        ``timeout_s``, then stop; what is left is counted failed and logged."""
        if not self.active or self._closed:
            return
        self._closed = True
        deadline = self._clock() + timeout_s
        if self._dispatcher is not None:
            try:
                # The dispatcher empties the queue, so there is room for the stop soon.
                self._queue.put(None, timeout=max(deadline - self._clock(), 0.0))
            except queue.Full:
                log.warning("notification dispatcher did not drain its queue before close")
            self._dispatcher.join(max(deadline - self._clock(), 0.0))
            for lane in self._lanes.values():
                lane.close_by(deadline)
            for worker in self._workers.values():
                worker.join(max(deadline - self._clock(), 0.0))
        else:
            self._drain()
            now = self._clock()
            for lane in self._lanes.values():
                lane.close_by(now)
                lane.run_due()
        for name, lane in self._lanes.items():
            thread = self._workers.get(name)
            if thread is not None and thread.is_alive():
                # Blocked in a send (at most the channel's timeout): let it finish alone.
                log.warning("notification channel %s: still sending at close", name)
                continue
            lane.abandon()
            lane.sender.close()

    @property
    def stats(self) -> NotificationStats:
        """Counts so far, in all and per channel."""
        channels = {name: lane.stats for name, lane in self._lanes.items()}
        with self._lock:
            dropped = self._dropped
        return NotificationStats(
            sent=sum(c.sent for c in channels.values()),
            failed=sum(c.failed for c in channels.values()),
            dropped=dropped,
            digested=sum(c.digested for c in channels.values()),
            channels=channels,
        )


def _matches(route: NotificationRoute, alert: Alert) -> bool:
    entities = alert.entities
    return (
        SEVERITY_RANK[alert.severity.value] >= SEVERITY_RANK[route.min_severity]
        and (not route.agencies or entities.agency in route.agencies)
        and (not route.tiers or (entities.tier is not None and entities.tier in route.tiers))
        and (not route.rules or alert.rule.id in route.rules)
    )
