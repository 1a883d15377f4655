/* The chat widget inside the iframe (GET /chat-widget).
 *
 * History from GET /chat-widget/history, then Socket.IO (the official socket.io-client):
 * join_conversation with last_seq on every (re)connect, so the server replays what was missed;
 * messages are placed and deduplicated by seq. A hole in the seqs (or a conversation_head
 * beyond them) is fetched from the history after the last gap-free seq (ChatSeqGaps,
 * seqgap.js), and rejoins start from that seq. Every text a message carries is put in the page
 * with textContent, never as HTML. Sends carry a client_message_id, so the client's retries
 * (socket.io-client `retries`) store a message once. The host page talks to the widget through
 * the loader with postMessage (docs/widget.md). Rich messages are drawn by the renderer the
 * agent app uses too (shared/render.js); a choice the visitor picks is sent as its value and
 * shown as its label. A bot's messages and typing carry the name (and avatar) of the bot that
 * answers under the token (GET /chat-widget/bot), whose commands are offered when the visitor
 * starts a message with "/".
 */
import { ChatSeqGaps } from "../seqgap.js";
import { formatSize, formatTime, randomId, safeUrl } from "../shared/format.js";
import { Choices, renderContent } from "../shared/render.js";

// io: the socket.io-client browser build, a classic script the page loads before this one.

var cfg = document.body.dataset;
var CID = cfg.conversationId,
  EXT = cfg.externalId,
  TOKEN = cfg.embedToken;
var UPLOAD_MAX = Number(cfg.uploadMaxBytes) || 0;
// The proof that this is the site's signed-in user (docs/identity.md), when the site gave one:
// every call about the conversation carries it.
var PROOF = {};
if (cfg.userHash) PROOF.user_hash = cfg.userHash;
if (cfg.identityToken) PROOF.identity_token = cfg.identityToken;
var TYPING_EVERY_MS = 2000;
var framed = window.parent !== window;

function $(sel) {
  return document.querySelector(sel);
}
var log = $(".cw-log"),
  form = $(".cw-compose"),
  input = $(".cw-input");
var typingEl = $(".cw-typing"),
  noticeEl = $(".cw-notice"),
  fileInput = $(".cw-file");
var connEl = $(".cw-conn"),
  closeBtn = $(".cw-close");
var typingWho = typingEl.querySelector("em");

var lastSeq = 0; // the highest seq shown (gaps.gapFree() is the highest without a hole)
var bySeq = {}; // seq -> <li>, to drop copies (history, replay, ack, broadcast)
var pending = []; // own messages sent and not yet stored: {cmid, li, payload}
var isOpen = !framed,
  unread = 0,
  toMark = [];
var hostOrigin = null,
  lastTypingSent = 0,
  joined = false;
var choices = new Choices();
var bot = null; // {id, name, avatar_url, commands} of the bot answering under the token
var gaps = new ChatSeqGaps({
  fetchAfter: function (seq) {
    return fetchHistory(seq);
  },
  deliver: function (m) {
    receive(m, true);
  },
});

// ---- small helpers --------------------------------------------------------------------

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null && text !== "") e.textContent = String(text);
  return e;
}

function notice(text) {
  noticeEl.textContent = text || "";
  noticeEl.hidden = !text;
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}
// The whole last message, its time line included, above the composer.
function scrollDown() {
  log.scrollTop = log.scrollHeight;
}

// ---- host page (through the loader) ---------------------------------------------------

function toHost(type, extra) {
  if (!framed || !hostOrigin) return;
  var m = { source: "chat-widget", type: type };
  for (var k in extra || {}) m[k] = extra[k];
  window.parent.postMessage(m, hostOrigin);
}

function setUnread(n) {
  unread = n;
  toHost("unread", { count: n });
}

function setOpen(v) {
  if (v === isOpen) return;
  isOpen = v;
  if (v) {
    setUnread(0);
    markRead();
    input.focus();
  }
  toHost(v ? "opened" : "closed");
}

function setCustomerName(name) {
  name = String(name || "")
    .trim()
    .slice(0, 200);
  if (!name) return;
  fetch("/chat-widget/conversations", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(
      Object.assign({ embed_token: TOKEN, external_id: EXT, customer_name: name }, PROOF),
    ),
  }).catch(function () {});
}

