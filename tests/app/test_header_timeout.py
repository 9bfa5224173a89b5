"""Issue 14: a client that sends its headers slowly is disconnected (uvicorn has no such timeout)."""

from __future__ import annotations

import socket
import threading
import time

from app.http_server import protocol_with_header_timeout, uvicorn_options


async def _app(scope, receive, send) -> None:  # noqa: ANN001
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(timeout_s: float):  # noqa: ANN202
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, http=protocol_with_header_timeout(timeout_s), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, sock.getsockname()[1]


def test_slow_headers_are_cut_off_and_normal_requests_pass() -> None:
    server, thread, port = _serve(1.0)
    try:
        with socket.create_connection(("127.0.0.1", port)) as fast:
            fast.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert fast.recv(1024).startswith(b"HTTP/1.1 200")
        slow = socket.create_connection(("127.0.0.1", port))
        slow.settimeout(5)
        started = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        closed_at = None
        for _ in range(10):  # one header byte every 0.3 s keeps a plain uvicorn connection open for ever
            try:
                slow.sendall(b"X")
                if slow.recv(1024, socket.MSG_DONTWAIT) == b"":
                    closed_at = time.monotonic() - started
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_at = time.monotonic() - started
                break
            time.sleep(0.3)
        slow.close()
        assert closed_at is not None and 0.9 <= closed_at < 2.5, closed_at
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_uvicorn_options_come_from_the_settings(tmp_path) -> None:  # noqa: ANN001
    from app.settings import Settings

    options = uvicorn_options(Settings(data_dir=tmp_path, header_timeout_s=3, shutdown_timeout_s=7))
    assert options["http"].header_timeout_s == 3 and options["timeout_graceful_shutdown"] == 7
