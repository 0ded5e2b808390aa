"""The stream transport of draft Section 5.14.2, sans-IO: both directions of one flow.

Theory of operation.  A :class:`Stream` is a TCP-like sender and receiver for
one flow.  The SAL host feeds it the segments of the flow's STREAM packets
(:meth:`Stream.receive`), takes what is due (:meth:`Stream.segments_to_send`),
and runs its one deadline (:meth:`Stream.get_timer`, :meth:`Stream.handle_timer`);
the application writes, reads and shuts down.  Nothing here reads a clock:
``now`` is the caller's, in seconds.

Sequence numbers.  Inside, every position is a plain integer offset from the
start of its stream: offset 0 is the ISS for what this side sends and the IRS
for what it receives (SAL-STREAM-2); the first data octet has offset 0, and a
FIN takes the offset after the last data octet.  On the wire a position is
``(ISS + offset) mod 2**32``.  A received Sequence is unwrapped against the
receive point and a received Acknowledgment against the oldest unacknowledged
offset with the serial arithmetic of Section 5: a difference of 2**31, which
serial arithmetic leaves undefined, counts as older.  So the stream wraps around
2**32 without a single modular comparison in the logic.

Sending.  ``snd_una`` is the oldest unacknowledged offset, ``snd_nxt`` the next
one to send (moved back to ``snd_una`` when everything in flight is given up
for lost: after a retransmission timeout and on resume), ``snd_max`` one past
the furthest offset ever sent.  The send buffer is a bytearray holding the
octets from ``snd_una`` to the end of the written data; an acknowledgment
deletes from its front (cheap in CPython), and a segment is one slice of it.
A segment may carry the octets from ``snd_nxt`` up to the least of: ``mss``
octets; the peer's right edge (Acknowledgment + Window x 1024 of the peer's
latest window update, or ISS + 262,144 before any segment from the peer,
SAL-STREAM-4); and ``cwnd`` minus the octets in flight.  A segment shorter
than ``mss`` goes out only if it carries the last written octet or nothing is
in flight (sender silly-window avoidance, RFC 1122 Section 4.2.3.4, without
Nagle's delay of small writes).  The FIN rides on the last data segment, or
alone after it; like an octet it needs room in the peer's window (as in
Linux), which is why SAL-STREAM-8 lets a probe carry it.  The peer's window is
taken from a segment only if it is no older than the last one used (Linux's
form of RFC 9293's SND.WL1/SND.WL2 rule): one that acknowledges new data, or
one with the same Acknowledgment and a Sequence at least that of the last
update, so that a reordered old segment cannot close the window again.  A
segment without data or FIN carries as Sequence "the sender's next sequence
number" read as ``snd_max``, one past the furthest sent (as BSD does), so that
the ACKs sent after a go-back still count as new window updates.

Congestion control (SAL-STREAM-7) is RFC 5681 with NewReno's recovery (RFC
6582).  Initial window: ``min(10 * mss, max(2 * mss, 14600))`` octets (RFC
6928; the initial window that current TCP stacks use): 10 segments of 1,208
octets.  The initial ``ssthresh`` is the largest window the peer can advertise.
Growth counts octets, not ACKs (SAL-STREAM-23, RFC 3465 with no per-ACK limit,
as Linux does): slow start adds the octets newly acknowledged, congestion
avoidance ``mss * acked // cwnd``, so one ACK for a batch of segments
(SAL-STREAM-16) grows ``cwnd`` as much as one ACK per segment.  Three duplicate
ACKs (RFC 5681's definition: no data, no FIN, same window, data in flight)
retransmit the oldest segment at once (SAL-STREAM-10), set ``ssthresh =
max(flight / 2, 2 * mss)`` and ``cwnd = ssthresh + 3 * mss``; each further
duplicate adds ``mss``; a partial ACK retransmits the next hole; the ACK of
everything sent before recovery deflates ``cwnd`` to ``min(ssthresh, flight +
mss)``.  Duplicate ACKs below ``recover`` (everything sent before the last
timeout or resume) trigger no fast retransmit: they come from the go-back
retransmissions.

Retransmission timer (SAL-STREAM-9, RFC 6298 Section 5).  One timer, separate
from the control channel's, with its own :class:`~ref.sal.rto.RtoEstimator`.
It runs whenever something is unacknowledged or waits to be sent, and each ACK
of new data restarts it.  On expiry:

- if the peer's window is closed at ``snd_una``, the stream sends a window
  probe (SAL-STREAM-8): one octet at ``snd_nxt``, or the FIN if no data is
  left, beyond the window, and doubles the RTO;
- otherwise it retransmits from the oldest unacknowledged octet: ``snd_nxt``
  goes back to ``snd_una``, ``cwnd`` to one ``mss``, ``ssthresh`` to
  ``max(flight / 2, 2 * mss)`` (only at the first expiry for the same data,
  RFC 5681), and the RTO doubles.

RTT samples follow Karn's rule (SAL-CTRL-13): one segment of new data is
timed at a time, and any retransmission cancels the timing.

The retransmission limit (SAL-STREAM-11) counts, as in Section 5.9.3, the
timer expiries that retransmitted without an ACK of new data since: the
expiry that finds the data already retransmitted 8 times fails the stream
(:attr:`Stream.failed`), and a failed stream sends nothing more; the host
reports the timeout, sends the RST and closes the flow.  Fast retransmissions
do not count (the limit is the timer's, as on the control channel).  Window
probes count separately and only while unanswered: any acceptable segment
from the peer with a valid ACK resets the count, so a peer that keeps
answering with a zero window is probed forever (with the RTO capped at 60 s),
and a peer that stops answering fails the stream at the ninth expiry.

Receiving.  ``rcv_nxt`` is the receive point.  The receiver accepts octets
below its right edge, the furthest ``rcv_nxt + window * 1024`` it has ever
advertised, and discards the rest (SAL-STREAM-13).  In-order octets are
appended to a bytearray that :meth:`Stream.read` empties; out-of-order ones
wait in a dict keyed by offset, with a heap of the keys, until the gap fills
(at most ``receive_buffer`` octets of them).  Each octet reaches the
application once, in order (SAL-STREAM-12).  Before it looks at the
Acknowledgment, the receiver checks that the segment's Sequence lies between
``rcv_nxt`` minus the largest window it has advertised and its right edge;
a segment outside (not one that a correct peer could send) and a segment
without the ACK flag (SAL-STREAM-3) are dropped, the former answered with an
immediate ACK (RFC 9293).  An Acknowledgment beyond ``snd_max`` (of data not
yet sent) gets the same treatment, so ``receive`` never raises.

Window (SAL-STREAM-18).  The advertised window is the free receive buffer,
``receive_buffer`` minus the octets delivered in order but not yet read, in
whole units of 1024 octets, at most 65,535.  Out-of-order octets lie inside
the window already advertised, so they do not reduce it.  Rounding down to a
unit may move the right edge left by less than one unit when in-order data
arrives; the receiver keeps accepting up to the furthest edge it has advertised,
so no octet that the sender sent within a window is lost.  Reading sends a
window update when it moves the right edge by at least ``min(receive_buffer / 2,
mss)`` (receiver silly-window avoidance, RFC 1122 Section 4.2.3.3).

Acknowledgments.  Every segment carries ACK and the receive point
(SAL-STREAM-3), so data carries the ACK when there is any.  A pure ACK goes
out at once for a segment that is out of order, a duplicate, partly outside
the window, or that fills a gap (SAL-STREAM-17), for the FIN, for every
second data segment in order (SAL-STREAM-16; every second one of any size,
because the peer's segment size is not known), and otherwise at most 0.1 s
after the data that needs it (SAL-STREAM-15: half the 0.2 s ceiling, as in
FreeBSD, so that a delayed ACK does not race an RTO at its 0.2 s floor).
Once all data and the FIN have arrived, the ACK is one past the FIN
(SAL-STREAM-14).  :meth:`Stream.receive` tells the host whether the segment
needs its answer at once (every reason above but "every second segment"):
then the host calls :meth:`Stream.segments_to_send` before it takes another
packet, so that each out-of-order segment gets its own (duplicate) ACK, the
signal of fast retransmit.  Otherwise the host may first take the segments of
the flow that arrived with it, and one ACK answers the batch (SAL-STREAM-16).

Migration (Section 5.10; "Across migration" in 5.14.2).  :meth:`Stream.freeze`
stops output and the timer; received segments are still processed.
:meth:`Stream.resume` resets the RTT estimator and the congestion state
(SAL-STREAM-21) and the retransmission counts (the path is new), gives up
everything in flight for lost (``snd_nxt`` back to ``snd_una``, ``recover``
to ``snd_max``) and so sends the oldest unacknowledged segment first, at once
(SAL-STREAM-22), followed by as much as the initial window allows; if the
peer's window is closed, it probes at once instead.  The receiver discards
the copies it already has, so nothing is lost or delivered twice.
"""

