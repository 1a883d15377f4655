/* The open conversation: claim, hand back to its bot and resolve, its messages kept gap-free
 * by seq (a hole, or a conversation_head beyond what is shown, is fetched with after_seq;
 * rejoins start from the last gap-free seq), older pages, typing, read receipts, bots' names
 * and moderation's flags. */
import { formatTime, visitorHex, visitorName } from "../shared/format.js";
import { Choices, el, renderContent } from "../shared/render.js";
import { api } from "./api.js";
import { emitAck, gaps, socket } from "./socket.js";
import { app, IS_ADMIN, ME, PAGE_SIZE, state } from "./state.js";
import { $, toast } from "./ui.js";

// ---- claiming and resolving -----------------------------------------------------------

function claim(id) {
  return emitAck("claim_conversation", { conversation_id: id })
    .then(function (ack) {
      var conv = state.convs.get(id);
      if (conv && conv.active_session) {
        conv.active_session.assigned_agent_id = ack.assigned_agent_id;
        conv.active_session.handled_by = "agent";
      }
      app.renderList();
      if (id === state.current) renderHeader();
      else if (!state.current) openConversation(id);
    })
    .catch(function (err) {
      toast(err.message);
      app.refreshConversation(id);
    });
}

/* The bot answers the next message again; the session leaves the agent. */
function handBack() {
  var id = state.current;
  if (!id) return;
  var button = $("#hand-back");
  button.disabled = true;
  api("/api/conversations/" + encodeURIComponent(id) + "/hand-to-bot", { method: "POST" })
    .then(function (conv) {
      state.convs.set(id, conv);
      app.renderList();
      if (id === state.current) renderHeader();
      toast("Handed back to " + botName(conv.active_session && conv.active_session.bot_id), "info");
    })
    .catch(function (err) {
      toast(err.message);
      app.refreshConversation(id);
    })
    .then(function () {
      button.disabled = false;
    });
}

function resolveCurrent(event) {
  event.preventDefault();
  var id = state.current;
  var input = $("#resolve-tags");
  var tags = input.value
    .split(",")
    .map(function (t) {
      return t.trim();
    })
    .filter(Boolean);
  $("#resolve").disabled = true;
  api("/api/conversations/" + encodeURIComponent(id) + "/resolve", {
    method: "POST",
    json: { tags: tags },
  })
    .then(function (res) {
      input.value = "";
      app.applyResolved({
        conversation_id: id,
        session_id: res.session_id,
        tags: res.tags,
        resolved_at: res.resolved_at,
      });
      toast("Resolved" + app.tagsSuffix(res.tags), "info");
    })
    .catch(function (err) {
      toast(err.message);
    })
    .then(function () {
      $("#resolve").disabled = false;
    });
}

// ---- the open conversation ------------------------------------------------------------

function canAct(conv) {
  var s = conv && conv.active_session;
  return IS_ADMIN || !s || !s.assigned_agent_id || s.assigned_agent_id === ME.id;
}

function renderHeader() {
  var conv = state.convs.get(state.current);
  if (!conv) return;
  var status = app.statusOf(conv);
  $("#conv-title").textContent = app.displayName(conv);
  var meta = [status.label];
  if (conv.active_session && conv.active_session.tags && conv.active_session.tags.length) {
    meta.push("tags: " + conv.active_session.tags.join(", "));
  }
  var resolution = state.resolutions.get(conv.id);
  if (!conv.active_session && resolution && resolution.tags.length) {
    meta.push("tags: " + resolution.tags.join(", "));
  }
  if (conv.end_user) meta.push("visitor id " + visitorHex(conv.end_user.external_id));
  $("#conv-meta").textContent = meta.join(" · ");
  renderAttributes(conv);
  $("#conversation-view").dataset.state = status.key;
  $("#claim").hidden = !app.claimable(status);
  var s = conv.active_session;
  $("#hand-back").hidden = !(
    s &&
    s.bot_id &&
    s.handled_by !== "bot" &&
    (s.assigned_agent_id === ME.id || IS_ADMIN)
  );
  $("#resolve-form").hidden = !conv.active_session || !canAct(conv);
  var allowed = canAct(conv);
  $("#composer").classList.toggle("disabled", !allowed);
  Array.prototype.forEach.call($("#composer").elements, function (control) {
    control.disabled = !allowed;
  });
  $("#composer-note").textContent = allowed
    ? conv.active_session
      ? ""
      : "Writing reopens this conversation and assigns it to you."
    : "Assigned to " + app.agentName(conv.active_session.assigned_agent_id) + ".";
}

