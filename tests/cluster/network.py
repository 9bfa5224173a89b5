"""The cluster's network: hosts that are Linux network namespaces joined by veth links, or loopback ports.

``NetnsNetwork`` (root, ``ip netns`` allowed; what CI runs): a private "switch" namespace
holds a bridge; each host is a namespace of its own (and a UTS namespace, so its hostname
is its name) with one ``eth0`` veth-linked to the bridge, on a private /24 that nothing else
on the machine routes. The test process joins the bridge through one veth of its own, as a
client on the network. A cut takes the host's switch port down: packets are dropped in both
directions and TCP connections hang, as when a cable is pulled; restoring it lets them go on.

``LoopbackNetwork`` (where namespaces are not allowed): every host is a set of process
groups on 127.0.0.1, and each host reaches each service through a TCP proxy of its own
(asyncio, in this process); a cut stops that host's proxies from moving bytes (connections
hang, nothing is refused) until it is restored. The scenarios run unchanged on either.

Both know which host a process belongs to (``host_of_pid``), so a test can kill the host of
the process that wrote a given row, and both kill a whole host at once (every process it
runs, SIGKILL).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"
PREFIX = "lelpc"  # namespace names: lelpc-{pid}-{host}; a dead pid's leftovers are removed at start


@dataclass(eq=False)  # a host is itself: compared and hashed by identity
class Host:
    """One machine of the cluster: a name, a scratch directory nothing else uses, its processes."""

    name: str
    network: Network
    dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        """Where services on this host listen."""
        return self.network.address_of(self)

    def spawn(self, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        """Start ``command`` on this host (its own session, output to ``log``)."""
        with log.open("ab") as out:
            process = subprocess.Popen(self.network.wrap(self, command), env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def kill(self) -> int:
        """SIGKILL every process of this host, as a power cut would; returns how many there were."""
        return self.network.kill_host(self)


class Network:
    mode = "?"
    client_address = "127.0.0.1"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hosts: dict[str, Host] = {}

    def add_host(self, name: str) -> Host:
        host = Host(name, self, self.root / name)
        host.dir.mkdir(parents=True, exist_ok=True)
        self.hosts[name] = host
        self._create(host)
        return host

    def endpoint(self, client: Host | None, server: Host, port: int) -> tuple[str, int]:
        """The address a process on ``client`` (None: the test itself) dials to reach ``server:port``."""
        raise NotImplementedError

    def address_of(self, host: Host) -> str:
        raise NotImplementedError

    def service_port(self, default: int) -> int:
        """The port a service listens on: its usual one on a host of its own, a free one on loopback
        (127.0.0.1:5432 and :6379 are the machine's shared Postgres and Redis: never bind or reach them)."""
        return default

    def wrap(self, host: Host, command: list[str]) -> list[str]:
        return command

    def cut(self, host: Host) -> None:
        raise NotImplementedError

    def restore(self, host: Host) -> None:
        raise NotImplementedError

    def host_of_pid(self, pid: int) -> Host | None:
        raise NotImplementedError

    def _create(self, host: Host) -> None:
        pass

    def kill_host(self, host: Host) -> int:
        raise NotImplementedError

    def close(self) -> None:
        for host in self.hosts.values():
            self.kill_host(host)


# --- network namespaces -----------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check)


def netns_refusal() -> str | None:
    """Why ``ip netns`` cannot be used here (None: it can)."""
    if os.geteuid() != 0:
        return "not root"
    if not Path(IP).exists():
        return "iproute2 is not installed"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return (done.stderr.strip() or "ip netns add failed")[:200]
    _ip("netns", "del", probe, check=False)
    return None


def remove_leftovers() -> None:
    """Namespaces of earlier runs whose test process is gone (killed before its teardown)."""
    listing = _ip("netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}-(\d+)-\S+)", listing, flags=re.M):
        ns, pid = name
        if not Path(f"/proc/{pid}").exists():
            _ip("netns", "del", ns, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-4", "route", "show", "table", "all", check=False).stdout + _ip("-4", "addr", check=False).stdout
    start = os.getpid() % 200
    for i in range(400):
        net = ipaddress.ip_network(f"10.{200 + (start + i) // 250 % 50}.{(start + i) % 250}.0/24")
        if str(net.network_address)[:-1] not in used:
            return net
    raise RuntimeError("no free private /24 for the cluster network")


class NetnsNetwork(Network):
    mode = "netns"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        remove_leftovers()
        self.tag = f"{PREFIX}-{os.getpid()}"
        self.switch = f"{self.tag}-sw"
        self.subnet = _free_subnet()
        self._addresses = iter(self.subnet.hosts())
        self.client_address = str(next(self._addresses))
        self.root_link = f"lc{os.getpid()}"[:15]
        self._ports: dict[str, str] = {}
        self._address: dict[str, str] = {}
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "client", "netns", self.switch)
        _ip("-n", self.switch, "link", "set", "client", "master", "br0", "up")
        _ip("addr", "add", f"{self.client_address}/{self.subnet.prefixlen}", "dev", self.root_link)
        _ip("link", "set", self.root_link, "up")

    def ns(self, host: Host) -> str:
        return f"{self.tag}-{host.name}"

    def _create(self, host: Host) -> None:
        ns, port = self.ns(host), f"p{len(self._ports)}"
        address = str(next(self._addresses))
        _ip("netns", "add", ns)
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self._ports[host.name], self._address[host.name] = port, address

    def address_of(self, host: Host) -> str:
        return self._address[host.name]

    def endpoint(self, client: Host | None, server: Host, port: int) -> tuple[str, int]:
        return self._address[server.name], port

    def wrap(self, host: Host, command: list[str]) -> list[str]:
        # its own UTS namespace too: socket.gethostname() is the host's name, as on a real machine
        script = 'hostname "$0" && exec "$@"'
        return [IP, "netns", "exec", self.ns(host), "unshare", "--uts", "sh", "-c", script, f"lelp-{host.name}",
                *command]

    def cut(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", self._ports[host.name], "down")

    def restore(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", self._ports[host.name], "up")

    def pids(self, host: Host) -> list[int]:
        return [int(p) for p in _ip("netns", "pids", self.ns(host), check=False).stdout.split()]

    def host_of_pid(self, pid: int) -> Host | None:
        found = _ip("netns", "identify", str(pid), check=False).stdout.strip()
        return next((h for h in self.hosts.values() if self.ns(h) == found), None)

    def kill_host(self, host: Host) -> int:
        killed = 0
        for _ in range(50):
            pids = self.pids(host)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for process in host.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        host.processes.clear()
        return killed

    def close(self) -> None:
        super().close()
        for host in self.hosts.values():
            _ip("netns", "del", self.ns(host), check=False)
        _ip("netns", "del", self.switch, check=False)
        _ip("link", "del", self.root_link, check=False)


# --- loopback ports and per-host proxies ---------------------------------------------------------------


class _Proxy:
    """A TCP forwarder for one (host, service) pair; ``open`` gates every byte it moves."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: tuple[str, int], gate: asyncio.Event) -> None:
        self.loop, self.target, self.gate = loop, target, gate
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.gate.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self.gate.wait()  # bytes read just before a cut wait for the restore
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self.gate.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer))


class LoopbackNetwork(Network):
    mode = "loopback"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="cluster-proxies", daemon=True)
        self._thread.start()
        self._gates: dict[str, asyncio.Event] = {}
        self._proxies: dict[tuple[str, str, int], _Proxy] = {}

    def _call(self, coro):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def _create(self, host: Host) -> None:
        async def make() -> asyncio.Event:
            gate = asyncio.Event()
            gate.set()
            return gate

        self._gates[host.name] = self._call(make())

    def address_of(self, host: Host) -> str:
        return "127.0.0.1"

    def service_port(self, default: int) -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def endpoint(self, client: Host | None, server: Host, port: int) -> tuple[str, int]:
        if client is None or client is server:
            return "127.0.0.1", port
        key = (client.name, server.name, port)
        if key not in self._proxies:
            proxy = _Proxy(self.loop, ("127.0.0.1", port), self._gates[client.name])
            self._call(proxy.start())
            self._proxies[key] = proxy
        return "127.0.0.1", self._proxies[key].port

    def cut(self, host: Host) -> None:
        self.loop.call_soon_threadsafe(self._gates[host.name].clear)

    def restore(self, host: Host) -> None:
        self.loop.call_soon_threadsafe(self._gates[host.name].set)

    def host_of_pid(self, pid: int) -> Host | None:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((h for h in self.hosts.values() if any(p.pid == pgid for p in h.processes)), None)

    def kill_host(self, host: Host) -> int:
        killed = 0
        for process in host.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        host.processes.clear()
        return killed

    def close(self) -> None:
        super().close()
        for proxy in self._proxies.values():
            if proxy.server is not None:
                self.loop.call_soon_threadsafe(proxy.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def make_network(root: Path) -> tuple[Network, str]:
    """Namespaces where allowed, loopback otherwise (``LELP_CLUSTER_NETWORK=loopback|netns`` forces one)."""
    wanted = os.environ.get("LELP_CLUSTER_NETWORK", "auto")
    refusal = netns_refusal() if wanted != "loopback" else "LELP_CLUSTER_NETWORK=loopback"
    if wanted == "netns" and refusal:
        raise RuntimeError(f"LELP_CLUSTER_NETWORK=netns, but ip netns cannot be used: {refusal}")
    if refusal is None:
        return NetnsNetwork(root), "network namespaces joined by veth links"
    return LoopbackNetwork(root), f"loopback ports and per-host proxies (no namespaces: {refusal})"
