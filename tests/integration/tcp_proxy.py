"""A loopback TCP proxy a test can cut, as a network partition would cut a service away.

`cut()` closes every live connection and stops listening, so new connections are refused;
`restore()` listens again on the same port. Bytes are forwarded unchanged in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib

from worker.infra.processes import LOCALHOST, free_port

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_port: int, port: int = 0) -> None:
        self._target_port = target_port
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()

    @property
    def cut_off(self) -> bool:
        return self._server is None

    async def restore(self) -> None:
        """Listen again (on the same port); a no-op while listening."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, LOCALHOST, self.port, reuse_address=True)

    async def cut(self) -> None:
        """Refuse new connections and drop every live one, both sides at once."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _abort(writer)
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(LOCALHOST, self._target_port)
        except OSError:
            _abort(client)
            return
        if self.cut_off:  # cut while we were connecting
            _abort(client)
            _abort(upstream)
            return
        self._writers.update((client, upstream))
        for reader, writer, other in ((client_reader, upstream, client), (upstream_reader, client, upstream)):
            pipe = asyncio.create_task(self._pipe(reader, writer, other))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closed: close both, as a connection through a dead link would end.
            for end in (writer, other):
                self._writers.discard(end)
                _abort(end)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once, with a reset rather than an orderly FIN: what a cut link looks like."""
    with contextlib.suppress(OSError, RuntimeError):
        writer.transport.abort()
