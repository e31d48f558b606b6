"""A SCPI session over pyvisa with typed errors: one exchange at a time, replies validated,
pyvisa/socket failures turned into ``DeviceTimeout`` / ``ConnectionLost`` / ``GarbledReply``.

Hardware: a USB (USBTMC) or serial (ASRL) resource through the VISA library the station names
(NI-VISA ``""`` or pyvisa-py ``"@py"``). Simulator: ``TCPIP::127.0.0.1::<port>::SOCKET`` via ``@py``.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pyvisa
from pyvisa import constants
from pyvisa.errors import InvalidSession, VisaIOError

from .errors import ConnectionLost, DeviceConnectionError, DeviceTimeout, GarbledReply

log = logging.getLogger(__name__)

_LOST = {
    constants.StatusCode.error_connection_lost,
    constants.StatusCode.error_io,
    constants.StatusCode.error_resource_not_found,
    constants.StatusCode.error_invalid_object,
}


class ScpiLink:
    def __init__(
        self,
        resource: str,
        name: str,
        *,
        visa_library: str = "@py",
        timeout_ms: int = 2000,
        read_termination: str = "\n",
        write_termination: str = "\n",
        baud_rate: int | None = None,
    ) -> None:
        self.resource = resource
        self.name = name
        self.visa_library = visa_library
        self.timeout_ms = timeout_ms
        self._terms = (read_termination, write_termination)
        self._baud = baud_rate
        self._lock = threading.RLock()
        self._rm: pyvisa.ResourceManager | None = None
        self._inst: Any = None
        self.lost = False

    def open(self) -> None:
        try:
            self._rm = pyvisa.ResourceManager(self.visa_library)
            kwargs: dict[str, Any] = {
                "timeout": self.timeout_ms,
                "read_termination": self._terms[0],
                "write_termination": self._terms[1],
            }
            if self._baud is not None and self.resource.upper().startswith("ASRL"):
                kwargs.update(baud_rate=self._baud, data_bits=8, stop_bits=constants.StopBits.one, parity=constants.Parity.none)
            self._inst = self._rm.open_resource(self.resource, **kwargs)
        except (VisaIOError, OSError, ValueError) as exc:
            raise DeviceConnectionError(self.name, f"cannot open {self.resource}: {exc}") from None
        self.lost = False

    def close(self) -> None:
        with self._lock:
            # the ResourceManager is shared by every session of a VISA library: close only ours
            try:
                if self._inst is not None:
                    self._inst.close()
            except Exception:  # closing a dead session must never mask the real error
                pass
            self._inst = self._rm = None

    def _fail(self, exc: BaseException) -> Exception:
        if isinstance(exc, VisaIOError):
            if exc.error_code == constants.StatusCode.error_timeout:
                if self._peer_closed():
                    self.lost = True
                    return ConnectionLost(self.name, "connection closed by the instrument")
                return DeviceTimeout(self.name, f"no reply within {self.timeout_ms} ms")
            if exc.error_code in _LOST:
                self.lost = True
                return ConnectionLost(self.name, f"connection lost ({exc.abbreviation})")
            return ConnectionLost(self.name, f"I/O error {exc.abbreviation}")
        if isinstance(exc, InvalidSession):
            self.lost = True
            return ConnectionLost(self.name, "session closed")
        if isinstance(exc, UnicodeDecodeError):
            return GarbledReply(self.name, "reply is not text")
        if isinstance(exc, ConnectionRefusedError):
            return DeviceConnectionError(self.name, f"cannot open {self.resource}: connection refused")
        self.lost = True
        return ConnectionLost(self.name, f"connection lost ({type(exc).__name__}: {exc})")

    def _peer_closed(self) -> bool:
        """pyvisa-py reports a TCP socket closed by the instrument as a timeout, not as a lost
        connection: look at the socket itself (other VISA sessions: nothing to look at)."""
        try:
            sock = getattr(self._inst.visalib.sessions[self._inst.session], "interface", None)
        except Exception:  # not a pyvisa-py session
            return False
        if not isinstance(sock, socket.socket):
            return False
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0.0)
            return sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            try:
                sock.settimeout(timeout)
            except OSError:
                pass

    def _check_open(self) -> Any:
        if self._inst is None or self.lost:
            raise ConnectionLost(self.name, "not connected")
        return self._inst

    def write(self, command: str) -> None:
        with self._lock:
            inst = self._check_open()
            log.debug("%s <- %s", self.name, command)
            try:
                inst.write(command)
            except (VisaIOError, InvalidSession, OSError) as exc:
                raise self._fail(exc) from None

    def read(self) -> str:
        with self._lock:
            inst = self._check_open()
            try:
                reply: str = inst.read().strip()
                log.debug("%s -> %s", self.name, reply)
                return reply
            except (VisaIOError, InvalidSession, OSError, UnicodeDecodeError) as exc:
                raise self._fail(exc) from None

    def query(self, command: str) -> str:
        with self._lock:
            self.write(command)
            return self.read()

    def flush_input(self) -> None:
        """Drop whatever the device sent that nobody read (after a garbled exchange)."""
        with self._lock:
            inst = self._check_open()
            old = inst.timeout
            try:
                inst.timeout = 50
                while True:
                    inst.read_raw()
            except (VisaIOError, OSError):
                pass
            finally:
                try:
                    inst.timeout = old
                except Exception:
                    pass


def parse_float(link_name: str, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise GarbledReply(link_name, f"{what}: expected a number, got {text[:40]!r}") from None
