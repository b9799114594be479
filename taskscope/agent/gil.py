"""The agent's share of the GIL: when the program keeps the agent's thread from it, and the
switch interval the agent lowers then.

A thread that wants the GIL waits the interpreter's switch interval (5 ms by default) and only
then asks the thread that holds it to let go, unless the GIL was dropped meanwhile (CPython's
`take_gil`). A loop whose turns are shorter than the interval (steps of Python of a few
milliseconds, a `select(0)` between them) drops the GIL at every turn and takes it back before
the waiting thread runs: the waiter's wait starts again, it never asks, and the agent's
thread can wait seconds for each system call it made (`benchmarks/gil_starvation.py`). With an
interval of 50 microseconds the waiter asks before such a turn ends.

The switch interval is the whole interpreter's: while it is lowered, the program's own threads
that contend for the GIL switch more often too (the README says what that costs). So the
agent lowers it only from the default, never over a value the program chose, and only while
it needs it: from an attach's injection until the agent listens, when one of its timed waits
ends far later than asked while the loops turned (they starved it; a call that holds the GIL
is not helped by a shorter interval), and for as long as a client is connected after that;
it puts the default back when it has needed nothing for `RELEASE_AFTER` seconds (twice as long
after each time it is starved again, up to 10 minutes), and when it is uninstalled. A value
the program set meanwhile is left as it is.
"""

from __future__ import annotations

import sys
import threading
import time

from taskscope.protocol import WireGilWait
from taskscope.protocol.slicing import give_way_due

#: CPython's switch interval unless a program sets another (seconds).
DEFAULT_INTERVAL = 0.005
#: The interval while the agent needs its share: shorter than the turns that starve it (a
#: waiter asks only when no other thread took the GIL during a whole interval: at 1 ms, a
#: loop in steps of 1 ms still starved the agent; at 50 us, steps of 0.1 ms no longer do).
LOWERED_INTERVAL = 0.00005
#: A timed wait that ends this much later than asked: the agent was kept from the GIL (more
#: than a loaded machine's scheduler delays a thread; a starved agent waits seconds).
STARVED_AFTER = 0.25
#: An attach's start-up (at the lowered interval) that slept this long, beyond the time it ran
#: and the time it waited for a CPU, was starved (0-8 ms when the program is idle, quiet
#: machine or loaded; 50-60 ms when its loop is busy in steps of 4 ms, 10-30 ms under load).
STARTUP_STARVED_AFTER = 0.02
#: How long the agent's thread may work between two moments it says where it is.
WORK_GRACE = 1.0
#: With no client connected and no starvation seen for this long, the default comes back.
RELEASE_AFTER = 30.0
#: ... and twice as long each time the agent is starved again after giving it back, up to this.
LONGEST_RELEASE_AFTER = 600.0


def _is(value: float, interval: float) -> bool:
    return abs(value - interval) < 1e-9


