"""Stable shards of the account book: one backfill's accounts split into units of work that run as
parallel steps, on any machine.

An account's shard is a hash of its id, so it stays in the same shard from run to run and machine to
machine, whatever order a listing returns; no id format is assumed (any string hashes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

MAX_SHARDS = 256
"""Each shard is a step of every transactions run: more steps than this buys scheduling overhead."""


def shard_of(account_id: str, count: int) -> int:
    """``account_id``'s shard among ``count``: the first 8 bytes of its BLAKE2b hash, modulo ``count``
    (Python's ``hash`` differs between processes)."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(f"no shard {self.index} of {self.count} (1 to {MAX_SHARDS} shards)")

    @property
    def name(self) -> str:
        """``2-of-4``: for step keys and directories."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"shard {self.index + 1} of {self.count}"

    def accounts(self, account_ids: Iterable[str]) -> list[str]:
        """The accounts of ``account_ids`` that fall in this shard, in their given order."""
        if self.count == 1:
            return list(account_ids)
        return [a for a in account_ids if shard_of(a, self.count) == self.index]


def all_shards(count: int) -> list[Shard]:
    return [Shard(index, count) for index in range(count)]
