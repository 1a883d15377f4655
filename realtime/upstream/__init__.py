"""Everything that reaches into python-socketio or python-engineio internals, in one place.

Written against and tested with python-socketio 5.18.1 and python-engineio 4.15.1 (pinned to
those minor versions in pyproject.toml; `.ci/run` runs the transport tests against the newest
releases and reports when they break). Before raising a pin, compare each symbol below with
the new upstream source.

engine.py (python-engineio 4.15.1)
  - engineio.async_socket.AsyncSocket: subclassed as LeanAsyncSocket; __init__ (the queue),
    poll, schedule_ping, handle_post_request (copied: the body read whole; an oversized POST
    closes without waiting) and
    close overridden, _websocket_handler copied and changed.
  - engineio.async_server.async_socket.AsyncSocket: the module attribute python-engineio
    instantiates, replaced by use_lean_sockets().
  - engineio.packet.Packet.encode: overridden by EncodedPacket (encoded once).
  - asyncio.Queue as python-engineio uses it (put, put_nowait, get, get_nowait, qsize, empty,
    task_done, join): reimplemented by OutgoingQueue.

server.py (python-socketio 5.18.1)
  - socketio.AsyncServer._handle_eio_message: copied and changed (ChatServer); relies on
    AsyncServer._binary_packet, ._send_packet, ._handle_connect, ._handle_disconnect,
    ._handle_ack and manager.sid_from_eio_sid.
  - socketio.AsyncServer._handle_event: wrapped (ChatServer).
  - socketio.AsyncServer.manager_initialized and manager.initialize(): ChatServer.start_manager
    does at start-up what _handle_eio_connect does at the first connection.
  - socketio.packet.Packet.decode and .add_attachment: wrapped (ChatPacket); Packet.json
    replaced by _OrjsonModule.

transport.py (python-engineio 4.15.1)
  - engineio.async_drivers.aiohttp.WebSocket.__call__: copied and changed
    (UncompressedWebSocket); installed by realtime/server.py in AsyncServer._async.
  - close_connections: AsyncServer.sockets, AsyncServer.reason and AsyncSocket.close(wait=,
    reason=), with the aiohttp_ws attribute UncompressedWebSocket sets on each socket.

managers.py (python-socketio 5.18.1)
  - socketio.async_manager.AsyncManager (ReplayGateMixin): basic_enter_room, basic_leave_room
    and get_rooms overridden; basic_disconnect copied (callbacks, pending_connect,
    pending_disconnect); emit overridden, its per-recipient tasks replaced by _deliver, which
    uses get_participants, server.packet_class and server.eio.sockets.
  - GatedManager.emit: drops the ignore_queue= keyword socketio.AsyncServer.emit always
    passes, so one process takes _deliver too.
  - socketio.AsyncRedisManager (GatedRedisManager): _publish overridden,
    _redis_listen_with_retries and _listen copied and changed; relies on _redis_connect,
    _get_redis_module, redis, redis_url, redis_options, channel, connected and host_id, and on
    AsyncPubSubManager.emit calling the local emit without keyword arguments. probe() publishes
    with redis and channel directly; _listen takes the probe out before _thread sees it.
"""