window.addEventListener("message", function (e) {
  // Only the page that frames us (frame-ancestors limits which sites that can be).
  if (!framed || e.source !== window.parent) return;
  if (hostOrigin && e.origin !== hostOrigin) return;
  var m = e.data;
  if (!m || typeof m !== "object" || m.target !== "chat-widget") return;
  if (m.type === "hello") {
    if (hostOrigin) return;
    hostOrigin = e.origin;
    toHost("ready", { conversation_id: CID });
    if (unread) toHost("unread", { count: unread });
  } else if (m.type === "open") {
    setOpen(true);
  } else if (m.type === "close") {
    setOpen(false);
  } else if (m.type === "set_customer_name") {
    setCustomerName(m.name);
  }
});

if (framed) {
  closeBtn.hidden = false;
  closeBtn.addEventListener("click", function () {
    setOpen(false);
  });
}

// ---- rendering ------------------------------------------------------------------------

// A message from another bot than the token's current one (it was replaced) is "Assistant".
function botName(id) {
  return (bot && (id == null || bot.id === id) && bot.name) || "Assistant";
}

function botLine(id) {
  var who = el("div", "cw-who");
  var src = bot && bot.id === id && safeUrl(bot.avatar_url);
  if (src) {
    var img = el("img", "cw-avatar");
    img.src = src;
    img.alt = "";
    who.appendChild(img);
  }
  who.appendChild(el("span", "cw-name", botName(id)));
  return who;
}

function render(m, label) {
  var mine = m.sender_type === "end_user";
  var li = el("li", "cw-msg " + (mine ? "cw-mine" : "cw-theirs"));
  li.setAttribute("data-type", m.content_type || "text");
  li.setAttribute("data-sender", m.sender_type || "");
  if (m.sender_type === "bot") li.appendChild(botLine(m.sender_id));
  var bubble = el("div", "cw-bubble");
  choices.remember(m);
  bubble.append(
    ...renderContent(m, {
      interactive: true,
      label: label || choices.labelOf(m),
      onChoose: function (chosen, value) {
        sendText(value, chosen);
      },
      onImageLoad: function () {
        if (isOpen) scrollDown();
      },
    }),
  );
  li.appendChild(bubble);
  // Until the ack, the time line says so: the bubble keeps its height when it is stored.
  li.appendChild(el("time", "cw-time", m.created_at ? formatTime(m.created_at) : "Sending…"));
  return li;
}

// Put a stored message where its seq says; own messages still unsent stay last.
function place(li, seq) {
  li.setAttribute("data-seq", seq);
  bySeq[seq] = li;
  gaps.held(seq);
  var kids = log.children,
    i = kids.length - 1;
  while (
    i >= 0 &&
    (!kids[i].hasAttribute("data-seq") || Number(kids[i].getAttribute("data-seq")) > seq)
  )
    i--;
  log.insertBefore(li, i >= 0 ? kids[i].nextSibling : log.firstChild);
}

function settle(p, m) {
  // An own message came back stored: the pending bubble becomes the stored one.
  var i = pending.indexOf(p);
  if (i < 0) return;
  pending.splice(i, 1);
  p.li.classList.remove("cw-pending", "cw-failed");
  p.li.removeAttribute("title");
  var stick = atBottom();
  p.li.querySelector(".cw-time").textContent = formatTime(m.created_at);
  place(p.li, m.seq);
  if (stick) scrollDown();
}

function receive(m, live) {
  if (!m || m.conversation_id !== CID || typeof m.seq !== "number" || bySeq[m.seq]) return;
  lastSeq = Math.max(lastSeq, m.seq);
  var stick = atBottom();
  var own = m.sender_type === "end_user" && m.sender_id === EXT;
  if (own) {
    // The broadcast can come before the ack: adopt the first pending twin.
    for (var i = 0; i < pending.length; i++) {
      var p = pending[i].payload;
      if (p.content === m.content && p.content_type === m.content_type) {
        settle(pending[i], m);
        return;
      }
    }
  }
  place(render(m), m.seq);
  if (m.sender_type !== "end_user") {
    typingEl.hidden = true;
    if (live && !isOpen) setUnread(unread + 1);
    toMark.push(m.id);
    if (isOpen) markRead();
  }
  if (stick || own) scrollDown();
}

// ---- sending --------------------------------------------------------------------------

