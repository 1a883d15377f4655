"""A leased delivery queue over a table: the machinery the outbox dispatcher (server/outbox.py)
and the webhook sender (server/webhook_sender.py) share.

The table holds one row per delivery, keyed by a queue key (the outbox's durable subscriber,
a webhook's endpoint) and a conversation; see models/outbox.py for the columns. The promises
(docs/reliability.md, "The outbox"):

- **At least once.** A row is finished (`done`) only after its handler returned. A process
  that dies mid-delivery leaves the row claimed under a lease (`locked_until`); when the lease
  expires any process claims it again. Receivers dedupe on the row's id.
- **In order per (key, conversation).** A claim starts at the oldest pending row of a key's
  conversation (its head) and takes the run of pending rows that follow it, which one task
  delivers one after the other. A row waits while an earlier one of the same key and
  conversation is pending (being delivered, or waiting for a retry); when a row of a run fails,
  the rest of the run is released and waits for it. Rows without a conversation are not
  ordered.
- **Retries** with exponential backoff and jitter; after `max_attempts` the row is `dead`
  (kept, with its last error, and logged), and the conversation's later rows proceed.
- **Several processes on PostgreSQL.** Heads are claimed with `FOR UPDATE SKIP LOCKED` and a
  lease: two processes never hold the same row at once, and a delivery that would outlive
  its lease is cancelled (and retried); a run is cut short (and its rest released) before it
  would. On SQLite there is one process and one writer.
- **Never on the live path.** A queue is a background task with its own connections; each
  key has its own share of in-flight rows, so a slow or failing key delays only its own rows.
- **Rows born leased.** Rows that the writing process wrote already leased to this queue (the
  outbox's, server/db.py) are handed to it after their commit (`adopt`) and delivered from
  memory: no claim, no second write of the row before it is finished. Order still holds: a
  round first checks whether another pending row of their (key, conversation) comes before
  them. If it is this process's own delivery, they wait for it in memory (checked again every
  round; given back if their lease runs low first). If it is not (another process's delivery,
  a retry), their leases are given back at once, and the claim takes them in order, behind
  it: the process that gave them back claims in their conversations every round until it
  finds them due. The full claim runs only when unleased rows may be due anywhere: at start,
  every poll, when a retry falls due, and after rows were given back or claimed.

Why not a job library: the rows are written in the same transaction as the change they
describe (the outbox) and the order per conversation is part of the contract; the queue
libraries for asyncio + SQLAlchemy (or Redis) offer neither.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import ARRAY, Table, and_, any_, bindparam, case, delete, func, select, update

from models.base import utcnow

if TYPE_CHECKING:
    from server.db import Database

log = logging.getLogger(__name__)

# How often delivered rows older than the retention are deleted (at most).
PRUNE_EVERY_SECONDS = 60.0
# Rounds (one transaction each) start at most this often: on a busy process the commits and
# the finished deliveries of 20 ms share one round instead of one round each, which keeps a
# queue's share of the event loop small (docs/benchmarks.md, "The outbox's cost").
MIN_ROUND_INTERVAL_SECONDS = 0.02
# After a round that handled at least BUSY_ROUND_ROWS rows (recorded, adopted or claimed),
# the next one waits BUSY_ROUND_INTERVAL_SECONDS instead. Longer rounds cost less under load
# (at saturation the dispatcher took 4.5% of the server's samples with 20 ms rounds, 3.8%
# with 50 ms, 3.1% with 100 ms); at a lighter load they would only add delay: a conversation
# whose rows two processes write in turn waits a round per turn (40 webhooks so written
# arrived 0.1 s after their message with 20 ms rounds (p50), 0.33 s with 50 ms).
BUSY_ROUND_ROWS = 16
BUSY_ROUND_INTERVAL_SECONDS = 0.05
# How often adopted rows that wait for an earlier row of their conversation are checked again
# when nothing else starts a round.
BORN_RECHECK_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class QueueConfig:
    poll_seconds: float = 1.0
    batch_size: int = 100  # rows in flight per key
    lease_seconds: float = 30.0
    max_attempts: int = 10
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    # How long delivered rows are kept (then pruned); 0: deleted as soon as delivered.
    retention_seconds: float = 86_400.0

    def backoff(self, attempt: int) -> float:
        """The wait before the next attempt after `attempt` failed: exponential, capped, with
        jitter (between half and all of it), so failing rows do not retry in lockstep."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


