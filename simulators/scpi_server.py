"""A TCP server on 127.0.0.1 that makes a simulated SCPI instrument reachable as
``TCPIP::127.0.0.1::<port>::SOCKET`` (pyvisa-py) or ``socket://127.0.0.1:<port>`` (pyserial).

One client at a time, like a real instrument's port. Every command costs ``latency_s`` of station
time (a real pause on a real clock; on a virtual clock spent while the client waits for a reply, see
``_spend_latency``). Socket time-outs stay real. Injected faults act on the wire: the
connection drops (and the port stops listening, as an unplugged device), a query gets no reply,
a reply is garbage, or a command is refused with an instrument error.
"""

from __future__ import annotations

import logging
import socket
import threading

from .clock import Clock
from .faults import FaultInjector
from .scpi import ScpiInstrument

log = logging.getLogger(__name__)


class ScpiServer:
    def __init__(self, instrument: ScpiInstrument, faults: FaultInjector, name: str = "", clock: Clock | None = None,
                 latency_s: float = 0.0) -> None:
        self.instrument = instrument
        self.clock = clock
        self.latency_s = latency_s
        self._owed_s = 0.0
        self.faults = faults
        self.name = name
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()  # one command at a time, across reconnects
        self._thread = threading.Thread(target=self._serve, name=f"scpi-{name}", daemon=True)
        self.lost = False
        self._conn: socket.socket | None = None

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def start(self) -> ScpiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Blocking accept/recv calls (no polling: no wake-ups that would disturb the timing of
        the harness) are ended by shutting their sockets down."""
        self._stop.set()
        for sock in (self._conn, self._sock):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=2)
        try:
            self._sock.close()
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._stop.is_set() and not self.lost:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                break
            self._conn = conn
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._session(conn)
            self._conn = None
        try:
            self._sock.close()
        except OSError:
            pass

    def _session(self, conn: socket.socket) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("ascii", "replace").strip()
                if not line:
                    continue
                replies = self._handle(line)
                if replies is None:  # connection lost
                    self.lost = True
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if replies:
                    term = self.instrument.terminator
                    try:
                        conn.sendall("".join(r + term for r in replies).encode("ascii", "replace"))
                    except OSError:
                        return

    def _spend_latency(self, replies: bool) -> None:
        """A command takes ``latency_s`` of station time. On a virtual clock the time of a command
        that gets no reply is owed and spent with the next one that does: the client is then
        waiting for the answer, so the clock moves while nothing else reads it (deterministic)."""
        if self.clock is None or self.latency_s <= 0:
            return
        if not self.clock.virtual:
            self.clock.sleep(self.latency_s)
            return
        self._owed_s += self.latency_s
        if replies:
            self.clock.sleep(self._owed_s)
            self._owed_s = 0.0

    def _handle(self, line: str) -> list[str] | None:
        inst = self.instrument
        query = inst.is_query(line)
        kinds = ["connection_lost"]
        if query or inst.replies_to_sets:
            kinds += ["no_reply", "garbage_reply"]
        if not query or inst.replies_to_sets:
            kinds.append("scpi_error")
        with self._lock:
            self._spend_latency(replies=query or inst.replies_to_sets)
            fault = self.faults.next_command(kinds)
            if fault is not None:
                log.info("simulated fault on %s: %s (command %r)", self.name, fault.kind, line)
                if fault.kind == "connection_lost":
                    return None
                if fault.kind == "no_reply":
                    return []
                if fault.kind == "garbage_reply":  # the first reply line arrives corrupted
                    return ["\x15#?~\x7f@@garbage"] + inst.respond(line)[1:]
                return inst.fault_error()
            return inst.respond(line)