from __future__ import annotations

import heapq

from ref.sal.rto import RtoEstimator
from ref.wire.constants import (
    STREAM_DEFAULT_WINDOW,
    STREAM_DUPACK_THRESHOLD,
    STREAM_MAX_ACK_DELAY,
    STREAM_MAX_RETRANSMITS,
    STREAM_WINDOW_UNIT,
)
from ref.wire.errors import LocalProtocolError
from ref.wire.sal import StreamFlags, StreamSegment

#: What an application may hand to the stream (and to :meth:`ref.sal.host.Host.send`).
Buffer = bytes | bytearray | memoryview
#: Maximum data octets per segment: 1,232 - 12 (SAL header) - 12 (segment header).
DEFAULT_MSS = 1208
#: The largest Window field (16 bits) in units.
MAX_WINDOW_UNITS = 0xFFFF
#: The largest right edge distance a peer can advertise, in octets.
MAX_WINDOW = MAX_WINDOW_UNITS * STREAM_WINDOW_UNIT
#: Delay of an ACK that is not due at once (SAL-STREAM-15 caps it at 0.2 s).
ACK_DELAY = STREAM_MAX_ACK_DELAY / 2

_MOD = 1 << 32
_MASK = _MOD - 1
_HALF = 1 << 31
_UNIT_SHIFT = STREAM_WINDOW_UNIT.bit_length() - 1  # 1024 == 1 << 10
_ACK_BIT = int(StreamFlags.ACK)
_FIN_BIT = int(StreamFlags.FIN)
_ACK = StreamFlags.ACK
_ACK_FIN = StreamFlags.ACK | StreamFlags.FIN


