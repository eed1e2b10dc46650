"""Which connection serves each hash slot, for jobs that pipeline commands key by key into a
cluster or a node (the restore loader, the memcached migration).

Each job keeps its own connection class (what it has in flight differs); this map makes one
connection per primary on first use, learns the slot owners from ``CLUSTER SLOTS`` and takes
what ``MOVED`` replies say (:meth:`SlotMap.redirect` reads them), so the jobs route and follow redirects the same way.
"""

from __future__ import annotations

from typing import Callable, Generic, Protocol, TypeVar

from ..errors import EngineError
from ..rdb.checksum import key_slot
from ..rdb.slots import SLOTS
from .address import NodeAddress
from .resp import reply_text


class _Connection(Protocol):
    address: NodeAddress

    def close(self) -> None: ...


C = TypeVar("C", bound=_Connection)


def show_key(key: bytes) -> str:
    """A key as messages name it: printable, cut at 200 bytes."""
    return repr(key[:200])[1:] + ("…" if len(key) > 200 else "")


class SlotMap(Generic[C]):
    """The connections of a job to a cluster's primaries (or to its one node) and the owner of
    each slot. ``connect`` makes a job's connection to an address; a failure closes what was made."""

    def __init__(self, address: NodeAddress, cluster: bool, connect: Callable[[NodeAddress], C],
                 timeout: float) -> None:
        self.address, self.cluster, self.timeout = address, cluster, timeout
        self._connect = connect
        self.conns: dict[str, C] = {}
        self._slots: list[C | None] = []
        try:
            if cluster:
                self._load()
            else:
                self.single = self.at(address)
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        """Slot → connection from CLUSTER SLOTS (every engine with cluster support answers it)."""
        reply = self.address.control(lambda c: c.execute_command("CLUSTER", "SLOTS"), self.timeout)
        slots: list[C | None] = [None] * SLOTS
        for entry in reply:
            conn = self.at_endpoint(reply_text(entry[2][0]), int(entry[2][1]))
            for slot in range(int(entry[0]), int(entry[1]) + 1):
                slots[slot] = conn
        self._slots = slots

    def at(self, address: NodeAddress) -> C:
        """The connection to ``address``, made on first use."""
        conn = self.conns.get(address.endpoint)
        if conn is None:
            conn = self.conns[address.endpoint] = self._connect(address)
        return conn

    def at_endpoint(self, host: str, port: int) -> C:
        """The connection to a node named by CLUSTER SLOTS or a redirect (no host: the same host)."""
        return self.at(self.address.with_endpoint(host or self.address.host, port))

    def owner(self, key: bytes) -> C:
        """The connection to the node that serves ``key``."""
        if not self.cluster:
            return self.single
        slot = key_slot(key)
        conn = self._slots[slot]
        if conn is None:
            raise EngineError(f"slot {slot} of key {show_key(key)} is served by no node of the cluster at "
                              f"{self.address.redacted()}")
        return conn

    def redirect(self, message: str, where: str) -> tuple[str, C]:
        """Where a ``MOVED slot host:port`` or ``ASK slot host:port`` error reply sends the command:
        the code and the connection there. After MOVED the slot's owner is that node from now on.
        ``where`` names the command for the error a reply of another shape gives."""
        parts = message.split()
        try:
            code, slot = parts[0], int(parts[1])
            host, _, port = parts[2].rpartition(":")
            if not (self.cluster and 0 <= slot < SLOTS):  # a node that is no cluster never redirects
                raise ValueError(slot)
            conn = self.at_endpoint(host, int(port))
        except (IndexError, ValueError):
            raise EngineError(f"{where}: unexpected reply {message!r}") from None
        if code == "MOVED":
            self._slots[slot] = conn
        return code, conn

    def primaries(self) -> list[NodeAddress]:
        """The nodes that own slots (the one node when not a cluster)."""
        if not self.cluster:
            return [self.address]
        return list({c.address.endpoint: c.address for c in self._slots if c is not None}.values())

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


__all__ = ["SlotMap", "show_key"]
