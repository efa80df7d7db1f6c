"""One local connection relayed over one WebSocket (tn_relay.c and tn_link.c's counterpart).

Two asyncio protocols share a Relay: ``Local`` (the accepted or adopted local socket) and ``Link``
(the WebSocket's TLS connection, a HeadProtocol until the 101). Back-pressure both ways comes from
the transports' write buffers: when one side's buffer passes RING_CAP, the other side stops
reading until it drains, so a stalled reader holds at most a few hundred KiB per direction.

Ends: the WebSocket going away (a Close frame, 1011 included, or EOF) flushes what is buffered to
the local client and then closes it, so it sees EOF; the local client going away sends a Close frame
(WebSocket has no half-close) and waits a little for the server's answer. A handshake or protocol
failure is a "failed" event with a reason; everything else is "closed".

Hold (the engine's ``hold``, tn_relay.c's rules): a connection the server turns away before its first
byte, the way a restarting app does (502/503 from the front end, a close before the upgrade's answer,
a WebSocket ended at once because nothing listens in the container yet), is held instead: its client
stays connected and what it sent is kept, a "held" event tells Python, and ``release`` makes it retry
on a new WebSocket, the kept bytes first, or end as it would have.
"""
import asyncio
import time

from . import codec
from .connect import READ_BULK, READ_MAX, HeadProtocol
from .errors import Error, fail, resource_error, stream_failure
from .sizes import CLOSE_WAIT_SECS, HOLD_KEEP_MAX, HOLD_TIMES_MAX, HOLD_WINDOW_MS, HS_SECS, REFUSAL_SECS, RING_CAP

# A transport's write buffer pauses the other side's reading at half of it: what is read while the
# pause takes effect (one read, at most 64 KiB of TLS or 256 KiB of local data) stays within it.
HIGH_WATER = RING_CAP // 2
# With few connections open a busy one reads up to 256 KiB at once (fewer loop turns and writes per
# GiB); with many, 64 KiB, so that 1,000 busy connections stay within a few hundred MiB.
FEW_CONNECTIONS = 64
# The relay's steps as the phases of _reasons.def (tn_link.c's tn_link_facts).
_PHASES = {"tcp": "connect", "proxy": "proxy", "tls": "tls", "upgrade": "upgrade", "open": "frame"}
# The answers to the upgrade that a restarting app gives (the front end's).
_RESTARTING_STATUS = (502, 503)


class Local(asyncio.Protocol):
    """The local side: every byte read goes up the WebSocket."""

    __slots__ = ("relay",)

    def __init__(self, relay):
        self.relay = relay

    def connection_made(self, transport):
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.relay.local_made(transport)

    def data_received(self, data):
        self.relay.up(data)

    def eof_received(self):
        return False        # no half-close on a WebSocket: the local side ends

    def connection_lost(self, exc):
        self.relay.local_lost()

    def pause_writing(self):
        self.relay.pause_link_reading()

    def resume_writing(self):
        self.relay.resume_link_reading()


class Link(HeadProtocol):
    """The WebSocket's own connection, after TLS: frames in, frames out."""

    def __init__(self, relay):
        super().__init__()
        self.relay = relay
        self.parser = None
        self.early = []          # frames that arrived after the 101 but before the relay took it

    def on_bytes(self, data):
        relay = self.relay
        if relay.link is not self:
            return              # a WebSocket the relay left for a new one (hold)
        relay.rx_seen = True
        if relay.ws_gone:
            return
        if self.parser is None:
            self.early.append(bytes(data))
            return
        try:
            self.parser.feed(data)
        except Error as err:
            relay.link_failed(err)

    def ended(self):
        if self._head is not None:
            super().ended()
            return
        if self.relay.link is self:
            self.relay.link_eof()

    def lost(self, exc):
        if self.relay.link is self:
            self.relay.link_lost(exc)

    def pause_writing(self):
        if self.relay.link is self:
            self.relay.pause_local_reading("link")

    def resume_writing(self):
        if self.relay.link is self:
            self.relay.resume_local_reading("link")