class Failed(Exception):
    """A handler's failure that also records `values` (columns of the row) with the retry."""

    def __init__(self, message: str, **values: Any) -> None:
        super().__init__(message)
        self.values = values


class LeasedQueue(abc.ABC):
    """Subclasses name their table and key column and implement `keys()` and `handle()`."""

    table: Table
    key_column: str
    # A name for logs and the task.
    label: str = "queue"

    def __init__(self, db: Database, config: QueueConfig | None = None) -> None:
        self.db = db
        self.config = config or QueueConfig()
        # Who holds a lease: this process's rows, and only them, are finished by it.
        self.token = uuid.uuid4().hex
        self._wake = asyncio.Event()
        # The runs being delivered per key, and how many of their rows are unfinished.
        self._inflight: dict[Any, set[asyncio.Task]] = {}
        self._inflight_rows: dict[Any, int] = {}
        # Outcomes of finished deliveries, recorded by the next round: (id, values) of done
        # rows, (id, attempt, values) of failures, ids of a run's rows given back unattempted.
        self._done: list[tuple[int, dict]] = []
        self._failed: list[tuple] = []
        self._released: list[int] = []
        # Rows born leased to this queue, adopted after their commit and not yet delivered.
        self._born: list[SimpleNamespace] = []
        # Ids of the rows this process is delivering, or delivered and has not yet recorded.
        self._claimed: set[int] = set()
        # The (key, conversation) whose adopted rows this process gave back, and until when it
        # looks for them: each round claims what is due in those conversations (the rows
        # given back once the row they waited for is finished), not only every poll.
        self._gave_back: dict[tuple, float] = {}
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._last_prune = 0.0
        # Rows the last round handled (recorded, adopted, claimed): its successor's pace.
        self._round_rows = 0
        # The claim runs when this is set (see "Rows born leased"), and at least every poll.
        self._claim_due = True
        self._last_claim = 0.0
        # Outcomes recorded since the process started (read by /metrics): rows delivered,
        # attempts that failed and will be retried, rows given up (dead).
        self.outcomes = {"delivered": 0, "retried": 0, "dead": 0}

    def _among(self, column, values):
        """`column IN (values)`. On PostgreSQL, `column = ANY(:array)`: one parameter whatever
        the number of values, so a round's statements have the same text every time (an IN
        list renders a placeholder per value, and the driver parses each new text again)."""
        if self.db.engine.dialect.name == "postgresql":
            return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        return column.in_(values)

    # ---- what a subclass provides ---------------------------------------------------------

    @abc.abstractmethod
    async def keys(self) -> list:
        """The keys this process delivers for now (called once per round)."""

    @abc.abstractmethod
    async def handle(self, key, row) -> dict | None:
        """Deliver one claimed row; return column values to store with `done` (or None).
        Raise to have it retried (server.queue.Failed to store values with the retry)."""

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None

    def _begin(self) -> None:
        self._inflight = {}
        self._inflight_rows = {}
        self._born = []
        self._claimed = set()
        self._gave_back = {}
        self._claim_due = True
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=self.label)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; let in-flight deliveries finish for at most `timeout` seconds, then
        cancel the rest and release their leases, so another process takes them at once."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        tasks = [t for ts in self._inflight.values() for t in ts]
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=timeout)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still)
        try:
            await self._round(claim=False)  # the outcomes of what finished
        except Exception:
            log.warning("%s: recording outcomes failed; the rows are delivered again", self.label)
        await self._release()

    def wake(self) -> None:
        """Rows were written (or are due): claim now rather than at the next poll."""
        self._claim_due = True
        self._wake.set()

    def adopt(self, rows: list[dict]) -> None:
        """Rows committed by this process (dicts of their columns, with their ids). Those born
        leased to this queue (`locked_by` is its token) are delivered from memory by the next
        round; the others are claimed as usual."""
        if self._task is None:
            return
        key_of = self.key_column
        now, wall = asyncio.get_running_loop().time(), utcnow()
        for r in rows:
            if r.get("locked_by") != self.token:
                self._claim_due = True
                continue
            row = SimpleNamespace(
                id=r["id"],
                conversation_id=r["conversation_id"],
                event=r["event"],
                payload=r["payload"],
                attempts=r["attempts"],
                created_at=r["created_at"],
                # The lease's end on the event loop's clock.
                expires=now + (r["locked_until"] - wall).total_seconds(),
            )
            setattr(row, key_of, r[key_of])
            self._born.append(row)
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = -MIN_ROUND_INTERVAL_SECONDS
        while not self._stopping:
            busy = self._round_rows >= BUSY_ROUND_ROWS
            interval = BUSY_ROUND_INTERVAL_SECONDS if busy else MIN_ROUND_INTERVAL_SECONDS
            gap = last + interval - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            last = loop.time()
            self._wake.clear()
            try:
                full = await self._round()
                if loop.time() - self._last_prune >= min(
                    PRUNE_EVERY_SECONDS, self.config.retention_seconds or PRUNE_EVERY_SECONDS
                ):
                    self._last_prune = loop.time()
                    await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is down or restarting: try again at the next poll.
                log.warning("%s: a round failed", self.label, exc_info=True)
                full = False
            if full:
                continue  # more rows may be due: claim again before waiting
            # Adopted rows waiting for an earlier one are checked again soon even when nothing
            # wakes the loop (the earlier row may be another process's).
            wait = min(self.config.poll_seconds, BORN_RECHECK_SECONDS if self._born else 3600)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _round(self, claim: bool = True) -> bool:
        """One transaction: record the outcomes of finished deliveries, then claim what is
        due for every key with free slots. True if a key's slots were filled (more may be
        due)."""
        t = self.table
        done, failed, released = self._done, self._failed, self._released
        self._done, self._failed, self._released = [], [], []
        born, self._born = (self._born, []) if claim else ([], self._born)
        free: dict[Any, int] = {}
        rows: list = []
        ready: list[list] = []
        waiting: list = []
        given_back: list[int] = []
        try:
            # Before the transaction: on SQLite there is one connection.
            keys = await self.keys() if claim else []
            async with self.db.engine.begin() as conn:
                mine = and_(t.c.locked_by == self.token, t.c.status == "pending")
                kept = done
                if done and not self.config.retention_seconds:
                    # Nothing delivered is kept: delete instead of marking done (no new
                    # row version, no index entries, nothing left to prune).
                    await conn.execute(
                        delete(t).where(self._among(t.c.id, [i for i, _ in done]), mine)
                    )
                    kept = []
                plain = [row_id for row_id, values in kept if not values]
                if plain:
                    await conn.execute(
                        update(t)
                        .where(self._among(t.c.id, plain), mine)
                        .values(status="done", finished_at=utcnow(), locked_until=None)
                    )
                # Rows done with values of their own (the webhooks' response code...): one
                # executemany per set of columns (psycopg pipelines it: one round trip).
                with_values: dict[tuple, list[dict]] = {}
                for row_id, values in kept:
                    if values:
                        params = {"row_id_": row_id, **{f"v_{k}": v for k, v in values.items()}}
                        with_values.setdefault(tuple(sorted(values)), []).append(params)
                for columns, params in with_values.items():
                    await conn.execute(
                        update(t)
                        .where(t.c.id == bindparam("row_id_"), mine)
                        .values(
                            status="done",
                            finished_at=utcnow(),
                            locked_until=None,
                            **{c: bindparam(f"v_{c}") for c in columns},
                        ),
                        params,
                    )
                for row_id, attempt, values in failed:
                    await conn.execute(
                        update(t)
                        .where(t.c.id == row_id, t.c.attempts == attempt, mine)
                        .values(**values)
                    )
                for key in keys:
                    free[key] = self.config.batch_size - self._inflight_rows.get(key, 0)
                if born:
                    ready, waiting, given_back = await self._sort_born(conn, born, free)
                if released or given_back:
                    await conn.execute(
                        update(t)
                        .where(
                            self._among(t.c.id, released + given_back),
                            mine,
                            t.c.locked_until.is_not(None),
                        )
                        .values(locked_until=None, attempts=t.c.attempts - 1)
                    )
                free = {k: n for k, n in free.items() if n > 0}
                now = asyncio.get_running_loop().time()
                claiming = self._claim_due or now - self._last_claim >= self.config.poll_seconds
                if free and claiming:
                    self._claim_due = False
                    self._last_claim = now
                    rows = await self._claim(conn, free)
                elif free and self._gave_back:
                    keys_back = {k for k, _ in self._gave_back}
                    behind = {k: n for k, n in free.items() if k in keys_back}
                    if behind:
                        conversations = sorted({c for _, c in self._gave_back})
                        rows = await self._claim(conn, behind, conversations)
        except BaseException:
            # Not recorded: kept for the next round (if the process dies instead, the
            # leases expire and the rows are delivered again: at least once).
            self._done[:0] = done
            self._failed[:0] = failed
            self._released[:0] = released
            self._born[:0] = born
            self._claim_due = True
            raise
        if released or given_back or rows:
            self._claim_due = True  # rows to claim, or rows behind the ones claimed
        self._born[:0] = waiting
        if self._gave_back or given_back:
            # Look for the rows given back for a poll's time; claimed ones are found.
            until = now + self.config.poll_seconds
            for row in born:
                if row.id in given_back and row.conversation_id is not None:
                    self._gave_back[(getattr(row, self.key_column), row.conversation_id)] = until
            for row in rows:
                self._gave_back.pop((getattr(row, self.key_column), row.conversation_id), None)
            self._gave_back = {pair: t for pair, t in self._gave_back.items() if t > now}
        self._claimed.difference_update(i for i, _ in done)
        self._claimed.difference_update(f[0] for f in failed)
        self._claimed.difference_update(released)
        for adopted in ready:
            self._spawn(adopted, deadline=adopted[0].expires - self.config.lease_seconds * 0.1)
        self.outcomes["delivered"] += len(done)
        for _, _, values in failed:
            self.outcomes["dead" if values.get("status") == "dead" else "retried"] += 1
        key_of = self.key_column
        taken: dict[Any, int] = {}
        run: list = []
        for row in rows:  # ordered by key, conversation, id
            k = getattr(row, key_of)
            taken[k] = taken.get(k, 0) + 1
            if run and (
                row.conversation_id is None
                or row.conversation_id != run[-1].conversation_id
                or k != getattr(run[-1], key_of)
            ):
                self._spawn(run)
                run = []
            run.append(row)
        if run:
            self._spawn(run)
        self._round_rows = len(done) + len(failed) + len(born) + len(rows)
        return any(taken.get(k, 0) >= n for k, n in free.items())

    async def _sort_born(self, conn, born: list, free: dict) -> tuple[list, list, list]:
        """Sort adopted rows into runs to deliver now, rows to keep for a later round (an
        earlier row of their conversation is pending) and ids to give back to the claim (their
        lease runs low; their key has no free slots). Takes the slots of the runs from `free`."""
        t = self.table
        key = t.c[self.key_column]
        key_of = self.key_column
        by_pair: dict[tuple, list] = {}
        for row in born:
            by_pair.setdefault((getattr(row, key_of), row.conversation_id), []).append(row)
        # The oldest pending row of each (key, conversation) with adopted rows.
        # For each (key, conversation) with adopted rows: its oldest pending row, and its oldest
        # pending row that is not one of them (another process's, a retry, a row given back).
        # The adopted rows between the two may go now, in order; those after the second wait.
        heads: dict[tuple, tuple[int, int | None]] = {}
        ordered = [pair for pair in by_pair if pair[1] is not None]
        if ordered:
            adopted = [r.id for pair in ordered for r in by_pair[pair]]
            other = func.min(case((self._among(t.c.id, adopted), None), else_=t.c.id))
            stmt = (
                select(key, t.c.conversation_id, func.min(t.c.id), other)
                .where(
                    t.c.status == "pending",
                    self._among(key, sorted({k for k, _ in ordered})),
                    self._among(t.c.conversation_id, sorted({c for _, c in ordered})),
                )
                .group_by(key, t.c.conversation_id)
            )
            heads = {(k, c): (head, o) for k, c, head, o in (await conn.execute(stmt)).all()}
        low = asyncio.get_running_loop().time() + self.config.lease_seconds * 0.5
        ready: list[list] = []
        waiting: list = []
        back: list[int] = []
        for (k, conversation), rows in by_pair.items():
            rows.sort(key=lambda r: r.id)
            if conversation is None:
                runs = [[r] for r in rows]  # not ordered: a run each
            else:
                head, other = heads.get((k, conversation), (None, None))
                # Rows older than the head are no longer pending: their lease ran out and
                # another process delivered them.
                rows = [r for r in rows if head is not None and r.id >= head]
                if not rows:
                    continue
                first = len(rows)
                if rows[0].id != head:
                    first = 0
                elif other is not None:
                    first = next((i for i, r in enumerate(rows) if r.id > other), first)
                # Rows behind a pending row that is not theirs wait for it while this process
                # delivers it (and their lease lasts); behind another process's row or a
                # retry, they are given back, to be claimed behind it.
                blocker = head if not first else other
                for r in rows[first:]:
                    if blocker in self._claimed and r.expires > low:
                        waiting.append(r)
                    else:
                        back.append(r.id)
                if not first:
                    continue
                runs = [rows[:first]]
            for run in runs:
                if run[0].expires > low and free.get(k, 0) >= len(run):
                    ready.append(run)
                    free[k] -= len(run)
                else:
                    back.extend(r.id for r in run)
        return ready, waiting, back

    def _claimable(self, keys: list, now: datetime, limit: int, conversations=None):
        """The heads that may be claimed: the oldest pending row of each (key, conversation),
        if it is due and not leased. Locked rows (another process's claim in progress) are
        skipped; SQLite has no row locks and one process.

        The heads are found by grouping the pending rows (an index-only scan of
        ix_*_pending): its cost grows with the backlog only linearly and with a small
        constant, whatever the planner's statistics say (an anti-join "no earlier pending
        row" degenerates into a nested loop over the backlog on a freshly filled table)."""
        t = self.table
        key = t.c[self.key_column]
        pending = [t.c.status == "pending", self._among(key, keys)]
        if conversations is not None:
            pending.append(self._among(t.c.conversation_id, conversations))
        heads = (
            select(func.min(t.c.id).label("id"))
            .where(*pending)
            .group_by(key, t.c.conversation_id)
            .subquery("heads")
        )
        return (
            select(t.c.id, key, t.c.conversation_id)
            .join_from(t, heads, t.c.id == heads.c.id)
            .where(
                t.c.status == "pending",  # re-checked under the row lock
                t.c.next_attempt_at <= now,
                (t.c.locked_until.is_(None)) | (t.c.locked_until < now),
            )
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=t)
        )

    def _runs(self, keys: list, conversations: list, length: int):
        """The first `length` pending rows of each (key, conversation) among these keys and
        conversations, in order: the runs that follow the claimed heads."""
        t = self.table
        key = t.c[self.key_column]
        rank = func.row_number().over(partition_by=(key, t.c.conversation_id), order_by=t.c.id)
        pending = (
            select(
                t.c.id,
                key.label("key"),
                t.c.conversation_id,
                t.c.next_attempt_at,
                t.c.locked_until,
                rank.label("rank"),
            )
            .where(
                t.c.status == "pending",
                self._among(key, keys),
                self._among(t.c.conversation_id, conversations),
            )
            .subquery()
        )
        p = pending.c
        return (
            select(p.id, p.key, p.conversation_id, p.next_attempt_at, p.locked_until)
            .where(p.rank <= length)
            .order_by(p.key, p.conversation_id, p.id)
        )

    async def _claim(self, conn, free: dict, conversations: list | None = None) -> list:
        """Claim due rows under a lease, at most free[key] per key: the heads of as many
        (key, conversation) as are due, then the runs that follow them, shared out so that
        every claimed conversation gets its head. Returned ordered by (key, conversation, id)."""
        t = self.table
        now = utcnow()
        heads_by_key: dict[Any, list] = {}
        claimable = self._claimable(list(free), now, sum(free.values()), conversations)
        for h in (await conn.execute(claimable)).all():
            got = heads_by_key.setdefault(h[1], [])
            if len(got) < free[h[1]]:
                got.append(h)
        if not heads_by_key:
            return []
        ids = [h.id for hs in heads_by_key.values() for h in hs]
        heads = set(ids)
        spare = {k: free[k] - len(hs) for k, hs in heads_by_key.items()}
        keys = [k for k, n in spare.items() if n > 0]
        conversations = sorted(
            {h.conversation_id for k in keys for h in heads_by_key[k] if h.conversation_id}
        )
        if conversations:
            runs: dict[tuple, list | None] = {}
            stmt = self._runs(keys, conversations, max(spare[k] for k in keys) + 1)
            for row in (await conn.execute(stmt)).all():
                at = (row.key, row.conversation_id)
                run = runs.setdefault(at, [])
                if run is None:
                    continue
                leased = row.locked_until is not None and row.locked_until >= now
                if row.next_attempt_at > now or leased:
                    runs[at] = None  # the run stops before this row
                    continue
                run.append(row.id)
            for k in keys:
                # Each conversation's run after its head, a row per conversation in turn.
                tails = [r[1:] for (rk, _), r in runs.items() if rk == k and r and r[0] in heads]
                depth = 0
                while spare[k] > 0 and any(len(tail) > depth for tail in tails):
                    for tail in tails:
                        if spare[k] > 0 and len(tail) > depth:
                            ids.append(tail[depth])
                            spare[k] -= 1
                    depth += 1
        lease = now + timedelta(seconds=self.config.lease_seconds)
        stmt = (
            update(t)
            .where(
                self._among(t.c.id, ids),
                t.c.status == "pending",
                (t.c.locked_until.is_(None)) | (t.c.locked_until < now),
            )
            .values(locked_until=lease, locked_by=self.token, attempts=t.c.attempts + 1)
            .returning(*self.returned_columns())
        )
        rows = (await conn.execute(stmt)).all()
        key_of = self.key_column
        return sorted(rows, key=lambda r: (str(getattr(r, key_of)), r.conversation_id or "", r.id))

    def returned_columns(self) -> list:
        """The columns a claim hands to handle()."""
        t = self.table
        return [
            t.c.id,
            t.c[self.key_column],
            t.c.conversation_id,
            t.c.event,
            t.c.payload,
            t.c.attempts,
            t.c.created_at,
        ]

    def _spawn(self, run: list, deadline: float | None = None) -> None:
        key = getattr(run[0], self.key_column)
        task = asyncio.create_task(
            self._deliver(key, run, deadline), name=f"{self.label}-{run[0].id}"
        )
        tasks = self._inflight.setdefault(key, set())
        tasks.add(task)
        self._inflight_rows[key] = self._inflight_rows.get(key, 0) + len(run)
        self._claimed.update(r.id for r in run)

        def _done(t: asyncio.Task) -> None:
            tasks.discard(t)
            self._inflight_rows[key] -= len(run)
            self._wake.set()  # outcomes to record, free slots, maybe the next rows are due

        task.add_done_callback(_done)

    async def _deliver(self, key, run: list, deadline: float | None = None) -> None:
        """Deliver a run of one conversation's rows in order. A failure stops the run: the rows
        after it are released unattempted and wait for it. So does the lease running low: a
        row is started only while at least half the lease is left of the run's, and is
        cancelled before the lease ends, so no other process can hold it meanwhile."""
        loop = asyncio.get_running_loop()
        if deadline is None:  # claimed just now
            deadline = loop.time() + self.config.lease_seconds * 0.9
        for i, row in enumerate(run):
            left = deadline - loop.time()
            if i and left < self.config.lease_seconds * 0.5:
                self._released.extend(r.id for r in run[i:])
                return
            try:
                # A timeout scope, not wait_for: no task per row.
                async with asyncio.timeout(left):
                    values = await self.handle(key, row)
            except asyncio.CancelledError:
                raise  # stopping: the leases are released by stop()
            except Exception as exc:  # noqa: BLE001 - any failure of a handler is a retry
                if isinstance(exc, TimeoutError):
                    exc = TimeoutError(f"not handled within {left:.1f}s")
                self._failed.append(self._failure(key, row, exc))
                self._released.extend(r.id for r in run[i + 1 :])
                return
            self._done.append((row.id, values or {}))

    def _failure(self, key, row, exc: BaseException) -> tuple:
        """The outcome of a failed delivery: a retry after a backoff, or dead."""
        error = f"{type(exc).__name__}: {exc}"[:2000]
        extra = exc.values if isinstance(exc, Failed) else {}
        if row.attempts >= self.config.max_attempts:
            log.error(
                "%s: row %s (%s) for %s is dead after %d attempts: %s",
                self.label,
                row.id,
                row.event,
                key,
                row.attempts,
                error,
            )
            values = {
                "status": "dead",
                "finished_at": utcnow(),
                "locked_until": None,
                "last_error": error,
                **extra,
            }
            return row.id, row.attempts, values
        delay = self.config.backoff(row.attempts)
        log.warning(
            "%s: row %s (%s) for %s failed (attempt %d), retrying in %.2fs: %s",
            self.label,
            row.id,
            row.event,
            key,
            row.attempts,
            delay,
            error,
        )
        asyncio.get_running_loop().call_later(delay, self.wake)
        values = {
            "locked_until": None,
            "last_error": error,
            "next_attempt_at": utcnow() + timedelta(seconds=delay),
            **extra,
        }
        return row.id, row.attempts, values

    async def _release(self) -> None:
        """Give back the leases of rows claimed but not finished (a graceful stop)."""
        t = self.table
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(t)
                    .where(t.c.locked_by == self.token, t.c.status == "pending")
                    .where(t.c.locked_until.is_not(None))
                    .values(locked_until=None, attempts=t.c.attempts - 1)
                )
        except Exception:
            log.warning("%s: releasing leases failed; they expire instead", self.label)

    async def _prune(self) -> None:
        t = self.table
        cutoff = utcnow() - timedelta(seconds=self.config.retention_seconds)
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.status == "done", t.c.finished_at < cutoff))


__all__ = ["Failed", "LeasedQueue", "QueueConfig"]