/* What a bot collected from the visitor (end_user.attributes), e.g. "email: a@b.co". */
function renderAttributes(conv) {
  var attrs = (conv.end_user && conv.end_user.attributes) || {};
  var box = $("#conv-attributes");
  box.replaceChildren.apply(
    box,
    Object.keys(attrs).map(function (key) {
      var value = attrs[key];
      if (value !== null && typeof value === "object") value = JSON.stringify(value);
      return el("span", { class: "conv-attr", dataset: { key: key }, text: key + ": " + value });
    }),
  );
  box.hidden = !box.children.length;
}

function resetMessages() {
  gaps.reset(0);
  state.messages = new Map();
  state.flagged = new Set();
  state.choices = new Choices();
  state.readSent = new Set();
  state.lastSeq = 0;
  state.oldestSeq = null;
  $("#message-list").replaceChildren();
  $("#load-older").hidden = true;
  showTyping(null);
}

function openConversation(id) {
  if (state.current === id) return Promise.resolve();
  var previous = state.current;
  if (previous && socket.connected) {
    socket.emit("leave_conversation", { conversation_id: previous });
  }
  state.current = id;
  resetMessages();
  state.unread.delete(id);
  app.updateTitle();
  if (window.location.hash !== "#" + id) {
    window.history.replaceState(
      null,
      "",
      window.location.pathname + window.location.search + "#" + id,
    );
  }
  $("#placeholder").hidden = true;
  $("#conversation-view").hidden = false;
  $("#conv-title").textContent = state.convs.has(id) ? app.displayName(state.convs.get(id)) : "";
  app.renderList();
  renderHeader();
  // Bot messages are named from the first page on.
  return Promise.all([app.refreshConversation(id), botsLoaded])
    .then(function () {
      if (state.current !== id) return null;
      return api("/api/conversations/" + encodeURIComponent(id) + "/messages?limit=" + PAGE_SIZE);
    })
    .then(function (page) {
      if (!page || state.current !== id) return null;
      // The newest page: gap-free from its first seq.
      gaps.reset(page.length ? page[0].seq - 1 : 0);
      page.forEach(function (m) {
        addMessage(m);
      });
      updateOlderButton();
      scrollToBottom();
      // Joining with last_seq replays whatever was stored after the page we just read,
      // before any live message: nothing falls between history and the room.
      return socket.connected ? joinCurrent() : null;
    })
    .then(markRead)
    .catch(function (err) {
      toast(err.message);
    });
}

function joinCurrent() {
  var id = state.current;
  return emitAck("join_conversation", { conversation_id: id, last_seq: gaps.gapFree() }).then(
    function (ack) {
      if (state.current === id) gaps.head(ack.last_seq);
      return ack;
    },
  );
}

function onMessage(m) {
  if (m.conversation_id !== state.current) return;
  if (m.sender_type === "end_user") showTyping(null);
  var box = $("#messages");
  var nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  if (addMessage(m) && (nearBottom || (m.sender_type === "agent" && m.sender_id === ME.id))) {
    scrollToBottom();
  }
  markRead();
}

/* Messages are keyed by seq: a replayed, acked or re-fetched message is shown once. */
function addMessage(m) {
  if (!m || m.conversation_id !== state.current || state.messages.has(m.seq)) return false;
  state.messages.set(m.seq, m);
  state.lastSeq = Math.max(state.lastSeq, m.seq);
  gaps.held(m.seq);
  state.oldestSeq = state.oldestSeq === null ? m.seq : Math.min(state.oldestSeq, m.seq);
  var node = renderMessage(m);
  var list = $("#message-list");
  var before = null;
  for (var i = 0; i < list.children.length; i++) {
    var child = list.children[i];
    if (child.dataset.seq && Number(child.dataset.seq) > m.seq) {
      before = child;
      break;
    }
  }
  list.insertBefore(node, before);
  return true;
}

function addSystemLine(text) {
  $("#message-list").append(el("li", { class: "system-line", text: text }));
  scrollToBottom();
}

function botName(id) {
  var bot = state.bots.get(id);
  return (bot && bot.name) || "Bot";
}

function senderLabel(m) {
  var conv = state.convs.get(m.conversation_id);
  if (m.sender_type === "end_user") return visitorName(conv ? conv.end_user : null);
  if (m.sender_type === "bot") return botName(m.sender_id);
  return m.sender_id === ME.id ? "You" : app.agentName(m.sender_id);
}

function flagBadge() {
  return el("span", { class: "msg-flag", title: "Flagged by moderation", text: "Flagged" });
}

