"""``host:port`` strings as Go's ``net`` package reads and prints them, with Go's error texts.

One deliberate difference: an empty host (``""`` or ``":8080"``) means 127.0.0.1 here, where Go means
every interface. The embedded server is a local test tool and must not open ports to the network unless
an address says so (``0.0.0.0:8080`` still binds everywhere).
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["DEFAULT_HOST", "AddressError", "format_address", "resolve", "split_host_port"]

DEFAULT_HOST = "127.0.0.1"


class AddressError(ValueError):
    """An address Go would refuse; the message is Go's (``address x: missing port in address``)."""


def split_host_port(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``: ``[::1]:80`` → ``("::1", "80")``."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise AddressError(f"address {address}: missing ']' in address")
        rest = address[end + 1:]
        if not rest.startswith(":"):
            raise AddressError(f"address {address}: missing port in address")
        return address[1:end], rest[1:]
    if ":" not in address:
        raise AddressError(f"address {address}: missing port in address")
    host, _, port = address.rpartition(":")
    if ":" in host:
        raise AddressError(f"address {address}: too many colons in address")
    return host, port


def _port(port: str) -> int:
    if port == "":
        return 0
    if not port.isdigit():
        raise AddressError(f"lookup tcp/{port}: unknown port")
    value = int(port)
    if value > 65535:
        raise AddressError(f"address {port}: invalid port")
    return value


def resolve(address: str) -> tuple[str, int]:
    """The IP and port ``address`` names (a host name resolves to its first IPv4 address, as Go listens).

    An empty address is port 0 on the default host, as Go's resolver reads it.
    """
    if not address:
        return DEFAULT_HOST, 0
    host, port_text = split_host_port(address)
    port = _port(port_text)
    if not host:
        return DEFAULT_HOST, port
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise AddressError(f"lookup {host}: no such host") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0]), port


def format_address(ip: str, port: int) -> str:
    """Go's ``JoinHostPort``: IPv6 in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
