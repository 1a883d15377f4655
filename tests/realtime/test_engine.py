"""The lean Engine.IO socket (realtime/upstream/engine.py): its outgoing queue keeps asyncio.Queue's
guarantees, its poll batches and ends as python-engineio's does, pings still flow and a silent
peer is still dropped, and an idle websocket holds no task beyond the ones it needs."""

from __future__ import annotations

import asyncio

import aiohttp
import engineio
import pytest
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet

from realtime.upstream.engine import EncodedPacket, LeanAsyncSocket, OutgoingQueue
from rest.keys import SIO

# --- the queue -------------------------------------------------------------------------------


async def test_queue_is_fifo_and_get_waits_for_a_put():
    q = OutgoingQueue()
    for i in range(3):
        q.put_nowait(i)
    assert [await q.get(), q.get_nowait(), await q.get()] == [0, 1, 2]
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    await q.put("late")
    assert await waiting == "late"
    assert q.empty()


async def test_a_get_that_times_out_loses_nothing():
    q = OutgoingQueue()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await q.get()
    q.put_nowait("kept")
    assert await q.get() == "kept"


async def test_a_getter_woken_and_cancelled_at_once_passes_the_item_on():
    q = OutgoingQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait("only")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await second == "only"
    assert first.cancelled()


async def test_join_waits_until_every_taken_item_is_done():
    q = OutgoingQueue()
    q.put_nowait("a")
    q.put_nowait("b")
    joined = asyncio.create_task(q.join())
    await q.get()
    q.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    await q.get()
    q.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        q.task_done()


# --- the socket's poll -----------------------------------------------------------------------


def lean_socket(ping_interval=25, ping_timeout=20) -> LeanAsyncSocket:
    server = engineio.AsyncServer(
        async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=ping_timeout
    )
    return LeanAsyncSocket(server, "sid")


def msg(text: str) -> eio_packet.Packet:
    return eio_packet.Packet(eio_packet.MESSAGE, text)


async def test_poll_sends_what_is_queued_at_once_and_stops_at_the_end_marker():
    s = lean_socket()
    a, b, c = msg("a"), msg("b"), msg("c")
    for item in (a, b, None, c):
        s.queue.put_nowait(item)
    assert await s.poll() == [a, b]
    # As python-engineio: the end marker goes back behind what followed it.
    assert await s.poll() == [c]
    assert await s.poll() == []
    await asyncio.wait_for(s.queue.join(), 1)  # every packet handed out was marked done


async def test_poll_with_nothing_to_send_times_out_as_queue_empty():
    s = lean_socket(ping_interval=0.01, ping_timeout=0.01)
    with pytest.raises(eio_exceptions.QueueEmpty):
        await s.poll()


async def test_ping_is_queued_after_the_interval_and_not_after_close():
    s = lean_socket(ping_interval=0.01)
    s.schedule_ping()
    pkt = await asyncio.wait_for(s.queue.get(), 2)
    assert pkt.packet_type == eio_packet.PING
    assert s.last_ping is not None  # the pong deadline runs from now

    closed = lean_socket(ping_interval=0.01)
    closed.schedule_ping()
    closed.closed = True
    await asyncio.sleep(0.05)
    assert closed.queue.empty()


# --- on the real server ----------------------------------------------------------------------


async def open_websocket(http: aiohttp.ClientSession, server) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(server.base_url + "/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str()).startswith("0{")
    return ws


async def test_pings_flow_while_answered_and_a_silent_peer_is_dropped(server):
    eio = server.app[SIO].eio
    eio.ping_interval, eio.ping_timeout = 0.2, 0.2
    async with aiohttp.ClientSession() as http:
        ws = await open_websocket(http, server)
        for _ in range(3):
            assert await asyncio.wait_for(ws.receive_str(), 5) == "2"  # ping
            await ws.send_str("3")  # pong
        # Stop answering: the server ends the connection.
        while True:
            message = await asyncio.wait_for(ws.receive(), 5)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
            assert message.data in ("2", "1")  # a last ping, or Engine.IO's close packet
        await ws.close()
    for _ in range(50):
        if not eio.sockets:
            break
        await asyncio.sleep(0.1)
    assert not eio.sockets


async def test_an_idle_websocket_costs_no_task_beyond_its_reader_and_writer(server):
    """aiohttp runs the connection and the request (2 tasks) and the socket has one writer.
    python-engineio's own socket also keeps a ping task and a read task per connection."""
    n = 8
    async with aiohttp.ClientSession() as http:
        first = await open_websocket(http, server)  # starts Engine.IO's one service task
        await asyncio.sleep(0.1)
        before = asyncio.all_tasks()
        sockets = [await open_websocket(http, server) for _ in range(n)]
        await asyncio.sleep(0.1)
        new = asyncio.all_tasks() - before
        for ws in [first, *sockets]:
            await ws.close()
    assert len(new) <= 3 * n, sorted(str(t.get_coro()) for t in new)


def test_an_encoded_packet_encodes_as_python_engineio_does():
    for data in ('2["message_received",{"seq":1}]', b"\x00\x01binary"):
        ours, theirs = EncodedPacket(eio_packet.MESSAGE, data), msg(data)
        assert ours.encode() == theirs.encode()
        assert ours.encode(b64=True) == theirs.encode(b64=True)  # long-polling's encoding
