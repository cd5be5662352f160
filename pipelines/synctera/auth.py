"""The API key, kept out of every repr, log line and error text."""

from __future__ import annotations

from collections.abc import Generator

import httpx

MASK = "****"


class ApiKey:
    """A Synctera API key. ``str()`` and ``repr()`` show only a mask; ``reveal()`` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("the Synctera API key is empty: set SYNCTERA_API_KEY")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by a mask."""
        return text.replace(self._value, MASK) if self._value in text else text

    def __repr__(self) -> str:
        return f"ApiKey('{MASK}')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an ApiKey is not picklable: pass it through the environment instead")


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <key>`` to each request as it is sent (never stored on the client)."""

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return f"BearerAuth({self._key!r})"