function emitSend(p) {
  p.li.classList.remove("cw-failed");
  p.li.classList.add("cw-pending");
  socket.emit("send_message", p.payload, function (err, res) {
    if (!err && res && !res.error) {
      if (p.li.hasAttribute("data-seq")) return; // the broadcast came first and settled it
      if (bySeq[res.seq]) {
        // The broadcast was shown as a bubble of its own: keep that one.
        pending.splice(pending.indexOf(p), 1);
        p.li.remove();
      } else {
        lastSeq = Math.max(lastSeq, res.seq);
        settle(p, res);
      }
      return;
    }
    p.li.classList.remove("cw-pending");
    p.li.classList.add("cw-failed");
    p.li.title = ((res && res.error && res.error.message) || "Not sent.") + " Click to retry.";
  });
}

function send(content, type, media, label) {
  var payload = {
    conversation_id: CID,
    content: content,
    content_type: type || "text",
    sender_type: "end_user",
    external_id: EXT,
    client_message_id: randomId(),
  };
  if (media) payload.rich_media = media;
  // Sending clears the typing hint on the server: the next keystroke announces it again.
  lastTypingSent = 0;
  var li = render(payload, label);
  var p = { li: li, payload: payload };
  li.addEventListener("click", function () {
    if (li.classList.contains("cw-failed")) emitSend(p);
  });
  pending.push(p);
  log.appendChild(li);
  scrollDown();
  emitSend(p);
}

/* label: what the visitor picked, when the text is a choice's value. */
function sendText(text, label) {
  text = String(text || "");
  if (text.trim()) send(text, "text", null, label);
}

form.addEventListener("submit", function (e) {
  e.preventDefault();
  var text = input.value;
  if (!text.trim()) return;
  input.value = "";
  grow();
  showCommands();
  sendText(text);
});

input.addEventListener("keydown", function (e) {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});

function grow() {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 120) + "px";
}

// The bot's commands, offered while the message is a "/" and the start of one.
var cmdList = el("ul", "cw-cmds");
cmdList.hidden = true;
form.before(cmdList);

function showCommands() {
  var text = input.value;
  var found = [];
  if (bot && /^\/\S*$/.test(text)) {
    found = (bot.commands || []).filter(function (c) {
      return c.command.indexOf(text.toLowerCase()) === 0;
    });
  }
  cmdList.replaceChildren.apply(
    cmdList,
    found.map(function (c) {
      var b = el("button", "cw-cmd");
      b.type = "button";
      b.append(el("b", "", c.command), " ", el("span", "", c.description));
      b.addEventListener("click", function () {
        input.value = "";
        grow();
        showCommands();
        sendText(c.command);
        input.focus();
      });
      var li = el("li");
      li.appendChild(b);
      return li;
    }),
  );
  cmdList.hidden = !found.length;
}

input.addEventListener("input", function () {
  grow();
  showCommands();
  var now = Date.now();
  if (joined && socket.connected && input.value.trim() && now - lastTypingSent > TYPING_EVERY_MS) {
    lastTypingSent = now;
    // Not volatile: a volatile emit is dropped while the transport is busy writing, which
    // right after a send is most of the time someone starts typing again.
    socket.emit(
      "user_typing",
      {
        conversation_id: CID,
        sender_type: "end_user",
        external_id: EXT,
      },
      function () {},
    );
  }
});

function markRead() {
  if (!toMark.length || !joined || !isOpen) return;
  var ids = toMark.splice(0, 100);
  socket.emit(
    "mark_read",
    {
      conversation_id: CID,
      message_ids: ids,
      sender_type: "end_user",
      external_id: EXT,
    },
    function () {},
  );
  if (toMark.length) markRead();
}

// ---- uploads --------------------------------------------------------------------------

