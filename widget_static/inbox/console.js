/* The console around the inbox: client-side routes in the URL's fragment (#team,
 * #integrations, #bots, #settings; anything else is the inbox, where #<conversation id> opens
 * one) and the pages other than the inbox, built from the admin and profile APIs (the Bots
 * page in bots.js). Admin-only pages and controls are not shown to agents (the server answers
 * them 403 anyway). */
import { el } from "../shared/render.js";
import { api } from "./api.js";
import { loadBots, startBots } from "./bots.js";
import {
  modeLabel,
  renderChannelSettings,
  showIdentity,
  showPush,
  startChannelSettings,
} from "./mobile.js";
import { app, IS_ADMIN, ME, state } from "./state.js";
import { $, toast } from "./ui.js";

const PAGES = ["inbox", "integrations", "bots", "team", "settings"];
const ADMIN_PAGES = ["integrations", "bots"];
const UUID = /^[0-9a-fA-F-]{36}$/;

function routeOf(hash) {
  const name = hash.replace(/^#\/?/, "");
  if (PAGES.includes(name) && (!ADMIN_PAGES.includes(name) || IS_ADMIN)) return { page: name };
  return { page: "inbox", conversation: UUID.test(name) ? name.toLowerCase() : null };
}

function show(route) {
  document.querySelectorAll(".layout[data-page], .console-page[data-page]").forEach((section) => {
    section.hidden = section.dataset.page !== route.page;
  });
  document.querySelectorAll(".console-nav a[data-nav]").forEach((link) => {
    if (link.dataset.nav === route.page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  document.body.dataset.page = route.page;
  if (route.page === "inbox") {
    if (route.conversation) app.openConversation(route.conversation);
  } else {
    LOADERS[route.page]();
  }
}

export function startConsole() {
  document.querySelectorAll("[data-admin-only]").forEach((node) => {
    node.hidden = !IS_ADMIN;
  });
  $("#settings-sign-out").addEventListener("click", () => app.signOut());
  $("#user-form").addEventListener("submit", createUser);
  $("#channel-form").addEventListener("submit", createChannel);
  $("#token-form").addEventListener("submit", createToken);
  $("#api-key-form").addEventListener("submit", createApiKey);
  $("#webhook-form").addEventListener("submit", saveWebhook);
  $("#webhook-cancel").addEventListener("click", stopEditingWebhook);
  $("#webhook-log-refresh").addEventListener("click", () => loadDeliveries());
  startChannelSettings({ reload: loadIntegrations });
  startBots();
  window.addEventListener("hashchange", () => show(routeOf(window.location.hash)));
  show(routeOf(window.location.hash));
}

// ---- Team ------------------------------------------------------------------------------

let teamUsers = [];

// Presence is live: the rows follow agent_status_changed while the page is shown.
function renderTeamRows() {
  $("#team-table tbody").replaceChildren(
    ...teamUsers.map((u) => {
      const online = state.online.has(u.id);
      return el(
        "tr",
        { dataset: { userId: u.id } },
        el("td", { text: u.display_name + (u.id === ME.id ? " (you)" : "") }),
        el("td", { text: u.email || "" }),
        el("td", { text: u.role }),
        el(
          "td",
          { class: "presence", dataset: { status: online ? "online" : "offline" } },
          el("span", { class: "dot", "aria-hidden": "true" }),
          online ? " online" : " offline",
        ),
      );
    }),
  );
}

app.presenceChanged = () => {
  if (document.body.dataset.page === "team") renderTeamRows();
};

function loadTeamPage() {
  const request = IS_ADMIN ? api("/api/admin/users") : api("/api/team");
  return request
    .then((users) => {
      users.forEach((u) => state.team.set(u.id, { ...state.team.get(u.id), ...u }));
      teamUsers = users;
      renderTeamRows();
    })
    .catch((err) => toast(err.message));
}

function createUser(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = Object.fromEntries(new FormData(form));
  api("/api/admin/users", { method: "POST", json: data })
    .then((user) => {
      form.reset();
      toast("Added " + user.display_name + ".", "info");
      return loadTeamPage();
    })
    .catch((err) => toast(err.message));
}

// ---- Integrations ----------------------------------------------------------------------

function revokeButton(token) {
  return el("button", {
    class: "button small",
    type: "button",
    text: "Revoke",
    onclick: () =>
      api("/api/admin/embed-tokens/" + encodeURIComponent(token.id) + "/revoke", { method: "POST" })
        .then(loadIntegrations)
        .catch((err) => toast(err.message)),
  });
}

function loadIntegrations() {
  return Promise.all([
    api("/api/admin/channels"),
    api("/api/admin/embed-tokens"),
    api("/api/admin/api-keys"),
    api("/api/admin/webhooks"),
  ])
    .then(([channels, tokens, keys, hooks]) => {
      renderApiKeys(keys);
      renderWebhooks(hooks);
      renderChannelSettings(channels);
      const select = $("#token-channel");
      // Embed tokens are for web chat channels (apps use a mobile channel's public key).
      select.replaceChildren(
        ...channels
          .filter((c) => c.type === "webchat")
          .map((c) => el("option", { value: c.id, text: c.name })),
      );
      $("#channel-table tbody").replaceChildren(
        ...channels.map((c) =>
          el(
            "tr",
            { dataset: { channelId: c.id } },
            el("td", { text: c.name }),
            el("td", { text: c.type || "" }),
            el("td", { class: "mono", text: c.id }),
            el("td", { class: "identity-mode", text: modeLabel(c.identity) }),
            el(
              "td",
              { class: "actions" },
              hookButton("Verified users", () => showIdentity(c.id)),
              c.type === "mobile_sdk"
                ? hookButton("Push settings", () => showPush(c.id, true))
                : null,
            ),
          ),
        ),
      );
      $("#token-table tbody").replaceChildren(
        ...tokens.map((t) =>
          el(
            "tr",
            { dataset: { tokenId: t.id, revoked: t.revoked_at ? "true" : "false" } },
            el("td", { class: "mono", text: t.token_prefix + "…" }),
            el("td", { text: t.name || "" }),
            el("td", { text: (t.allowed_origins || []).join(", ") || "any site" }),
            el("td", { text: t.revoked_at ? "Revoked" : "Active" }),
            el("td", {}, t.revoked_at ? null : revokeButton(t)),
          ),
        ),
      );
    })
    .catch((err) => toast(err.message));
}

function createChannel(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = Object.fromEntries(new FormData(form));
  api("/api/admin/channels", { method: "POST", json: data })
    .then(() => {
      form.reset();
      return loadIntegrations();
    })
    .catch((err) => toast(err.message));
}

function snippet(token) {
  return (
    '<script\n  src="' +
    window.location.origin +
    '/chat-widget/embed.js"\n' +
    '  data-embed-token="' +
    token +
    '"\n></' +
    "script>"
  );
}

function createToken(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const raw = Object.fromEntries(new FormData(form));
  const body = {};
  if (raw.name) body.name = raw.name;
  if (raw.channel_id) body.channel_id = raw.channel_id;
  const origins = String(raw.allowed_origins || "")
    .split(/[\s,]+/)
    .filter(Boolean);
  if (origins.length) body.allowed_origins = origins;
  api("/api/admin/embed-tokens", { method: "POST", json: body })
    .then((created) => {
      form.reset();
      // Shown once: the server keeps only its hash.
      $("#new-token").hidden = false;
      $("#new-token-value").textContent = created.token;
      $("#new-token-snippet").textContent = snippet(created.token);
      return loadIntegrations();
    })
    .catch((err) => toast(err.message));
}

function revokeKeyButton(key) {
  return el("button", {
    class: "button small",
    type: "button",
    text: "Revoke",
    onclick: () =>
      api("/api/admin/api-keys/" + encodeURIComponent(key.id) + "/revoke", { method: "POST" })
        .then(loadIntegrations)
        .catch((err) => toast(err.message)),
  });
}

function renderApiKeys(keys) {
  $("#api-key-table tbody").replaceChildren(
    ...keys.map((k) =>
      el(
        "tr",
        { dataset: { apiKeyId: k.id, revoked: k.revoked_at ? "true" : "false" } },
        el("td", { class: "mono", text: k.key_prefix + "…" }),
        el("td", { text: k.name }),
        el("td", { text: (k.scopes || []).join(", ") }),
        el("td", {
          text: k.last_used_at ? k.last_used_at.slice(0, 16).replace("T", " ") : "never",
        }),
        el("td", { text: k.revoked_at ? "Revoked" : "Active" }),
        el("td", {}, k.revoked_at ? null : revokeKeyButton(k)),
      ),
    ),
  );
}

function createApiKey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = new FormData(form);
  const body = { name: String(data.get("name") || ""), scopes: data.getAll("scopes") };
  api("/api/admin/api-keys", { method: "POST", json: body })
    .then((created) => {
      form.reset();
      // Shown once: the server keeps only its hash.
      $("#new-api-key").hidden = false;
      $("#new-api-key-value").textContent = created.key;
      return loadIntegrations();
    })
    .catch((err) => toast(err.message));
}

// ---- Webhooks --------------------------------------------------------------------------

const HOOKS = "/api/admin/webhooks";
let editingWebhook = null; // the endpoint the form edits (null: the form adds one)
let loggedWebhook = null; // the endpoint whose delivery log is shown

function hookPath(id, rest) {
  return HOOKS + "/" + encodeURIComponent(id) + (rest || "");
}

function shortTime(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : "";
}

function hookButton(text, onclick) {
  return el("button", { class: "button small", type: "button", text, onclick });
}

function webhookState(h) {
  if (h.enabled) return h.failing_since ? "Failing since " + shortTime(h.failing_since) : "Enabled";
  return h.disabled_reason ? "Disabled: " + h.disabled_reason : "Off";
}

function renderWebhooks(hooks) {
  $("#webhook-table tbody").replaceChildren(
    ...hooks.map((h) =>
      el(
        "tr",
        { dataset: { webhookId: h.id, enabled: h.enabled ? "true" : "false" } },
        el(
          "td",
          { class: "mono" },
          h.url,
          h.description ? el("div", { class: "hint", text: h.description }) : null,
        ),
        el("td", { text: h.event_types.join(", ") }),
        el("td", { class: "webhook-state", text: webhookState(h) }),
        el(
          "td",
          { class: "actions" },
          hookButton("Deliveries", () => showDeliveries(h)),
          hookButton("Send test", () => sendTest(h)),
          hookButton("Edit", () => editWebhook(h)),
          hookButton(h.enabled ? "Turn off" : "Turn on", () =>
            updateWebhook(h, { enabled: !h.enabled }),
          ),
          hookButton("Delete", () => deleteWebhook(h)),
        ),
      ),
    ),
  );
}

function webhookBody(form) {
  const data = new FormData(form);
  return {
    url: String(data.get("url") || "").trim(),
    description: String(data.get("description") || ""),
    event_types: data.getAll("event_types"),
  };
}

function saveWebhook(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const body = webhookBody(form);
  if (editingWebhook) {
    updateWebhook(editingWebhook, body).then((ok) => ok && stopEditingWebhook());
    return;
  }
  api(HOOKS, { method: "POST", json: body })
    .then((created) => {
      form.reset();
      // Shown once: it is not readable later (rotating it makes a new one).
      $("#new-webhook").hidden = false;
      $("#new-webhook-secret").textContent = created.secret;
      return loadIntegrations();
    })
    .catch((err) => toast(err.message));
}

function editWebhook(h) {
  const form = $("#webhook-form");
  editingWebhook = h;
  form.elements.url.value = h.url;
  form.elements.description.value = h.description || "";
  form.querySelectorAll('input[name="event_types"]').forEach((box) => {
    box.checked = h.event_types.includes(box.value);
  });
  $("#webhook-submit").textContent = "Save webhook";
  $("#webhook-cancel").hidden = false;
  form.elements.url.focus();
}

function stopEditingWebhook() {
  editingWebhook = null;
  $("#webhook-form").reset();
  $("#webhook-submit").textContent = "Add webhook";
  $("#webhook-cancel").hidden = true;
}

function updateWebhook(h, changes) {
  return api(hookPath(h.id), { method: "PATCH", json: changes })
    .then(() => loadIntegrations())
    .then(() => true)
    .catch((err) => {
      toast(err.message);
      return false;
    });
}

function deleteWebhook(h) {
  if (!window.confirm("Delete the webhook to " + h.url + " and its delivery log?")) return;
  api(hookPath(h.id), { method: "DELETE" })
    .then(() => {
      if (loggedWebhook && loggedWebhook.id === h.id) {
        loggedWebhook = null;
        $("#webhook-log").hidden = true;
      }
      return loadIntegrations();
    })
    .catch((err) => toast(err.message));
}

function sendTest(h) {
  api(hookPath(h.id, "/test"), { method: "POST" })
    .then(() => {
      toast("A test event is on its way to " + h.url + ".", "info");
      return showDeliveries(h);
    })
    .catch((err) => toast(err.message));
}

function showDeliveries(h) {
  loggedWebhook = h;
  $("#webhook-log").hidden = false;
  $("#webhook-log-url").textContent = h.url;
  return loadDeliveries();
}

function deliveryStatus(d) {
  if (d.status === "pending" && d.attempts > 0) return "retrying";
  return d.status;
}

function loadDeliveries() {
  const h = loggedWebhook;
  if (!h) return Promise.resolve();
  return api(hookPath(h.id, "/deliveries?limit=50"))
    .then((page) => {
      $("#webhook-log-table tbody").replaceChildren(
        ...page.deliveries.map((d) =>
          el(
            "tr",
            { dataset: { deliveryId: String(d.id), status: d.status } },
            el("td", { text: shortTime(d.last_attempt_at || d.created_at) }),
            el("td", { text: d.event }),
            el("td", { class: "delivery-status", text: deliveryStatus(d) }),
            el("td", { text: d.response_code == null ? "—" : String(d.response_code) }),
            el("td", { text: d.latency_ms == null ? "—" : d.latency_ms + " ms" }),
            el("td", { text: String(d.attempts) }),
            el("td", { class: "hint", text: d.last_error || "" }),
            el(
              "td",
              {},
              d.status === "pending"
                ? null
                : hookButton("Redeliver", () =>
                    api(hookPath(h.id, "/deliveries/" + d.id + "/redeliver"), { method: "POST" })
                      .then(loadDeliveries)
                      .catch((err) => toast(err.message)),
                  ),
            ),
          ),
        ),
      );
    })
    .catch((err) => toast(err.message));
}

// ---- Settings --------------------------------------------------------------------------

function loadSettings() {
  return api("/api/me")
    .then((me) => {
      const user = me.user || me;
      $("#profile-name").textContent = user.display_name;
      $("#profile-email").textContent = user.email;
      $("#profile-role").textContent = user.role;
      $("#profile-org").textContent = user.organization_id;
    })
    .catch((err) => toast(err.message));
}

const LOADERS = {
  team: loadTeamPage,
  integrations: loadIntegrations,
  bots: loadBots,
  settings: loadSettings,
};
