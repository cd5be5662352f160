"""The API key, kept out of every repr, log line and error text."""

from __future__ import annotations

from collections.abc import Generator

import httpx

MASK = "****"


class ApiKey:
    """A Synctera API key. ``str()`` and ``repr()`` show only a mask; ``reveal()`` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        # A trailing newline from an env file or a mounted secret is the usual accident: drop it,
        # rather than send a header that the HTTP layer would refuse, quoting the key in its error.
        value = value.strip() if isinstance(value, str) else ""
        if not value:
            raise ValueError("the Synctera API key is empty: set SYNCTERA_API_KEY")
        if not value.isascii() or any(not char.isprintable() or char.isspace() for char in value):
            raise ValueError(
                "the Synctera API key contains whitespace or control characters: check SYNCTERA_API_KEY"
            )
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by a mask."""
        for form in {self._value, repr(self._value)[1:-1]}:  # raw, and as it looks inside a repr
            text = text.replace(form, MASK)
        return text

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
