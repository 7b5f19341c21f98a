"""One kept-alive HTTP/1.1 connection to an etcd member's client port, by hand: the JSON
gateway's answers are small and plain, and `http.client` alone costs a command a third of
what gRPC does to import. Whatever is not a usable answer raises NoAnswer."""

from __future__ import annotations

import contextlib
import socket

# The largest answer read: etcd's own request limit is 1.5 MiB, a page is far less.
MAX_ANSWER = 64 * 1024 * 1024


class NoAnswer(Exception):
    """The gateway gave no usable answer: the request goes over gRPC instead."""


class Connection:
    """One kept-alive HTTP/1.1 connection to one member's client port."""

    def __init__(self, sock: socket.socket, netloc: str) -> None:
        self.sock = sock
        self.netloc = netloc
        self.reader = sock.makefile("rb")
        self.used = False

    def request(self, method: str, path: str, body: bytes, token: str | None) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}", "Accept: */*"]
        if token is not None:
            head.append(f"Authorization: {token}")
        if body:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.used = True
        status_line = self.reader.readline(65536)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise NoAnswer(f"not an HTTP answer: {status_line[:80]!r}")
        headers: dict[bytes, bytes] = {}
        while (line := self.reader.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), self._body(headers)

    def _body(self, headers: dict[bytes, bytes]) -> bytes:
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            chunks, total = [], 0
            while size := int(self.reader.readline(1024).split(b";")[0].strip() or b"0", 16):
                total += size
                if total > MAX_ANSWER:
                    raise NoAnswer("answer too large")
                chunks.append(self._exactly(size))
                self.reader.readline(1024)
            while self.reader.readline(65536) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(headers.get(b"content-length", b"0"))
        if length > MAX_ANSWER:
            raise NoAnswer("answer too large")
        return self._exactly(length)

    def _exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise NoAnswer("the connection closed mid-answer")
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()
