/* The conversation list: the guide's three filters and Bot (a bot answers), live updates from
 * the org queue, the unread count in the tab title. */
import { formatTime, nowIso, visitorName } from "../shared/format.js";
import { el } from "../shared/render.js";
import { api } from "./api.js";
import { app, FILTERS, ME, state } from "./state.js";
import { $, toast } from "./ui.js";

// ---- the conversation list ------------------------------------------------------------

function queueOr(fn, event) {
  if (state.queued) state.queued.push([fn, event]);
  else fn(event);
}

function displayName(conv) {
  return visitorName(conv && conv.end_user);
}

/* As the server's filters: Unassigned waits for a person, which a bot's conversation does not. */
function matches(conv, filter) {
  var s = conv.active_session;
  if (filter === "unassigned") return !!s && !s.assigned_agent_id && s.handled_by !== "bot";
  if (filter === "mine") return !!s && s.assigned_agent_id === ME.id;
  if (filter === "bot") return !!s && s.handled_by === "bot";
  return true;
}

function agentName(id) {
  if (id === ME.id) return "you";
  var member = state.team.get(id);
  return member ? member.display_name : id;
}

/* An open conversation is with the bot, waiting for a person (a bot handed it off),
 * Unassigned or Assigned; one without a session was resolved, unless nothing was ever
 * written in it (opened by the widget, never used): that one is New. */
function statusOf(conv) {
  var s = conv.active_session;
  // Writing or resolving moves updated_at; a conversation only opened keeps its created_at.
  var untouched = conv.updated_at && conv.updated_at === conv.created_at;
  if (!s && untouched && !state.previews.has(conv.id))
    return { key: "new", label: "New · no messages yet" };
  if (!s) return { key: "resolved", label: "Resolved" };
  if (!s.assigned_agent_id && s.handled_by === "bot") return { key: "bot", label: "With the bot" };
  if (!s.assigned_agent_id && s.handed_off_at)
    return { key: "waiting", label: "Waiting for a person" };
  if (!s.assigned_agent_id) return { key: "unassigned", label: "Unassigned" };
  return { key: "assigned", label: "Assigned to " + agentName(s.assigned_agent_id) };
}

function previewText(p) {
  if (!p) return "";
  var text = p.content || "";
  switch (p.content_type) {
    case "image":
      return "Image" + (text ? ": " + text : "");
    case "file":
      return "File" + (text ? ": " + text : "");
    case "quick_button":
      return "Quick buttons" + (text ? ": " + text : "");
    case "dropdown":
      return "Dropdown" + (text ? ": " + text : "");
    case "carousel":
      return "Carousel" + (text ? ": " + text : "");
    default:
      return (
        (p.sender_type === "agent" ? "Agent: " : p.sender_type === "bot" ? "Bot: " : "") + text
      );
  }
}

function loadList() {
  var generation = ++state.listGeneration;
  var filter = state.filter;
  state.queued = state.queued || [];
  return api("/api/conversations/?filter=" + encodeURIComponent(filter) + "&limit=100")
    .then(function (list) {
      if (generation !== state.listGeneration) return;
      var fresh = new Map();
      list.forEach(function (c) {
        fresh.set(c.id, c);
      });
      // The open conversation stays known even when it left the filter.
      if (state.current && !fresh.has(state.current) && state.convs.has(state.current)) {
        fresh.set(state.current, state.convs.get(state.current));
      }
      state.convs = fresh;
      replayQueued();
      renderList();
    })
    .catch(function (err) {
      if (generation === state.listGeneration) replayQueued();
      throw err;
    });
}

function replayQueued() {
  var queued = state.queued || [];
  state.queued = null;
  queued.forEach(function (item) {
    item[0](item[1]);
  });
}

/* Re-read one conversation; when asked again while a read runs, read once more after it,
 * so the last read always started after the last event about it. */
function refreshConversation(id) {
  var running = state.inflight.get(id);
  if (running) {
    running.dirty = true;
    return running.promise;
  }
  var flag = { dirty: false, promise: null };
  state.inflight.set(id, flag);
  function once() {
    flag.dirty = false;
    return api("/api/conversations/" + encodeURIComponent(id)).then(function (conv) {
      state.convs.set(id, conv);
      if (flag.dirty) return once();
      return conv;
    });
  }
  flag.promise = once()
    .catch(function (err) {
      if (err.status !== 404) toast(err.message);
    })
    .then(function () {
      state.inflight.delete(id);
      renderList();
      if (id === state.current) app.renderHeader();
    });
  return flag.promise;
}

/* Whom an agent may take a conversation from: nobody, or its bot. */
function claimable(status) {
  return status.key === "unassigned" || status.key === "waiting" || status.key === "bot";
}