fileInput.addEventListener("change", function () {
  var f = fileInput.files[0];
  fileInput.value = "";
  if (!f) return;
  if (UPLOAD_MAX && f.size > UPLOAD_MAX) {
    notice(f.name + " is too large (at most " + formatSize(UPLOAD_MAX) + ").");
    return;
  }
  var body = new FormData();
  body.append("embed_token", TOKEN);
  body.append("external_id", EXT);
  body.append("conversation_id", CID);
  Object.keys(PROOF).forEach(function (k) {
    body.append(k, PROOF[k]);
  });
  body.append("file", f);
  notice("Uploading " + f.name + "…");
  fetch("/chat-widget/uploads", { method: "POST", body: body })
    .then(function (r) {
      return r.json().then(function (b) {
        if (!r.ok) throw new Error((b.error && b.error.message) || "The upload failed.");
        return b;
      });
    })
    .then(function (u) {
      notice("");
      if (/^image\//.test(u.mime_type)) send("", "image", { url: u.url, alt: u.filename });
      else
        send(u.filename, "file", {
          url: u.url,
          filename: u.filename,
          size: u.size,
          mime_type: u.mime_type,
        });
    })
    .catch(function (err) {
      notice(err.message || "The upload failed.");
    });
});

// ---- the connection -------------------------------------------------------------------

function status(text, state) {
  connEl.textContent = text;
  document.body.setAttribute("data-connection", state);
}

var socket = io({
  // The token this visitor is under: its allowed origins and its revocation apply.
  auth: Object.assign({ embed_token: TOKEN }, PROOF),
  // Sends wait for their ack and are retried (same client_message_id) after a drop.
  ackTimeout: 10000,
  retries: 5,
});

function fetchHistory(afterSeq) {
  var url =
    "/chat-widget/history/" + encodeURIComponent(CID) + "?external_id=" + encodeURIComponent(EXT);
  if (afterSeq != null) url += "&after_seq=" + afterSeq;
  Object.keys(PROOF).forEach(function (k) {
    url += "&" + k + "=" + encodeURIComponent(PROOF[k]);
  });
  return fetch(url).then(function (r) {
    if (!r.ok) throw new Error("history " + r.status);
    return r.json();
  });
}

// The bot's name is on its messages from the first one: the history waits for it (or its
// failure, after which a bot is "Assistant").
var botLoaded = fetch("/chat-widget/bot?embed_token=" + encodeURIComponent(TOKEN))
  .then(function (r) {
    return r.ok ? r.json() : {};
  })
  .then(function (b) {
    bot = (b && b.bot) || null;
  })
  .catch(function () {});

var historyLoaded = Promise.all([fetchHistory(null), botLoaded])
  .then(function (got) {
    var list = got[0];
    // The newest page: gap-free from its first seq.
    if (list.length) gaps.reset(list[0].seq - 1);
    list.forEach(function (m) {
      receive(m, false);
    });
    scrollDown();
  })
  .catch(function () {});

function join() {
  // With last_seq the server first replays every message after it, then live ones.
  socket.emit(
    "join_conversation",
    {
      conversation_id: CID,
      external_id: EXT,
      last_seq: gaps.gapFree(),
    },
    function (err, ack) {
      if (err || !ack || ack.error) {
        status("Chat unavailable", "error");
        return;
      }
      joined = true;
      gaps.head(ack.last_seq);
      status("Online", "online");
      document.body.setAttribute("data-last-seq", lastSeq);
      markRead();
    },
  );
}

socket.on("connect", function () {
  historyLoaded.then(join);
});

socket.on("disconnect", function (reason) {
  joined = false;
  typingEl.hidden = true;
  status("Reconnecting…", "reconnecting");
  // The client reconnects by itself, except after the server closed the socket on purpose.
  if (reason === "io server disconnect")
    setTimeout(function () {
      socket.connect();
    }, 1000);
});

socket.on("message_received", function (m) {
  receive(m, true);
});

// After a fan-out outage the server announces the head seq; what is missing is fetched.
socket.on("conversation_head", function (d) {
  if (d && d.conversation_id === CID) gaps.head(d.last_seq);
});

socket.on("typing_indicator", function (d) {
  if (d && d.conversation_id === CID && d.sender_type !== "end_user") {
    var stick = atBottom();
    typingWho.textContent =
      (d.sender_type === "bot" ? botName(d.sender_id) : "Agent") + " is typing…";
    typingEl.hidden = false;
    if (stick) scrollDown();
  }
});

socket.on("typing_cleared", function (d) {
  if (d && d.conversation_id === CID) typingEl.hidden = true;
});

socket.on("conversation_resolved", function (d) {
  if (d && d.conversation_id === CID) {
    place(
      el("li", "cw-event", "This conversation was closed. Write to start a new one."),
      lastSeq + 0.5,
    );
  }
});