class GilShare:
    """Watches the agent's thread for starvation and owns the switch interval it lowered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The interval the agent replaced, while the interval is the agent's.
        self.lowered_from: float | None = None
        #: The longest the agent's thread waited past a timed wait, and when (Unix time).
        self.longest_wait = 0.0
        self.longest_at: float | None = None
        #: The last time (monotonic) the agent needed the lower interval.
        self._needed_at = 0.0
        #: How long it keeps the interval with no need; doubled at each starvation that
        #: follows a release (the loops still turn in short steps: no need to find out again).
        self.release_after = RELEASE_AFTER
        self._released = False
        #: When (monotonic) the agent's thread holds the GIL again at the latest, as it said.
        self.back_by: float | None = None

    def lower(self, late: float | None = None) -> None:
        """Lower the interval when it is the default (the agent's already: it stays); with
        `late`, note that wait in the same step, so no snapshot sees one without the other."""
        with self._lock:
            if late is not None:
                self._note(late)
            self._needed_at = time.monotonic()
            if self.lowered_from is not None:
                return
            current = sys.getswitchinterval()
            if not _is(current, DEFAULT_INTERVAL):
                return
            sys.setswitchinterval(LOWERED_INTERVAL)
            self.lowered_from = current
            if self._released:
                self.release_after = min(2 * self.release_after, LONGEST_RELEASE_AFTER)

    def adopt(self, replaced: float, waited: float) -> None:
        """Take over an interval the attach's injected code lowered from `replaced`. The
        agent's start-up slept `waited` seconds (for the GIL, mostly: a few milliseconds unless
        the program starves it; the time it ran or waited for a CPU left out): kept lowered
        when it was starved, put back now when it was not."""
        with self._lock:
            if self.lowered_from is None and _is(sys.getswitchinterval(), LOWERED_INTERVAL):
                self.lowered_from = replaced
        if waited >= STARTUP_STARVED_AFTER:
            self.lower(late=waited)
        else:
            self.restore()

    def restore(self) -> None:
        """Put back the interval the agent replaced, unless the program set one since."""
        with self._lock:
            replaced, self.lowered_from = self.lowered_from, None
            if replaced is not None and _is(sys.getswitchinterval(), LOWERED_INTERVAL):
                sys.setswitchinterval(replaced)

    def restore_in_child(self) -> None:
        """`restore` in a child just forked, where the lock may have been held at the fork."""
        self._lock = threading.Lock()
        self.restore()

    def waited(self, asked: float, took: float, loops_turned: bool = True) -> None:
        """A timed wait of the agent's thread (its selector) asked `asked` seconds and returned
        after `took`: past `STARVED_AFTER` late, the agent was kept from the GIL. When loops
        turned meanwhile (`loops_turned`) they starved it, and the interval is lowered; when
        none did, a call held the GIL, which a shorter interval does not end sooner."""
        late = took - asked
        if late < STARVED_AFTER:
            return
        if loops_turned:
            self.lower(late=late)
        else:
            with self._lock:
                self._note(late)

    def expect_back(self, by: float | None) -> None:
        """The agent's thread (holding the GIL) says when it will next hold it again at the
        latest: the end of the wait it begins, or `WORK_GRACE` from now while it works; None
        when it stops."""
        self.back_by = by

    def beat(self, previous: float, now: float) -> None:
        """A loop's heartbeat (on that loop's thread), its last one at `previous`: far past
        the time the agent's thread said it would be back, with the loop turning since then
        (its last beat came after that time: not a call that held the GIL all along) and no
        look giving the GIL away lately (`slicing.give_way`), the loops keep the agent's
        thread from the GIL, and it cannot say so itself until it has the GIL again. It waits
        only for the agent's thread to leave this object, if it was kept from the GIL in
        there, holding its lock (moments: waiting for the lock gives that thread the GIL)."""
        back_by = self.back_by
        if back_by is None or now - back_by < STARVED_AFTER or previous < back_by:
            return
        if time.perf_counter() - give_way_due() < STARVED_AFTER:
            return  # a look under way, slice after slice: it moves
        self.back_by = None  # once per wait
        self.lower(late=now - back_by)

    def hinted(self, waited: float) -> None:
        """A client waited `waited` seconds for an answer while the program's main thread ran
        and the agent's did not (`agent._starved_hint`): the agent is kept from the GIL,
        though none of its waits may have ended late enough to say so; said, and lowered."""
        self.lower(late=waited)

    def _note(self, late: float) -> None:
        if late > self.longest_wait:
            self.longest_wait = late
            self.longest_at = time.time()

    def tick(self, now: float, clients: int) -> None:
        """On the agent's thread at each turn: while a client is connected the interval stays
        lowered; after `RELEASE_AFTER` seconds of no client and no starvation it comes back."""
        if self.lowered_from is None:
            return
        if clients:
            self._needed_at = now
        elif now - self._needed_at >= self.release_after:
            self.restore()
            self._released = True

    def facts(self) -> WireGilWait | None:
        """For the snapshot: the longest wait seen and when, and the interval the agent
        lowered (from, to) while it has; None when the agent was never starved and holds no
        lowered interval."""
        with self._lock:
            lowered_from, longest, at = self.lowered_from, self.longest_wait, self.longest_at
        if at is None and lowered_from is None:
            return None
        return {
            "longest": round(longest, 3) if at is not None else None,
            "at": at,
            "lowered_from": lowered_from,
            "lowered_to": LOWERED_INTERVAL if lowered_from is not None else None,
        }