function applyUpdated(e) {
  var id = e.conversation_id;
  if (e.handled_by) {
    // Who answers changed (the bot handed off, or an agent handed it back): no message, so
    // the preview stays; the conversation is read again for its new session state.
    refreshConversation(id);
    return;
  }
  state.previews.set(id, e);
  if (e.sender_type === "end_user" && (id !== state.current || document.hidden)) {
    state.unread.add(id);
  }
  var conv = state.convs.get(id);
  if (!conv || !conv.active_session || state.inflight.has(id)) {
    refreshConversation(id);
  } else {
    conv.updated_at = nowIso();
  }
  renderList();
  updateTitle();
}

function applyAssigned(e) {
  var id = e.conversation_id;
  var conv = state.convs.get(id);
  // Unassigned (assigned_to null) means handed back to its bot: read it again.
  if (e.assigned_to && conv && conv.active_session && !state.inflight.has(id)) {
    conv.active_session.assigned_agent_id = e.assigned_to;
    conv.active_session.handled_by = "agent";
    renderList();
    if (id === state.current) app.renderHeader();
  } else {
    refreshConversation(id);
  }
}

function applyResolved(e) {
  var id = e.conversation_id;
  // Both the REST answer and the event report a resolve: handle each session once.
  var known = state.resolutions.get(id);
  if (known && known.session_id === e.session_id) return;
  state.resolutions.set(id, {
    session_id: e.session_id,
    tags: e.tags || [],
    resolved_at: e.resolved_at,
  });
  state.unread.delete(id);
  var conv = state.convs.get(id);
  if (conv && !state.inflight.has(id)) {
    conv.active_session = null;
    conv.updated_at = e.resolved_at || nowIso();
  } else {
    refreshConversation(id);
  }
  if (id === state.current) {
    app.renderHeader();
    app.addSystemLine("Resolved" + tagsSuffix(e.tags));
  }
  renderList();
  updateTitle();
}

function tagsSuffix(tags) {
  return tags && tags.length ? " with tags: " + tags.join(", ") : "";
}

function renderList() {
  var items = [];
  state.convs.forEach(function (c) {
    if (matches(c, state.filter)) items.push(c);
  });
  items.sort(function (a, b) {
    return String(b.updated_at || "").localeCompare(String(a.updated_at || ""));
  });
  var list = $("#conversation-list");
  list.replaceChildren.apply(list, items.map(renderListItem));
  $("#list-empty").hidden = items.length > 0;
  document.querySelectorAll(".filters [data-filter]").forEach(function (tab) {
    tab.setAttribute("aria-selected", String(tab.dataset.filter === state.filter));
  });
}

function renderListItem(conv) {
  var status = statusOf(conv);
  var unread = state.unread.has(conv.id);
  var classes =
    "conv-item" + (conv.id === state.current ? " active" : "") + (unread ? " unread" : "");
  var open = el(
    "button",
    {
      class: "conv-open",
      type: "button",
      onclick: function () {
        app.openConversation(conv.id);
      },
    },
    el(
      "span",
      { class: "conv-line" },
      el("span", { class: "conv-name", text: displayName(conv) }),
      el("time", { class: "conv-time", text: formatTime(conv.updated_at, true) }),
    ),
    el("span", { class: "conv-preview", text: previewText(state.previews.get(conv.id)) }),
    el("span", { class: "conv-status status-" + status.key, text: status.label }),
    unread ? el("span", { class: "unread-dot", title: "Unread", "aria-label": "unread" }) : null,
  );
  var claimButton = claimable(status)
    ? el("button", {
        class: "button small primary conv-claim",
        type: "button",
        onclick: function () {
          app.claim(conv.id);
        },
        text: "Claim",
      })
    : null;
  return el(
    "li",
    { class: classes, dataset: { id: conv.id, state: status.key } },
    open,
    claimButton,
  );
}

function updateTitle() {
  var n = state.unread.size;
  document.title = n ? "(" + n + ") Inbox" : "Inbox";
}

function setFilter(filter) {
  if (FILTERS.indexOf(filter) < 0 || filter === state.filter) return;
  state.filter = filter;
  var url = new URL(window.location.href);
  url.searchParams.set("filter", filter);
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  renderList();
  loadList().catch(function (err) {
    toast(err.message);
  });
}

Object.assign(app, {
  queueOr,
  displayName,
  matches,
  agentName,
  statusOf,
  claimable,
  previewText,
  loadList,
  replayQueued,
  refreshConversation,
  applyUpdated,
  applyAssigned,
  applyResolved,
  tagsSuffix,
  renderList,
  renderListItem,
  updateTitle,
  setFilter,
});