function renderMessage(m) {
  var mine = m.sender_type === "agent" && m.sender_id === ME.id;
  var flagged = m.flagged === true || state.flagged.has(m.id);
  state.choices.remember(m);
  var bubble = el(
    "div",
    { class: "bubble" },
    ...renderContent(m, { label: state.choices.labelOf(m) }),
  );
  return el(
    "li",
    {
      class: "msg from-" + m.sender_type + (mine ? " mine" : "") + (flagged ? " flagged" : ""),
      dataset: { seq: m.seq, id: m.id, contentType: m.content_type, senderType: m.sender_type },
    },
    el(
      "div",
      { class: "msg-meta" },
      el("span", { class: "msg-sender", text: senderLabel(m) }),
      el("time", {
        class: "msg-time",
        datetime: m.created_at,
        text: formatTime(m.created_at, true),
      }),
      flagged ? flagBadge() : null,
    ),
    bubble,
  );
}

/* message_flagged: moderation flagged a visitor's message (shown, or about to be). */
function onFlagged(e) {
  if (!e || e.conversation_id !== state.current) return;
  state.flagged.add(e.message_id);
  var m = state.messages.get(e.seq);
  if (m && m.id === e.message_id) m.flagged = true;
  var node = $('#message-list .msg[data-id="' + CSS.escape(e.message_id) + '"]');
  if (node && !node.classList.contains("flagged")) {
    node.classList.add("flagged");
    node.querySelector(".msg-meta").append(flagBadge());
  }
}

function updateOlderButton() {
  $("#load-older").hidden = !(state.oldestSeq !== null && state.oldestSeq > 1);
}

/* Older pages by offset: the history skips the `offset` newest messages. Seqs are gap-free
 * from 1, so the messages from the oldest shown to the newest seen are lastSeq-oldest+1. */
function loadOlder() {
  var id = state.current;
  if (!id || state.oldestSeq === null) return;
  var offset = state.lastSeq - state.oldestSeq + 1;
  var button = $("#load-older");
  button.disabled = true;
  api(
    "/api/conversations/" +
      encodeURIComponent(id) +
      "/messages?limit=" +
      PAGE_SIZE +
      "&offset=" +
      offset,
  )
    .then(function (page) {
      if (state.current !== id) return;
      var box = $("#messages");
      var fromBottom = box.scrollHeight - box.scrollTop;
      page.forEach(function (m) {
        addMessage(m);
      });
      box.scrollTop = box.scrollHeight - fromBottom;
      if (!page.length) state.oldestSeq = 1;
      updateOlderButton();
    })
    .catch(function (err) {
      toast(err.message);
    })
    .then(function () {
      button.disabled = false;
    });
}

function scrollToBottom() {
  var box = $("#messages");
  box.scrollTop = box.scrollHeight;
}

function showTyping(senderType) {
  var node = $("#typing");
  if (!senderType) {
    node.hidden = true;
    node.textContent = "";
    delete node.dataset.sender;
    return;
  }
  var conv = state.convs.get(state.current);
  node.dataset.sender = senderType;
  var who =
    senderType === "end_user"
      ? app.displayName(conv)
      : senderType === "bot"
        ? botName(conv && conv.active_session && conv.active_session.bot_id)
        : "A colleague";
  node.textContent = who + " is typing…";
  node.hidden = false;
}

/* Visitor messages on screen are reported read (mark_read), so the widget can show it. */
function markRead() {
  if (document.hidden || !state.current || !socket.connected) return;
  var ids = [];
  state.messages.forEach(function (m) {
    if (m.sender_type !== "end_user" || state.readSent.has(m.id)) return;
    if (m.read_by && m.read_by[ME.id]) return;
    ids.push(m.id);
  });
  if (!ids.length) return;
  ids = ids.slice(-100);
  ids.forEach(function (id) {
    state.readSent.add(id);
  });
  emitAck("mark_read", {
    conversation_id: state.current,
    message_ids: ids,
    sender_type: "agent",
  }).catch(function () {
    /* best effort: a read receipt is not worth an error toast */
  });
}

// The organization's bots, once, for their names (any agent may list them).
var botsLoaded = api("/api/admin/bots")
  .then(function (bots) {
    (bots || []).forEach(function (b) {
      state.bots.set(b.id, b);
    });
    document.querySelectorAll("#message-list .msg.from-bot").forEach(function (node) {
      var m = state.messages.get(Number(node.dataset.seq));
      if (m) node.querySelector(".msg-sender").textContent = senderLabel(m);
    });
  })
  .catch(function () {
    /* unnamed bots read "Bot" */
  });

$("#hand-back").addEventListener("click", handBack);

Object.assign(app, {
  claim,
  handBack,
  onFlagged,
  botName,
  resolveCurrent,
  canAct,
  renderHeader,
  resetMessages,
  openConversation,
  joinCurrent,
  onMessage,
  addMessage,
  addSystemLine,
  senderLabel,
  renderMessage,
  updateOlderButton,
  loadOlder,
  scrollToBottom,
  showTyping,
  markRead,
});
