"""A second host for the partition benchmark (B12): a network namespace joined to this one by
a veth pair, on a /30 of 198.18.0.0/15 (RFC 2544 benchmarking space), with a partition
switch. Copied from tests/integration/netns.py (the benchmarks import nothing from tests/).

Names and subnets are random and checked against the host, so parallel test runs do not
collide. Only `ip` is run, with argv lists; nothing here reaches beyond the namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import subprocess
from typing import Optional

# 198.18.0.0/15 holds 2**15 blocks of 4 addresses.
BENCHMARK_NET = ipaddress.IPv4Network("198.18.0.0/15")
BLOCKS = BENCHMARK_NET.num_addresses // 4
CREATE_ATTEMPTS = 20


class NetnsUnavailable(Exception):
    """`ip netns add` is not permitted here (not root, or no CAP_SYS_ADMIN)."""


class IpError(Exception):
    """An `ip` command failed; the message quotes its argv and stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS...` and return the result; raise IpError when check and it failed."""
    argv = ["ip", *args]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=30)
    if check and result.returncode != 0:
        raise IpError(f"{argv} exited {result.returncode}: {result.stderr.strip()}")
    return result


def addresses_in_use() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(interface, address/prefix) of every IPv4 address of this namespace (`ip -o addr`)."""
    used = []
    for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            used.append((fields[1], ipaddress.IPv4Interface(fields[fields.index("inet") + 1])))
    return used


def _block_taken(block: ipaddress.IPv4Network, ignore_interface: str = "") -> bool:
    return any(
        name != ignore_interface and (addr.ip in block or block.overlaps(addr.network))
        for name, addr in addresses_in_use()
    )


def _random_block() -> ipaddress.IPv4Network:
    base = int(BENCHMARK_NET.network_address) + 4 * random.randrange(BLOCKS)
    return ipaddress.IPv4Network((base, 30))


class Host:
    """One namespace `name` reachable from here at `ip` (inside) via `host_ip` (our side).

    Create with Host.create(); call destroy() when done, also on failure.
    `link_down()` makes a real partition: packets in both directions are dropped, new
    connections hang in SYN_SENT and open ones stall, until `link_up()`.
    """

    def __init__(self, name: str, block: ipaddress.IPv4Network) -> None:
        self.name = name  # the namespace, also the prefix of both interface names
        self.host_if = f"{name}h"  # our end of the veth pair
        self.ns_if = f"{name}n"  # the end inside the namespace
        hosts = list(block.hosts())
        self.host_ip, self.ip = str(hosts[0]), str(hosts[1])
        self.prefix = block.prefixlen
        self._created: list[str] = []  # what destroy() must remove: "netns", "veth"

    @classmethod
    def create(cls) -> Host:
        """Make a namespace on a free /30; retries on a name or subnet another run took."""
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root (ip netns add)")
        last_error: Optional[Exception] = None
        for _ in range(CREATE_ATTEMPTS):
            block = _random_block()
            if _block_taken(block):
                continue
            host = cls(f"ssp{secrets.token_hex(3)}", block)
            try:
                host._build()
            except IpError as error:
                first_step = not host._created
                host.destroy()
                if first_step and ("not permitted" in str(error)
                                   or "Permission denied" in str(error)):
                    raise NetnsUnavailable(str(error)) from None
                last_error = error  # most likely a name or address race: try another
                continue
            # Two runs may have picked the same block at the same moment: look again.
            if _block_taken(block, ignore_interface=host.host_if):
                host.destroy()
                continue
            return host
        raise IpError(f"no namespace after {CREATE_ATTEMPTS} attempts; last: {last_error}")

    def _build(self) -> None:
        ip("netns", "add", self.name)
        self._created.append("netns")
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
           "netns", self.name)
        self._created.append("veth")
        ip("addr", "add", f"{self.host_ip}/{self.prefix}", "dev", self.host_if)
        ip("-n", self.name, "addr", "add", f"{self.ip}/{self.prefix}", "dev", self.ns_if)
        # With the inside end down our end loses carrier; its route must still be used, or
        # packets for the namespace would take this host's default route out of the machine.
        # (link_down() checks the route too, in case this sysctl is read-only here.)
        try:
            with open(f"/proc/sys/net/ipv4/conf/{self.host_if}/ignore_routes_with_linkdown",
                      "w") as f:
                f.write("0")
        except OSError:
            pass
        ip("link", "set", self.host_if, "up")
        ip("-n", self.name, "link", "set", self.ns_if, "up")
        ip("-n", self.name, "link", "set", "lo", "up")
        # A fixed neighbour entry: without it ARP fails during a partition and connect()
        # gets "No route to host" at once; with it packets just vanish, as across a router.
        mac = json.loads(ip("-j", "-n", self.name, "link", "show", self.ns_if).stdout)[0]
        ip("neigh", "replace", self.ip, "lladdr", mac["address"], "dev", self.host_if,
           "nud", "permanent")

    def exec_argv(self, *argv: str) -> list[str]:
        """argv that runs `argv` inside the namespace (`ip netns exec` execs, keeping the PID)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def link_down(self) -> None:
        """Partition: drop every packet between here and the namespace.

        The inside end goes down, not ours: taking ours down deletes the route to the /30,
        and the kernel would then send the namespace's traffic along the default route.
        """
        ip("-n", self.name, "link", "set", self.ns_if, "down")
        route = ip("-o", "route", "get", self.ip).stdout.split()
        if route[route.index("dev") + 1] != self.host_if:  # never leak test traffic
            self.destroy()
            raise IpError(f"route to {self.ip} left {self.host_if}: {' '.join(route)}")

    def link_up(self) -> None:
        """End the partition (the kernel restores the inside route with the link)."""
        ip("-n", self.name, "link", "set", self.ns_if, "up")

    def destroy(self) -> None:
        """Delete the veth pair and the namespace; safe to call twice, and after failures."""
        if "veth" in self._created:
            # Deleting our end deletes both; done first, so it goes even while a process
            # still holds the namespace open.
            ip("link", "del", self.host_if, check=False)
        if "netns" in self._created:
            ip("netns", "del", self.name, check=False)
        self._created.clear()

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ip={self.ip}, host_ip={self.host_ip})"