class Relay:
    """See the module docstring. Lives on the engine's loop thread only."""

    def __init__(self, core, conn_id, peer="", check=None):
        self.core = core
        self.id = conn_id
        self.peer = peer
        self.check = check                  # check(): a future for the handshake's outcome
        self.local = None
        self.link = Link(self)
        self.task = None
        self.step = "tcp"
        self.ws_up = self.ws_gone = self.local_gone = False
        self.close_sent = self.peer_closed = self.remote_closed = False
        self.link_paused = False
        self.local_paused = set()           # why the local side is not read: "pending", "link"
        self.rx_seen = False
        self.idle = 0.0
        self.timer = None
        self.pending = []                   # local bytes that arrived before the WebSocket opened
        self.pending_size = 0
        self.pending_text = []              # Text frames given before it opened: they go first
        self.bytes_up = self.bytes_down = 0
        self.err = None
        self.finished = False
        self.fail_counted = False
        self.kept = None                    # hold: the client's bytes until the server's first
        self.kept_over = self.heard = self.held = False
        self.holds = 0
        self.opened_at = 0.0                # time.monotonic() when its WebSocket last opened
        if check is None:
            core.by_id[conn_id] = self

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        self.task = self.core.loop.create_task(self._open())

    def local_made(self, transport):
        self.local = transport
        self.core.relays.add(self)
        stats = self.core.stats
        stats["open"] += 1
        stats["total"] += 1
        if not self.peer:
            peer = transport.get_extra_info("peername")
            self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        self.start()

    async def _open(self):
        try:
            rest = await asyncio.wait_for(self._handshake(), HS_SECS)
        except asyncio.CancelledError:
            self._drop_link()
            raise
        except asyncio.TimeoutError:
            self._drop_link()
            self._ws_failed(fail("timeout_handshake", timeout_ms=HS_SECS * 1000, **self.where()))
            return
        except Error as err:
            self._drop_link()
            self._ws_failed(err)
            return
        except Exception as exc:  # pylint: disable=broad-except
            self._drop_link()
            self._ws_failed(resource_error(exc, **self.where())
                            or fail("internal", detail=f"opening the WebSocket: {type(exc).__name__}"))
            return
        self._opened(rest)

    async def _handshake(self):
        core, link = self.core, self.link

        def step(name):
            self.step = name
        await core.route.open(core.loop, link, step)
        self.step = "upgrade"
        key = codec.new_key()
        head = link.expect_head(codec.upgrade_collector(core.host, core.port),
                                fail("connect_closed", **self.where()))
        request = codec.upgrade_request(core.host, core.port, core.authorization(), key, core.instance,
                                        core.target_port, core.path)
        link.send(request)
        del request
        answer, rest = await head
        status = codec.status_of(answer)
        if status is not None and status >= 100 and status != 101:
            rest = await self._refusal_body(answer, rest)
        codec.check_upgrade(answer, rest, key, core.host, core.port)
        return rest

    async def _refusal_body(self, head, rest):
        """The body of a refused upgrade, its chunks joined, for its server_message (the SCM site says
        why there): up to its end, BODY_SCAN bytes, the connection's end or REFUSAL_SECS."""
        link = self.link
        collector = codec.BodyCollector(head)
        data, link.early = rest + b"".join(link.early), []
        transport = link.transport
        if collector.feed(data) is None and transport is not None and not transport.is_closing():
            more = link.expect_head(collector, fail("connect_closed", **self.where()))
            try:
                await asyncio.wait_for(more, REFUSAL_SECS)
            except (Error, asyncio.TimeoutError):
                pass            # what came is what there is
        return collector.data()

    def where(self):
        """The facts every failure of this relay's WebSocket carries, in the phase it is in."""
        return {"host": self.core.host, "port": self.core.port, "phase": _PHASES[self.step]}

    def _drop_link(self):
        self.ws_gone = True
        transport = self.link.transport
        if transport is not None:
            transport.abort()

    def _ws_failed(self, err):
        """The WebSocket never opened."""
        self.err = self.err or err
        self.ws_gone = True
        if self.check is not None:
            if not self.check.done():
                self.check.set_exception(self.err)
            self.finished = True
            return
        if self._may_hold() and self._hold():
            return
        if not self.fail_counted:
            self.fail_counted = True
            self.core.stats["failures"] += 1
        self._end_local()

    def _opened(self, rest):
        core = self.core
        self.ws_up = True
        self.opened_at = time.monotonic()
        self.step = "open"
        link = self.link
        link.parser = codec.FrameParser(core.host, self._down, self._control, port=core.port)
        link.read_max = READ_BULK if len(core.relays) <= FEW_CONNECTIONS else READ_MAX
        link.transport.set_write_buffer_limits(high=HIGH_WATER)
        if self.check is not None:
            if not self.check.done():
                self.check.set_result(None)
            self._send_close(codec.CLOSE_NORMAL)
            link.transport.close()
            return
        core.emit(self, "opened")
        self.timer = core.loop.call_later(core.ping_interval, self._tick)
        for text in self.pending_text:
            link.send(text)
        self.pending_text = []
        if self.pending:
            data, self.pending, self.pending_size = b"".join(self.pending), [], 0
            self._send_data(data)
        self.resume_local_reading("pending")
        if rest or link.early:
            data, link.early = rest + b"".join(link.early), []
            link.on_bytes(data)
        if self.local_gone and not self.close_sent:
            self._local_end_close()

    # -- hold ----------------------------------------------------------------------------------
    def _holding(self):
        return self.core.hold and self.check is None

    def _keep(self, data, cap):
        """Keep the client's bytes, if the keep stays within cap."""
        kept = self.kept if self.kept is not None else bytearray()
        if len(kept) + len(data) > cap:
            return False
        kept += data
        self.kept = kept
        return True

    def _may_hold(self):
        """The server turned this connection away before its first byte, the way a restarting app does."""
        if (not self._holding() or self.local is None or self.local_gone or self.heard or self.kept_over
                or self.holds >= HOLD_TIMES_MAX or self.core.stopping):
            return False
        err = self.err
        if err is None:     # closed at once after its 101, not after a while
            return (self.ws_up and self.remote_closed
                    and time.monotonic() - self.opened_at <= HOLD_WINDOW_MS / 1000)
        if err.reason == "http_status":
            return err.facts.get("status") in _RESTARTING_STATUS
        return err.reason == "connect_closed"

    def _hold(self):
        """The client stays, read on (its bytes kept) so that its leaving is seen. False, and nothing
        held, when the "held" event finds the event queue full: Python would never release it."""
        core = self.core
        if not core.emit(self, "held"):
            return False
        self.held = True
        self.holds += 1
        core.held.add(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending, self.pending_size = [], 0
        for why in ("pending", "link"):
            self.resume_local_reading(why)
        if self.kept is not None and len(self.kept) >= HOLD_KEEP_MAX:
            self.pause_local_reading("held")
        return True

    def release(self, retry):
        """Held: a new WebSocket with what the client sent first, or the end it was spared."""
        core = self.core
        self.held = False
        core.held.discard(self)
        if self.local is None or self.local_gone:
            return
        if not retry:
            if self.err is not None and not self.fail_counted:
                self.fail_counted = True
                core.stats["failures"] += 1
            self.local.close()
            return
        core.stats["bytes_up"] -= self.bytes_up     # they reached nobody
        self.link = Link(self)
        self.step = "tcp"
        self.ws_up = self.ws_gone = self.close_sent = self.peer_closed = self.remote_closed = False
        self.link_paused = self.rx_seen = False
        self.idle = 0.0
        self.err = None
        self.bytes_up = 0
        if self.kept:
            self.pending, self.pending_size = [bytes(self.kept)], len(self.kept)
        self.resume_local_reading("held")
        self.start()

    # -- data --------------------------------------------------------------------------------
    def up(self, data):
        if self.held:           # kept for the retry; past HOLD_KEEP_MAX it waits in the kernel
            self._keep(data, float("inf"))
            if len(self.kept) >= HOLD_KEEP_MAX:
                self.pause_local_reading("held")
            return
        if self.ws_gone or self.close_sent:
            return
        if self._holding() and not self.heard and not self.kept_over and not self._keep(data, HOLD_KEEP_MAX):
            self.kept_over, self.kept = True, None      # more than can be sent again: never held
        if not self.ws_up:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size >= RING_CAP - 2 * codec.FRAME_MAX:
                self.pause_local_reading("pending")
            return
        self._send_data(data)

    def send_text(self, data):
        """A Text frame (UTF-8 bytes): now when the WebSocket is open, else first once it opens;
        dropped when it is ending (tn_link_text)."""
        if self.ws_gone or self.close_sent or self.local_gone:
            return
        frame = codec.frame(codec.OP_TEXT, data)
        if self.ws_up:
            self.link.send(frame)
        else:
            self.pending_text.append(frame)

    def _send_data(self, data):
        self.link.send(codec.data_frames(data))
        n = len(data)
        self.bytes_up += n
        self.core.stats["bytes_up"] += n

    def _down(self, view):
        if not self.heard:      # the server spoke: nothing will be sent again
            self.heard, self.kept = True, None
        if self.local is None or self.local_gone:
            return
        self.local.write(view)
        n = len(view)
        self.bytes_down += n
        self.core.stats["bytes_down"] += n

    def _control(self, opcode, payload):
        if opcode == codec.OP_PING:
            if not self.close_sent:
                self.link.send(codec.frame(codec.OP_PONG, payload))
        elif opcode == codec.OP_CLOSE:         # 1011 included: the normal end
            self.peer_closed = True
            self.remote_closed = not self.close_sent      # not the answer to our own Close
            if not self.close_sent:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else codec.CLOSE_NORMAL
                self._send_close(code)
            if self.link.transport is not None:
                self.link.transport.close()
            self.ws_gone = True
            self._end_local()
        # unsolicited pongs are keep-alives

    def _send_close(self, code):
        if self.close_sent:
            return
        self.close_sent = True
        transport = self.link.transport
        if transport is not None and not transport.is_closing():
            self.link.send(codec.frame(codec.OP_CLOSE, codec.close_payload(code)))

    # -- back-pressure -------------------------------------------------------------------------
    def pause_local_reading(self, why):
        if self.local is None or self.local_gone:
            return
        if not self.local_paused:
            self.local.pause_reading()
        self.local_paused.add(why)

    def resume_local_reading(self, why):
        if why not in self.local_paused or self.local is None or self.local_gone:
            return
        self.local_paused.discard(why)
        if not self.local_paused:           # the local side is read again once no reason is left
            self.local.resume_reading()

    def pause_link_reading(self):
        if not self.link_paused and self.ws_up and not self.ws_gone and self.link.transport is not None:
            self.link_paused = True
            self.link.pause_reading()

    def resume_link_reading(self):
        if self.link_paused and not self.ws_gone and self.link.transport is not None:
            self.link_paused = False
            self.link.resume_reading()

    # -- keep-alive ------------------------------------------------------------------------------
    def _tick(self):
        core = self.core
        self.timer = None
        if self.ws_gone or self.close_sent:
            return
        if self.rx_seen or self.link_paused:
            self.idle = 0.0
        else:
            self.idle += core.ping_interval
            self.link.shrink()
        self.rx_seen = False
        if self.idle >= core.hangup:
            self.link_failed(fail("closed_silent", **self.where()))
            return
        self.link.send(codec.frame(codec.OP_PING))
        self.timer = core.loop.call_later(core.ping_interval, self._tick)

    # -- ends -------------------------------------------------------------------------------------
    def link_failed(self, err):
        """A failure after the upgrade (protocol violation, keep-alive lost): the link is cut."""
        if self.err is None:
            self.err = err
        self._drop_link()
        self._end_local()

    def link_eof(self):
        """The server ended the TCP/TLS stream without a Close frame: a normal end from its side."""
        if not self.ws_gone and not self.close_sent:
            self.remote_closed = True

    def link_lost(self, exc):
        if not self.ws_up:
            return          # the handshake reports its own failures
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.close_sent and not self.ws_gone and not self.core.stopping:
            self.remote_closed = True       # a Close, EOF or reset from the server's side
            if exc is not None and self.err is None:
                self.err = stream_failure(exc, **self.where())
        self.ws_gone = True
        self.link.transport = None
        if self.check is not None:
            self.finished = True
            return
        self._end_local()

    def _end_local(self):
        """The WebSocket is gone: what is buffered goes to the local client, then EOF (unless the
        connection is held)."""
        if self.held:
            return
        if self._may_hold() and self._hold():
            return
        if self.local is not None and not self.local_gone:
            self.local.close()
        elif self.local_gone:
            self._finish()

    def local_lost(self):
        self.local_gone = True
        self.local = None
        if self.held:           # its client stopped waiting: a plain close
            self.held = False
            self.core.held.discard(self)
            self.err, self.remote_closed = None, False
        if self.ws_gone or self.core.stopping:
            self._finish()
            return
        if not self.ws_up:
            if self.task is not None:
                self.task.cancel()  # no one to relay for
            self.ws_gone = True
            self._finish()
            return
        self._local_end_close()

    def _local_end_close(self):
        """Local EOF with the WebSocket open: Close after the data, then wait for the answer."""
        self._send_close(codec.CLOSE_NORMAL)
        if self.link.transport is not None:
            self.core.loop.call_later(CLOSE_WAIT_SECS, self._close_wait_over)

    def _close_wait_over(self):
        if not self.ws_gone and self.link.transport is not None:
            self.link.transport.abort()

    def _finish(self):
        if self.finished:
            return
        self.finished = True
        core = self.core
        core.relays.discard(self)
        core.held.discard(self)
        core.by_id.pop(self.id, None)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        core.stats["open"] -= 1
        if self.err is not None and not self.fail_counted:
            self.fail_counted = True
            core.stats["failures"] += 1
        if not core.stopping:
            core.emit(self, "failed" if self.err is not None else "closed")
        self.pending, self.kept = [], None
        self.pending_text = []
        self.link.parser = None      # it holds this relay's methods: no cycle left to collect

    def abort(self):
        """stop(): cut both sides now, no events."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for transport in (self.local, self.link.transport):
            if transport is not None:
                transport.abort()
