"""One channel's pacing: its rate window, the alerts it holds for its digest, and its outbox of
messages waiting for delivery or for a retry.

The rate limit is a sliding window: an alert goes out at once when fewer than
``rate_per_minute`` alerts went out at once in the 60 s before; otherwise the lane holds it for
its digest, due ``digest_interval_s`` after the first alert it held. A window rather than a
token bucket because it is exactly what the setting promises ("at most N in any minute") and it
allows no burst beyond N after a quiet hour; N timestamps per channel cost nothing. Digests do
not count against the rate, so a storm costs a channel at most N messages a minute and one
digest per interval.

The outbox is delivered in order: while its first message waits for a retry, the rest wait too
(a channel that is down is down for all of them), and no other channel is concerned.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from alerting.notify.base import DeliveryError, Message, Sender
from alerting.notify.render import SEVERITY_RANK, MessageRenderer
from socpipe.records import Alert
from socpipe.settings import Language

log = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a retryable failure is retried: ``attempts`` in all, waiting
    ``base_s`` doubled after each failure up to ``cap_s``, each wait shortened by a random
    fraction up to ``jitter`` (so channels that failed together do not retry together), and at
    least as long as the channel asked (Telegram's retry_after, Retry-After)."""

    attempts: int = 5
    base_s: float = 4.0
    cap_s: float = 300.0
    jitter: float = 0.5

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after the ``failures``-th failed attempt (1 for the first)."""
        nominal = min(self.cap_s, self.base_s * 2.0 ** (failures - 1))
        return nominal * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True)
class ChannelStats:
    """One channel's counts: messages delivered (alerts and digests) and given up on, and
    alerts held over the rate for a digest."""

    sent: int = 0
    failed: int = 0
    digested: int = 0


@dataclass
class _Delivery:
    message: Message
    what: str  # "alert <id>" or "digest of N alerts": for logs
    due: float
    attempts: int = 0


class ChannelLane:
    """One channel's rate window, digest and outbox; see the module docstring.

    Thread-safe: the center's dispatcher calls ``admit``; the channel's thread calls
    ``work`` (or a test calls ``run_due``) to deliver.
    """

    def __init__(
        self,
        sender: Sender,
        renderer: MessageRenderer,
        *,
        rate_per_minute: int,
        digest_interval_s: float,
        digest_language: Language,
        clock: Callable[[], float],
        retry: RetryPolicy,
        rng: random.Random,
    ) -> None:
        self.name = sender.name
        self.sender = sender
        self.digest_language = digest_language
        self._renderer = renderer
        self._rate = rate_per_minute
        self._interval = digest_interval_s
        self._clock = clock
        self._retry = retry
        self._rng = rng
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._recent: deque[float] = deque()  # when each of the last immediate alerts was admitted
        # The alerts a digest will list: a min-heap of (rank, -order, alert) whose root is the
        # first to give way, the least severe and latest, so a storm keeps the worst in memory.
        self._held: list[tuple[int, int, Alert]] = []
        self._held_total = 0
        self._held_counts: Counter[str] = Counter()
        self._order = 0
        self._digest_due: float | None = None
        self._outbox: deque[_Delivery] = deque()
        self._deadline: float | None = None  # set by close_by
        self._sent = self._failed = self._digested = 0

    # --- admission (the dispatcher) ---------------------------------------------------------

    def admit(self, alert: Alert, language: Language) -> None:
        """Queue the message of a new alert, or hold the alert for the digest when the channel
        is over its rate."""
        with self._changed:
            now = self._clock()
            while self._recent and self._recent[0] <= now - RATE_WINDOW_S:
                self._recent.popleft()
            if len(self._recent) < self._rate:
                self._recent.append(now)
                message = self._renderer.alert(alert, language)
                self._outbox.append(_Delivery(message, f"alert {alert.id}", due=now))
            else:
                self._hold(alert, now)
            self._changed.notify()

    def _hold(self, alert: Alert, now: float) -> None:
        self._order += 1
        item = (SEVERITY_RANK[alert.severity.value], -self._order, alert)
        if len(self._held) < self._renderer.DIGEST_LISTED:
            heapq.heappush(self._held, item)
        else:
            heapq.heappushpop(self._held, item)
        self._held_total += 1
        self._held_counts[alert.severity.value] += 1
        self._digested += 1
        if self._digest_due is None:
            self._digest_due = now + self._interval

    def _digest_if_due(self, now: float) -> None:
        if self._digest_due is None or now < self._digest_due:
            return
        what = f"digest of {self._held_total} alerts"
        try:
            message = self._renderer.digest(
                [alert for _, _, alert in self._held],
                self.digest_language,
                total=self._held_total,
                counts=dict(self._held_counts),
            )
        except Exception:
            # A template's bug: this digest is lost, not the channel's thread.
            log.exception("notification channel %s: cannot render the %s", self.name, what)
            self._failed += 1
        else:
            self._outbox.append(_Delivery(message, what, due=now))
        self._held, self._held_total, self._held_counts = [], 0, Counter()
        self._digest_due = None

    # --- delivery (the channel's thread) ----------------------------------------------------

    def run_due(self) -> None:
        """Deliver, in order, what is due now (the digest when its time came); return at the
        first message that waits for a retry, or when none is left."""
        while True:
            with self._lock:
                now = self._clock()
                self._digest_if_due(now)
                if not self._outbox or self._outbox[0].due > now:
                    return
                delivery = self._outbox[0]
                delivery.attempts += 1
            error: DeliveryError | None = None
            try:
                self.sender.send(delivery.message)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:
                # A sender's bug: give this message up, keep the channel's thread alive.
                log.exception("notification channel %s: the sender failed", self.name)
                error = DeliveryError(self.name, f"{type(exc).__name__}", retryable=False)
            with self._lock:
                # close may have abandoned it meanwhile.
                if not self._outbox or self._outbox[0] is not delivery:
                    continue
                if error is None:
                    self._outbox.popleft()
                    self._sent += 1
                    log.debug("notification channel %s: sent %s", self.name, delivery.what)
                else:
                    self._failed_attempt(delivery, error)

    def _failed_attempt(self, delivery: _Delivery, error: DeliveryError) -> None:
        if error.retryable and delivery.attempts < self._retry.attempts:
            wait = self._retry.delay(delivery.attempts, self._rng)
            if error.retry_after is not None:
                wait = max(wait, error.retry_after)
            delivery.due = self._clock() + wait
            log.info(
                "notification channel %s: attempt %d of %d for %s failed, next in %.1f s: %s",
                self.name,
                delivery.attempts,
                self._retry.attempts,
                delivery.what,
                wait,
                error.reason,
            )
            return
        self._outbox.popleft()
        self._failed += 1
        log.warning(
            "notification channel %s: gave up on %s after %d attempt(s): %s%s",
            self.name,
            delivery.what,
            delivery.attempts,
            error.reason,
            "" if error.retryable else " (not retryable: check the channel's settings)",
        )

    def work(self) -> None:
        """The channel thread's loop: deliver what is due, then sleep until the next message is
        due or one arrives; after ``close_by``, until the outbox is empty or the deadline."""
        while True:
            self.run_due()
            with self._changed:
                now = self._clock()
                if self._deadline is not None and (
                    now >= self._deadline or (not self._outbox and self._digest_due is None)
                ):
                    return
                due = self._next_due()
                if due is not None and due <= now:
                    continue
                wait = None if due is None else due - now
                if self._deadline is not None:
                    left = self._deadline - now
                    wait = left if wait is None else min(wait, left)
                self._changed.wait(wait)

    def _next_due(self) -> float | None:
        candidates = [d for d in (self._digest_due,) if d is not None]
        if self._outbox:
            candidates.append(self._outbox[0].due)
        return min(candidates, default=None)

    # --- closing ----------------------------------------------------------------------------

    def close_by(self, deadline: float) -> None:
        """Make the digest due now and let ``work`` return once all is sent, or at
        ``deadline``."""
        with self._changed:
            if self._digest_due is not None:
                self._digest_due = self._clock()
            self._deadline = deadline
            self._changed.notify()

    def abandon(self) -> int:
        """Give up on what is left (at close): counted as failed and logged; how many."""
        with self._lock:
            if self._digest_due is not None:
                self._digest_due = self._clock()
                self._digest_if_due(self._digest_due)
            left = [delivery.what for delivery in self._outbox]
            self._outbox.clear()
            self._failed += len(left)
        if left:
            log.warning(
                "notification channel %s: %d message(s) not sent before close: %s",
                self.name,
                len(left),
                ", ".join(left),
            )
        return len(left)

    @property
    def stats(self) -> ChannelStats:
        """This channel's counts so far."""
        with self._lock:
            return ChannelStats(sent=self._sent, failed=self._failed, digested=self._digested)
