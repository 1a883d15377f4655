/* The Socket.IO connection (the official socket.io-client, window.io): acks with a timeout,
 * the connection state, and the contract's events handed to the modules that show them. */
import { ChatSeqGaps } from "../seqgap.js";
import { api, ApiError } from "./api.js";
import { ACK_TIMEOUT_MS, app, state } from "./state.js";
import { $, toast } from "./ui.js";

export const socket = window.io({ withCredentials: true });

export const gaps = new ChatSeqGaps({
  fetchAfter: function (seq) {
    var id = state.current;
    return api(
      "/api/conversations/" + encodeURIComponent(id) + "/messages?after_seq=" + seq + "&limit=200",
    ).then(function (page) {
      return id === state.current ? page : [];
    });
  },
  deliver: function (m) {
    app.onMessage(m);
  },
});

export function emitAck(event, data) {
  var timed = socket.timeout(ACK_TIMEOUT_MS);
  var sent = data === undefined ? timed.emitWithAck(event) : timed.emitWithAck(event, data);
  return sent.then(
    function (ack) {
      if (ack && ack.error) throw new ApiError(ack.error.message, 0, ack.error.code);
      return ack;
    },
    function () {
      throw new ApiError("The server did not answer; check your connection.", 0, "timeout");
    },
  );
}

export function setConnection(stateName, label) {
  var node = $("#connection");
  node.dataset.state = stateName;
  node.textContent = label;
}

var connections = 0;
socket.on("connect", function () {
  setConnection("online", "Connected");
  document.body.dataset.connections = String(++connections);
  Promise.all([emitAck("join_queue"), emitAck("join_org_presence")])
    .then(function (acks) {
      state.online = new Set(acks[1].online || []);
      app.renderTeam();
      return app.loadList();
    })
    .then(function () {
      // After a reconnect: catch up on what the open conversation missed.
      if (state.current) return app.joinCurrent();
      return null;
    })
    .then(function () {
      document.body.dataset.ready = "true";
    })
    .catch(function (err) {
      toast(err.message);
    });
});

socket.on("disconnect", function () {
  document.body.dataset.ready = "false";
  setConnection("offline", "Reconnecting…");
  app.showTyping(null);
});

socket.on("connect_error", function (err) {
  setConnection("offline", "Reconnecting…");
  // socket.io-client gives up after the server refuses a handshake; "unavailable" (the
  // database or Redis is down for a moment) is worth trying again.
  var data = err && err.data;
  if (data && data.code === "unavailable" && !socket.active) {
    setTimeout(
      function () {
        socket.connect();
      },
      Math.max(1000, data.retry_after_ms || 0),
    );
  }
});

socket.on("conversation_updated", function (e) {
  app.queueOr(app.applyUpdated, e);
});
socket.on("conversation_assigned", function (e) {
  app.queueOr(app.applyAssigned, e);
});
socket.on("conversation_resolved", function (e) {
  app.queueOr(app.applyResolved, e);
});
socket.on("message_received", function (m) {
  app.onMessage(m);
});
// Moderation flagged a visitor's message (agents only: the visitor is not told).
socket.on("message_flagged", function (e) {
  app.onFlagged(e);
});
// After a fan-out outage the server announces each conversation's head seq.
socket.on("conversation_head", function (e) {
  if (e && e.conversation_id === state.current) gaps.head(e.last_seq);
});
socket.on("typing_indicator", function (e) {
  if (e.conversation_id === state.current) app.showTyping(e.sender_type);
});
socket.on("typing_cleared", function (e) {
  if (e.conversation_id === state.current) app.showTyping(null);
});
socket.on("agent_status_changed", function (e) {
  if (e.status === "online") state.online.add(e.agent_id);
  else state.online.delete(e.agent_id);
  if (!state.team.has(e.agent_id)) app.loadTeam();
  app.renderTeam();
});
