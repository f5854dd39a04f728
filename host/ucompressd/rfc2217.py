"""Serve a local serial port over the network as rfc2217://host:port (RFC 2217, telnet framing).

A board on another machine is then used like a local one: `ucompressd run --port rfc2217://...`.
The protocol side is pyserial's own `serial.rfc2217.PortManager` (as in pyserial's
examples/rfc2217_server.py); this adds the socket loop, one client at a time, in a background
thread, and modem lines kept in software where the port has none (a pty: the simulated board).
"""

from __future__ import annotations

import argparse
import socket
import threading
from typing import Any

import serial
import serial.rfc2217


class _KeptLines:
    """A serial port whose DTR/RTS/BREAK are only recorded and whose CTS/DSR/CD read asserted.

    Modem-line ioctls fail on a pty, and PortManager sets and polls those lines for every
    client; everything else (baud rate, buffers, reads, writes) goes to the real port.
    """

    _KEPT = ("dtr", "rts", "break_condition")

    def __init__(self, ser: serial.Serial) -> None:
        object.__setattr__(self, "_ser", ser)
        object.__setattr__(self, "_lines", {"dtr": True, "rts": True, "break_condition": False})

    def __getattr__(self, name: str) -> Any:
        lines = object.__getattribute__(self, "_lines")
        if name in lines:
            return lines[name]
        if name in ("cts", "dsr", "cd"):
            return True
        if name == "ri":
            return False
        return getattr(object.__getattribute__(self, "_ser"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._KEPT:
            self._lines[name] = value
        else:
            setattr(self._ser, name, value)


def _has_modem_lines(ser: serial.Serial) -> bool:
    try:
        ser.dtr = ser.dtr
        ser.rts = ser.rts
        _ = ser.cts
        return True
    except (OSError, serial.SerialException):
        return False


class Rfc2217Server:
    """`device_path` served on host:port (port 0: any free one; `.url` names it for clients).

    Use as a context manager, or call start() and close(). One client at a time; the next one
    may connect when it has gone (ucompressd opens a new link per run).
    """

    def __init__(self, device_path: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.device = device_path
        self._ser = serial.serial_for_url(device_path, baudrate=115200, timeout=0.05)
        self.port: Any = self._ser if _has_modem_lines(self._ser) else _KeptLines(self._ser)
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self._lsock.listen(1)
        self._lsock.settimeout(0.2)  # lets the accept loop see close()
        h, p = self._lsock.getsockname()[:2]
        self.url = f"rfc2217://{h}:{p}"
        self._stop = threading.Event()
        self._client: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name=f"rfc2217 {device_path}",
                                        daemon=True)

    def start(self) -> Rfc2217Server:
        self._thread.start()
        return self

    def __enter__(self) -> Rfc2217Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        client = self._client
        if client is not None:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._lsock.close()
        self._ser.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            try:
                self._session(client)
            finally:
                self._client = None
                client.close()

    def _session(self, client: socket.socket) -> None:
        send_lock = threading.Lock()

        class _Conn:  # PortManager answers negotiation through connection.write()
            @staticmethod
            def write(data: bytes) -> None:
                with send_lock:
                    client.sendall(data)

        rfc = serial.rfc2217.PortManager(self.port, _Conn())
        gone = threading.Event()

        def board_to_client() -> None:
            try:
                while not gone.is_set() and not self._stop.is_set():
                    data = self._ser.read(self._ser.in_waiting or 1)
                    if data:
                        _Conn.write(b"".join(rfc.escape(data)))
                    rfc.check_modem_lines()
            except (OSError, serial.SerialException):
                pass
            finally:
                gone.set()
                try:
                    client.shutdown(socket.SHUT_RDWR)  # wakes the recv below
                except OSError:
                    pass

        reader = threading.Thread(target=board_to_client, daemon=True)
        reader.start()
        try:
            while not gone.is_set():
                data = client.recv(4096)
                if not data:
                    break
                out = b"".join(rfc.filter(data))
                if out:
                    self._ser.write(out)
        except (OSError, serial.SerialException):
            pass
        finally:
            gone.set()
            reader.join(timeout=5)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--port", required=True, metavar="DEVICE", help="serial port to share")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    ap.add_argument("--listen", type=int, default=0, metavar="N",
                    help="TCP port (default: any free one)")


def run(ns: argparse.Namespace) -> int:
    """Serve until Ctrl-C; prints the URL clients use, first line of stdout."""
    try:
        server = Rfc2217Server(ns.port, ns.host, ns.listen)
    except (OSError, serial.SerialException) as e:
        from ucompressd.link import PortError

        raise PortError(f"cannot serve {ns.port}: {e}") from None
    with server:
        print(server.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
