/* Chat widget loader: see docs/widget.md. No globals, no dependencies, < 2 KiB gzipped. */
(function () {
  "use strict";
  var d = document, w = window, s = d.currentScript, T = "chat-widget";
  var token = s && s.getAttribute("data-embed-token");
  if (!token || d.querySelector("[data-" + T + "]")) return;
  var base = new URL(s.src).origin, sidKey = "cw_sid_" + token, openKey = "cw_open_" + token;
  var title = s.getAttribute("data-title"), name = s.getAttribute("data-customer-name");
  var frame, ready, open = false, queue = [];
  var btn = d.createElement("button"), badge = d.createElement("span");

  // Storage may throw (privacy modes): then no memory.
  function get(a, k) { try { return w[a].getItem(k); } catch (e) {} }
  function set(a, k, v) { try { w[a].setItem(k, v); } catch (e) {} }

  var uh = s.getAttribute("data-user-hash"), it = s.getAttribute("data-identity-token");
  var sid = s.getAttribute("data-user-id") || get("localStorage", sidKey);
  if (!sid) {
    sid = Array.prototype.map.call(crypto.getRandomValues(new Uint8Array(16)), function (x) {
      return (x + 256).toString(16).slice(1);
    }).join("");
    set("localStorage", sidKey, sid);
  }

  function q(k, v) { return v ? "&" + k + "=" + encodeURIComponent(v) : ""; }

  function css(el, rules) {
    el.style.cssText = "position:fixed;right:20px;z-index:2147483647;border:0;" + rules;
  }
  css(btn, "bottom:20px;width:56px;height:56px;padding:0;border-radius:50%;background:#1f6feb;" +
    "cursor:pointer;box-shadow:0 4px 16px rgba(0,0,0,.25)");
  badge.style.cssText = "position:absolute;top:-4px;right:-4px;min-width:20px;padding:0 6px;" +
    "box-sizing:border-box;border-radius:10px;background:#d92d20;color:#fff;font:600 12px/20px sans-serif;display:none";
  btn.type = "button";
  btn.setAttribute("data-" + T, "launcher");
  badge.setAttribute("data-" + T, "badge");

  function paint() {
    btn.innerHTML = '<svg width="26" height="26" viewBox="0 0 24 24" fill="none" stroke="#fff" ' +
      'stroke-width="2.2" stroke-linecap="round" aria-hidden="true"><path d="' +
      (open ? "M6 6l12 12M18 6L6 18" : "M4 5h16v11H8l-4 4z") + '"/></svg>';
    btn.appendChild(badge);
    btn.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    btn.setAttribute("aria-expanded", open);
  }

  function post(m) {
    m.target = T;
    if (ready) frame.contentWindow.postMessage(m, base);
    else queue.push(m);
  }

  function show(v) {
    if (v === open || (!v && !frame)) return;
    open = v;
    if (!frame) {
      // Made on first open: nothing heavy for visitors who never chat.
      frame = d.createElement("iframe");
      frame.title = "Chat";
      frame.setAttribute("data-" + T, "frame");
      frame.src = base + "/chat-widget?embed_token=" + encodeURIComponent(token) +
        q("session_id", sid) + q("user_hash", uh) + q("identity_token", it) +
        q("customer_name", name) + q("title", title);
      css(frame, "bottom:88px;width:380px;height:560px;max-width:calc(100vw - 40px);" +
        "max-height:calc(100vh - 108px);border-radius:12px;box-shadow:0 8px 32px rgba(0,0,0,.18);background:#fff");
      frame.addEventListener("load", function () {
        frame.contentWindow.postMessage({ target: T, type: "hello" }, base);
      });
      d.body.appendChild(frame);
    }
    frame.style.display = v ? "block" : "none";
    set("sessionStorage", openKey, v ? "1" : "");
    paint();
    post({ type: v ? "open" : "close" });
  }

  w.addEventListener("message", function (e) {
    var m = e.data || {}, t = m.type;
    if (e.source === w && m.target === T) {
      // From the host page itself, not from other frames.
      if (t === "set_customer_name") {
        name = String(m.name || "");
        if (frame) post({ type: t, name: name });
      } else if (t === "open" || t === "close" || t === "toggle") {
        show(t === "toggle" ? !open : t === "open");
      }
    } else if (frame && e.source === frame.contentWindow && e.origin === base && m.source === T) {
      if (t === "ready") {
        ready = true;
        while (queue.length) post(queue.shift());
      } else if (t === "opened" || t === "closed") {
        show(t === "opened");
      } else if (t === "unread") {
        badge.textContent = m.count > 99 ? "99+" : m.count;
        badge.style.display = m.count > 0 ? "block" : "none";
      }
    }
  });

  function start() {
    btn.onclick = function () { show(!open); };
    paint();
    d.body.appendChild(btn);
    // Stays open across the site's pages (same tab).
    if (get("sessionStorage", openKey)) show(true);
  }
  if (d.body) start();
  else d.addEventListener("DOMContentLoaded", start);
})();