def initial_window(mss: int) -> int:
    """The initial congestion window in octets for ``mss`` (RFC 6928)."""
    return min(10 * mss, max(2 * mss, 14600))


class Stream:
    """The stream transport of one flow: a reliable ordered octet stream each way."""

    def __init__(
        self,
        *,
        iss: int,
        irs: int,
        now: float,
        mss: int = DEFAULT_MSS,
        receive_buffer: int = 1 << 20,
        send_buffer: int = 1 << 20,
    ) -> None:
        """A stream whose first octets are ``iss`` (own) and ``irs`` (the peer's ISS).

        ``mss`` is the most data octets per segment (SAL-STREAM-6);
        ``receive_buffer`` holds at least the 262,144 octets that the peer may
        send before it hears from us (SAL-STREAM-5).  No timer runs until
        something is sent, so ``now`` sets nothing yet.
        """
        if not (0 <= iss < _MOD and 0 <= irs < _MOD):
            raise LocalProtocolError("ISS and IRS are 32-bit numbers")
        if mss < 1 or send_buffer < 1:
            raise LocalProtocolError("mss and send_buffer must be positive")
        if receive_buffer < STREAM_DEFAULT_WINDOW:
            # SAL-STREAM-5: the peer may send 256 units before it hears from us.
            raise LocalProtocolError(f"receive_buffer must be >= {STREAM_DEFAULT_WINDOW}")
        self.mss = mss
        self.receive_buffer = receive_buffer
        self.send_buffer = send_buffer
        self._iss = iss
        self._irs = irs

        # Sender (offsets from ISS).
        self._sndbuf = bytearray()
        self._snd_base = 0  # offset of _sndbuf[0]: min(snd_una, data end)
        self._data_end = 0  # offset after the last written octet; the FIN's offset
        self._shutdown = False
        self._snd_una = 0
        self._snd_nxt = 0
        self._snd_max = 0
        self._snd_edge = STREAM_DEFAULT_WINDOW  # SAL-STREAM-4, until the peer speaks
        self._wl1 = -(1 << 62)  # Sequence (offset) of the last window update used
        self._last_window = -1  # Window field of the last acceptable segment
        self.rto_estimator = RtoEstimator()
        self._rtx_deadline: float | None = None
        self._rtt_end: int | None = None  # ACK that completes the timed segment
        self._rtt_start = 0.0
        self._retransmit_count = 0  # expiries without progress (SAL-STREAM-11)
        self._probes_unanswered = 0  # SAL-STREAM-8
        self._retransmit_oldest = False  # fast retransmit or partial ACK
        self._probe_due = False
        self._failed = False
        self._frozen = False
        # Congestion control (RFC 5681, RFC 6582).
        self.cwnd = initial_window(mss)
        self.ssthresh = MAX_WINDOW
        self._dupacks = 0
        self._in_recovery = False
        self._recover = 0

        # Receiver (offsets from IRS).
        self._rcvbuf = bytearray()
        self._rcv_nxt = 0
        self._rcv_edge = self._window_units() << _UNIT_SHIFT  # furthest edge advertised
        self._adv_edge = self._rcv_edge  # edge of the last segment sent
        self._max_adv_window = self._rcv_edge
        self._ooo: dict[int, bytes] = {}
        self._ooo_starts: list[int] = []
        self._ooo_octets = 0
        self._peer_fin: int | None = None  # offset of the peer's FIN, once known
        self._peer_finished = False
        self._ack_now = False
        self._urgent = False  # the segment being received needs its answer at once
        self._ack_deadline: float | None = None
        self._unacked_segments = 0
        self._window_update_step = min(receive_buffer // 2, mss)

        # Statistics.
        self.segments_sent = 0
        self.segments_received = 0
        self.octets_sent = 0  # data octets, retransmissions included
        self.retransmissions = 0  # segments that carried octets or a FIN sent before
        self.fast_retransmits = 0
        self.timeouts = 0  # timer expiries that retransmitted
        self.probes_sent = 0
        self.pure_acks_sent = 0
        self.segments_dropped = 0  # unacceptable segments, no ACK flag, ACK of unsent data
        self.octets_discarded = 0  # received octets outside the window or already received

    # --- application side -----------------------------------------------------

    def write(self, data: Buffer) -> int:
        """Queue up to :attr:`send_buffer_free` octets of ``data``; return how many."""
        if self._shutdown:
            raise LocalProtocolError("write after shutdown")
        count = min(len(data), self.send_buffer - len(self._sndbuf))
        if count <= 0:
            return 0
        self._sndbuf += data if count == len(data) else data[:count]
        self._data_end += count
        return count

    @property
    def send_buffer_free(self) -> int:
        """Octets that :meth:`write` accepts now."""
        return self.send_buffer - len(self._sndbuf)

    def shutdown(self) -> None:
        """End the outgoing stream: a FIN follows the last octet written."""
        self._shutdown = True

    def read(self, limit: int = -1) -> bytes:
        """Take up to ``limit`` (all if negative) in-order octets (SAL-STREAM-12)."""
        buffer = self._rcvbuf
        count = len(buffer) if limit < 0 else min(limit, len(buffer))
        if count == 0:
            return b""
        data = bytes(buffer[:count])
        del buffer[:count]
        if not self._peer_finished:
            edge = self._rcv_nxt + (self._window_units() << _UNIT_SHIFT)
            if edge - self._adv_edge >= self._window_update_step:
                self._ack_now = True  # window update
        return data

    @property
    def readable(self) -> int:
        """Octets that :meth:`read` returns now."""
        return len(self._rcvbuf)

    @property
    def peer_finished(self) -> bool:
        """Every octet up to the peer's FIN has arrived in order (SAL-STREAM-19)."""
        return self._peer_finished

    @property
    def finished(self) -> bool:
        """Own FIN and all data before it acknowledged: the SAL may send its FIN (SAL-STREAM-20)."""
        return self._shutdown and self._snd_una > self._data_end

    @property
    def failed(self) -> bool:
        """The same data went unacknowledged through 8 retransmissions (SAL-STREAM-11)."""
        return self._failed

    @property
    def frozen(self) -> bool:
        """Between :meth:`freeze` and :meth:`resume`."""
        return self._frozen

    @property
    def bytes_in_flight(self) -> int:
        """Sequence numbers sent and neither acknowledged nor given up for lost."""
        return self._snd_nxt - self._snd_una

    # --- SAL side ---------------------------------------------------------------

    def receive(self, segment: StreamSegment, now: float) -> bool:
        """Process one segment from the peer; never raises.

        Returns True when the segment needs an answer before the host goes on
        to another packet: an acknowledgment that SAL-STREAM-17 (out of order,
        duplicate, gap filled), the FIN, or an unacceptable segment calls for.
        Otherwise the host may take further segments of the flow that arrived
        with this one before it asks what to send (SAL-STREAM-16).
        """
        self.segments_received += 1
        self._urgent = False
        flags = int(segment.flags)
        if not flags & _ACK_BIT:  # SAL-STREAM-3; RFC 9293: drop it
            self.segments_dropped += 1
            return False
        rcv_nxt = self._rcv_nxt
        seq = rcv_nxt + ((segment.sequence - self._irs - rcv_nxt + _HALF) & _MASK) - _HALF
        # A correct peer's Sequence lies between rcv_nxt minus any window we have
        # advertised and one past our right edge (after a probe octet or a FIN there).
        if seq > max(self._rcv_edge, rcv_nxt) + 1 or seq < rcv_nxt - self._max_adv_window:
            self.segments_dropped += 1
            self._ack_now = self._urgent = True
            return True
        snd_una = self._snd_una
        ack = snd_una + ((segment.acknowledgment - self._iss - snd_una + _HALF) & _MASK) - _HALF
        if ack > self._snd_max:  # acknowledges what was never sent
            self.segments_dropped += 1
            self._ack_now = self._urgent = True
            return True
        data = segment.data
        size = len(data)
        fin = flags & _FIN_BIT
        window = segment.window
        self._probes_unanswered = 0

        # Window update: only from a segment no older than the last one used.
        if ack > snd_una or (ack == snd_una and seq >= self._wl1):
            self._snd_edge = ack + (window << _UNIT_SHIFT)
            self._wl1 = seq
        if ack > snd_una:
            self._on_new_ack(ack, now)
        elif (
            ack == snd_una
            and not size
            and not fin
            and window == self._last_window
            and self._snd_nxt > snd_una
        ):
            self._on_duplicate_ack()
        self._last_window = window

        if size or fin:
            self._on_data(seq, data, fin, now)
        self._arm_timer(now)
        return self._urgent

    def segments_to_send(self, now: float) -> list[StreamSegment]:
        """Every segment due now: data, retransmissions, a probe or a pure ACK."""
        if self._frozen or self._failed:
            return []
        out: list[StreamSegment] = []
        rcv_nxt = self._rcv_nxt
        units = self._window_units()
        ack_wire = (self._irs + rcv_nxt) & _MASK
        mss = self.mss
        data_end = self._data_end
        edge = self._snd_edge

        if self._retransmit_oldest:
            self._retransmit_oldest = False
            start = self._snd_una
            end = min(start + mss, data_end, edge, self._snd_max)
            fin = self._snd_max > data_end and end == data_end and data_end < edge
            if end > start or fin:
                self._emit(out, start, end, fin, ack_wire, units, now)

        nxt = self._snd_nxt
        while nxt < data_end:
            count = data_end - nxt
            room = min(mss, edge - nxt, self.cwnd - (nxt - self._snd_una))
            if room < count:
                if room <= 0 or (room < mss and nxt > self._snd_una):
                    break
                count = room
            end = nxt + count
            fin = self._shutdown and end == data_end and data_end < edge
            self._emit(out, nxt, end, fin, ack_wire, units, now)
            nxt = end + 1 if fin else end
        else:
            if self._shutdown and nxt == data_end and data_end < edge:
                self._emit(out, nxt, nxt, True, ack_wire, units, now)
                nxt += 1
        self._snd_nxt = nxt

        if self._probe_due:
            self._probe_due = False
            if not out:
                self._send_probe(out, ack_wire, units)
        if not out and (
            self._ack_now or (self._ack_deadline is not None and now >= self._ack_deadline)
        ):
            sequence = (self._iss + self._snd_max) & _MASK  # BSD's choice, see above
            out.append(StreamSegment(sequence, ack_wire, _ACK, units, b""))
            self.segments_sent += 1
            self.pure_acks_sent += 1
        if out:
            adv_edge = rcv_nxt + (units << _UNIT_SHIFT)
            self._adv_edge = adv_edge
            if adv_edge > self._rcv_edge:
                self._rcv_edge = adv_edge
                self._max_adv_window = max(self._max_adv_window, units << _UNIT_SHIFT)
            self._ack_now = False
            self._ack_deadline = None
            self._unacked_segments = 0
        self._arm_timer(now)
        return out

    def get_timer(self) -> float | None:
        """The earliest deadline (retransmission or delayed ACK), or None."""
        if self._frozen or self._failed:
            return None
        rtx = self._rtx_deadline
        ack = self._ack_deadline
        if ack is None or (rtx is not None and rtx <= ack):
            return rtx
        return ack

    def handle_timer(self, now: float) -> None:
        """Expire the timers due at ``now``; the result comes out of :meth:`segments_to_send`."""
        if self._frozen or self._failed:
            return
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_deadline = None
            self._ack_now = True
        deadline = self._rtx_deadline
        if deadline is None or now < deadline:
            return
        self._rtx_deadline = None
        snd_una = self._snd_una
        pending = self._snd_max > snd_una or self._snd_nxt < self._data_end + self._shutdown
        if not pending:
            return
        if self._snd_edge <= snd_una:  # the peer's window is closed: probe (SAL-STREAM-8)
            if self._probes_unanswered >= STREAM_MAX_RETRANSMITS:
                self._fail()
                return
            self._probes_unanswered += 1
            self._snd_nxt = snd_una
            self._probe_due = True
        elif self._snd_max > snd_una:  # retransmission timeout (SAL-STREAM-9)
            if self._retransmit_count >= STREAM_MAX_RETRANSMITS:
                self._fail()  # SAL-STREAM-11
                return
            if self._retransmit_count == 0:
                self.ssthresh = max((self._snd_nxt - snd_una) // 2, 2 * self.mss)
            self._retransmit_count += 1
            self.timeouts += 1
            self.cwnd = self.mss
            self._snd_nxt = snd_una
            self._recover = self._snd_max
            self._in_recovery = False
            self._dupacks = 0
            self._retransmit_oldest = False
            self._rtt_end = None
        else:
            return  # queued data the window allows: the next segments_to_send sends it
        self.rto_estimator.back_off()
        self._rtx_deadline = now + self.rto_estimator.rto

    def freeze(self) -> None:
        """Migration started: send nothing and stop the retransmission timer."""
        self._frozen = True
        self._rtx_deadline = None
        self._retransmit_oldest = False
        self._probe_due = False

    def resume(self, now: float) -> None:
        """Migration done: new path, so fresh estimator and congestion state (SAL-STREAM-21).

        The next :meth:`segments_to_send` starts with the oldest unacknowledged
        segment (SAL-STREAM-22).
        """
        self._frozen = False
        self.rto_estimator.reset()
        self.cwnd = initial_window(self.mss)
        self.ssthresh = MAX_WINDOW
        self._dupacks = 0
        self._in_recovery = False
        self._rtt_end = None
        self._retransmit_count = 0
        self._probes_unanswered = 0
        if self._snd_max > self._snd_una:
            self._snd_nxt = self._snd_una
            self._recover = self._snd_max
        pending = self._snd_max > self._snd_una or self._snd_nxt < self._data_end + self._shutdown
        if pending and self._snd_edge <= self._snd_una:
            self._probe_due = True
        if self._ack_deadline is not None or self._unacked_segments:
            self._ack_now = True
        self._rtx_deadline = None
        self._arm_timer(now)

    # --- internals ----------------------------------------------------------------

    def _window_units(self) -> int:
        units = (self.receive_buffer - len(self._rcvbuf)) >> _UNIT_SHIFT
        return units if units < MAX_WINDOW_UNITS else MAX_WINDOW_UNITS

    def _emit(
        self,
        out: list[StreamSegment],
        start: int,
        end: int,
        fin: bool,
        ack_wire: int,
        units: int,
        now: float,
    ) -> None:
        """Append the segment carrying offsets ``start`` to ``end`` (and the FIN)."""
        base = self._snd_base
        data = bytes(self._sndbuf[start - base : end - base]) if end > start else b""
        flags = _ACK_FIN if fin else _ACK
        out.append(StreamSegment((self._iss + start) & _MASK, ack_wire, flags, units, data))
        self.segments_sent += 1
        self.octets_sent += end - start
        seg_end = end + 1 if fin else end
        if start < self._snd_max:
            self.retransmissions += 1
            self._rtt_end = None  # Karn's rule
        elif self._rtt_end is None:
            self._rtt_end = seg_end
            self._rtt_start = now
        if seg_end > self._snd_max:
            self._snd_max = seg_end

    def _send_probe(self, out: list[StreamSegment], ack_wire: int, units: int) -> None:
        """One octet, or the FIN, beyond the peer's closed window (SAL-STREAM-8).

        Neither timed (its ACK may wait for the window to open) nor counted in
        flight: ``snd_nxt`` stays, only ``snd_max`` covers it.
        """
        start = self._snd_nxt
        seq = (self._iss + start) & _MASK
        if start < self._data_end:
            offset = start - self._snd_base
            octet = bytes(self._sndbuf[offset : offset + 1])
            out.append(StreamSegment(seq, ack_wire, _ACK, units, octet))
            end = start + 1
            self.octets_sent += 1
        elif self._shutdown and start == self._data_end:
            out.append(StreamSegment(seq, ack_wire, _ACK_FIN, units, b""))
            end = start + 1
        else:
            return
        if end > self._snd_max:
            self._snd_max = end
        self.segments_sent += 1
        self.probes_sent += 1

    def _on_new_ack(self, ack: int, now: float) -> None:
        mss = self.mss
        acked = ack - self._snd_una
        self._snd_una = ack
        if self._snd_nxt < ack:
            self._snd_nxt = ack
        keep = min(ack, self._data_end)
        if keep > self._snd_base:
            del self._sndbuf[: keep - self._snd_base]
            self._snd_base = keep
        self._retransmit_count = 0
        self._dupacks = 0
        if self._rtt_end is not None and ack >= self._rtt_end:
            self.rto_estimator.sample(now - self._rtt_start)
            self._rtt_end = None
        if self._in_recovery:
            if ack >= self._recover:  # full ACK (RFC 6582)
                self._in_recovery = False
                self.cwnd = min(self.ssthresh, max(self._snd_nxt - ack, mss) + mss)
            else:  # partial ACK: the next hole
                self._retransmit_oldest = True
                self._rtt_end = None
                self.cwnd = max(self.cwnd - acked + (mss if acked >= mss else 0), mss)
        elif self.cwnd < self.ssthresh:  # byte counting (SAL-STREAM-23)
            self.cwnd += acked
        else:
            self.cwnd += max(1, mss * acked // self.cwnd)
        self._rtx_deadline = None  # restarted by _arm_timer (RFC 6298 5.3)

    def _on_duplicate_ack(self) -> None:
        self._dupacks += 1
        if self._in_recovery:
            self.cwnd += self.mss
        elif self._dupacks == STREAM_DUPACK_THRESHOLD and self._snd_una >= self._recover:
            mss = self.mss
            self.ssthresh = max((self._snd_nxt - self._snd_una) // 2, 2 * mss)
            self.cwnd = self.ssthresh + 3 * mss
            self._recover = self._snd_max
            self._in_recovery = True
            self._retransmit_oldest = True
            self._rtt_end = None
            self.fast_retransmits += 1

    def _on_data(self, seq: int, data: bytes, fin: int, now: float) -> None:
        rcv_nxt = self._rcv_nxt
        size = len(data)
        end = seq + size
        if fin and self._peer_fin is None and rcv_nxt <= end <= self._rcv_edge:
            self._peer_fin = end
        high = self._rcv_edge
        if self._peer_fin is not None and self._peer_fin < high:
            high = self._peer_fin
        start = seq if seq > rcv_nxt else rcv_nxt
        stop = end if end < high else high
        if stop - start < size:  # some octets duplicate or outside the window
            self.octets_discarded += size - max(stop - start, 0)
            self._ack_now = self._urgent = True
        if start < stop:
            chunk = data if stop - start == size else data[start - seq : stop - seq]
            if start == rcv_nxt:
                self._rcvbuf += chunk
                rcv_nxt = stop
                if self._ooo_starts:
                    rcv_nxt = self._drain_out_of_order(rcv_nxt)
                    self._ack_now = self._urgent = True  # fills (part of) a gap
                else:
                    self._unacked_segments += 1
                    if self._unacked_segments >= 2:  # SAL-STREAM-16
                        self._ack_now = True
                    elif self._ack_deadline is None:  # SAL-STREAM-15
                        self._ack_deadline = now + ACK_DELAY
            else:
                self._store_out_of_order(start, chunk)
                self._ack_now = self._urgent = True  # SAL-STREAM-17
        if self._peer_fin is not None and rcv_nxt == self._peer_fin and not self._peer_finished:
            rcv_nxt += 1  # the FIN's sequence number (SAL-STREAM-14)
            self._peer_finished = True
            self._ack_now = self._urgent = True
        elif fin:
            self._ack_now = self._urgent = True  # a FIN out of order or repeated
        self._rcv_nxt = rcv_nxt

    def _store_out_of_order(self, start: int, chunk: bytes) -> None:
        held = self._ooo.get(start)
        if held is not None and len(held) >= len(chunk):
            self.octets_discarded += len(chunk)
            return
        extra = len(chunk) - (len(held) if held is not None else 0)
        if self._ooo_octets + extra > self.receive_buffer:
            self.octets_discarded += len(chunk)
            return
        if held is None:
            heapq.heappush(self._ooo_starts, start)
        self._ooo[start] = chunk
        self._ooo_octets += extra

    def _drain_out_of_order(self, rcv_nxt: int) -> int:
        """Append the held octets that now follow ``rcv_nxt``; return the new receive point."""
        starts = self._ooo_starts
        held = self._ooo
        high = self._peer_fin if self._peer_fin is not None else self._rcv_edge
        while starts and starts[0] <= rcv_nxt:
            start = heapq.heappop(starts)
            chunk = held.pop(start)
            self._ooo_octets -= len(chunk)
            end = min(start + len(chunk), high)
            if end > rcv_nxt:
                self._rcvbuf += chunk[rcv_nxt - start : end - start]
                rcv_nxt = end
        return rcv_nxt

    def _arm_timer(self, now: float) -> None:
        """Run the retransmission timer while anything is unacknowledged or queued."""
        if self._frozen or self._failed:
            return
        if self._snd_max > self._snd_una or self._snd_nxt < self._data_end + self._shutdown:
            if self._rtx_deadline is None:
                self._rtx_deadline = now + self.rto_estimator.rto
        else:
            self._rtx_deadline = None

    def _fail(self) -> None:
        self._failed = True
        self._rtx_deadline = None
        self._ack_deadline = None
