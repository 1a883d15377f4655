/* The Integrations page's settings of each channel (owners and admins): verified users (the
 * channel's identity mode, its secret, and the code the customer's server and page or app
 * need to prove who a user is), and the Mobile SDK section (mobile channels' ids and public
 * keys, push credentials for FCM and APNs, the preview setting, a test push and the push
 * delivery log). Credentials go to the server and never come back: the page shows what the
 * server summarises of them. Every text from the server is put in the page as text. */
import { el } from "../shared/render.js";
import { api } from "./api.js";
import { $, toast } from "./ui.js";

let channels = []; // GET /api/admin/channels, as last loaded
let identityChannel = null; // the channel id the verification form shows
let identity = null; // its settings, as GET .../identity answers
let pushChannel = null; // the mobile channel id whose push settings are shown
let push = null; // its settings, as GET .../push answers
let shownPush = null; // the channel id the push forms were last prepared for
let logBefore = null; // next_before of the delivery log's last page
let reload = () => Promise.resolve();

const TURN_ON =
  "Turn verification on? From now on every visitor and app user of this channel without " +
  "a valid proof is refused.";
const ROTATE =
  "Make a new identity secret? Proofs made with the current one are refused from now on, " +
  "until your server uses the new one.";
const NO_SECRET_HERE = "Your server only: never in a web page, an app or a repository.";

function channelPath(id, rest) {
  return "/api/admin/channels/" + encodeURIComponent(id) + (rest || "");
}

function channelById(id) {
  return channels.find((c) => c.id === id) || null;
}

function shortTime(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : "";
}

function button(text, onclick, props) {
  return el("button", { class: "button small", type: "button", text, onclick, ...props });
}

function copy(text) {
  if (!navigator.clipboard) {
    toast("Copying is not available here: select the text and copy it.");
    return;
  }
  navigator.clipboard.writeText(text).then(
    () => toast("Copied.", "info"),
    () => toast("Could not copy: select the text and copy it."),
  );
}

function copyButton(node) {
  return button("Copy", () => copy(node.textContent), { dataset: { copy: "" } });
}

function showError(selector, message) {
  const box = $(selector);
  box.textContent = message || "";
  box.hidden = !message;
}

export function modeLabel(identitySettings) {
  const s = identitySettings || { mode: "off" };
  if (s.mode === "hmac") return "HMAC user hash";
  if (s.mode === "jwt") return "JWT (" + (s.jwt_algorithm || "HS256") + ")";
  return "Off";
}

// ---- The page's entry points -------------------------------------------------------------

export function startChannelSettings(options) {
  reload = options.reload;
  $("#identity-channel").addEventListener("change", (e) => selectIdentity(e.target.value));
  $("#identity-form").addEventListener("submit", saveIdentity);
  $("#identity-mode").addEventListener("change", syncIdentityFields);
  $("#identity-algorithm").addEventListener("change", syncIdentityFields);
  $("#identity-secret-copy").addEventListener("click", () =>
    copy($("#identity-secret").textContent),
  );
  $("#identity-rotate").addEventListener("click", rotateSecret);
  $("#identity-prepare").addEventListener("click", () =>
    drawSecret("A secret: put it on your server, then turn verification on."),
  );
  $("#mobile-channel-form").addEventListener("submit", createMobileChannel);
  $("#push-preview").addEventListener("change", savePreview);
  $("#fcm-form").addEventListener("submit", saveFcm);
  $("#apns-form").addEventListener("submit", saveApns);
  $("#fcm-replace").addEventListener("click", () => editCredentials("fcm", true));
  $("#apns-replace").addEventListener("click", () => editCredentials("apns", true));
  $("#fcm-cancel").addEventListener("click", () => editCredentials("fcm", false));
  $("#apns-cancel").addEventListener("click", () => editCredentials("apns", false));
  $("#fcm-remove").addEventListener("click", () => removeCredentials("fcm"));
  $("#apns-remove").addEventListener("click", () => removeCredentials("apns"));
  $("#push-test-form").addEventListener("submit", sendTestPush);
  $("#push-log-refresh").addEventListener("click", () => loadPushLog(false));
  $("#push-log-older").addEventListener("click", () => loadPushLog(true));
  document.querySelectorAll("#mobile-panel input[type=file][data-fills]").forEach((input) => {
    input.addEventListener("change", () => loadFile(input));
  });
}

/* The channels as the page last loaded them: the selects and tables follow; the channel
 * shown keeps its (possibly unsaved) form unless it is gone. */
export function renderChannelSettings(list) {
  channels = list;
  const select = $("#identity-channel");
  select.replaceChildren(
    ...channels.map((c) =>
      el("option", {
        value: c.id,
        text: c.name + (c.type === "mobile_sdk" ? " (mobile)" : " (web)"),
      }),
    ),
  );
  if (!channelById(identityChannel)) identityChannel = null;
  if (identityChannel) select.value = identityChannel;
  else if (channels.length) selectIdentity(channels[0].id);

  const mobile = channels.filter((c) => c.type === "mobile_sdk");
  $("#mobile-channel-table tbody").replaceChildren(...mobile.map(mobileRow));
  $("#mobile-empty").hidden = mobile.length > 0;
  if (!mobile.some((c) => c.id === pushChannel)) {
    pushChannel = null;
    push = null;
    $("#push-settings").hidden = true;
    if (mobile.length) showPush(mobile[0].id, false);
  }
  markShownPushRow();
}

/* Show a channel's verification settings (the channel table's "Verified users" button). */
export function showIdentity(channelId) {
  $("#identity-channel").value = channelId;
  selectIdentity(channelId);
  $("#identity-panel").scrollIntoView({ block: "start" });
}

/* Show a mobile channel's push settings. */
export function showPush(channelId, scroll) {
  if (channelId !== shownPush) {
    // Another channel: nothing typed or answered for the one before stays.
    shownPush = channelId;
    $("#push-test-result").hidden = true;
    showError("#fcm-error", "");
    showError("#apns-error", "");
    $("#fcm-form").reset();
    $("#apns-form").reset();
    $("#push-test-form").reset();
  }
  pushChannel = channelId;
  markShownPushRow();
  const c = channelById(channelId);
  $("#push-channel-name").textContent = c ? c.name : "";
  const loaded = loadPush(channelId).then(() => loadPushLog(false));
  if (scroll) $("#push-settings").scrollIntoView({ block: "start" });
  return loaded;
}

// ---- Verified users ------------------------------------------------------------------------

function selectIdentity(channelId) {
  identityChannel = channelId;
  identity = null;
  showError("#identity-error", "");
  return api(channelPath(channelId, "/identity"))
    .then((settings) => {
      if (identityChannel !== channelId) return; // another channel was picked meanwhile
      identity = settings;
      renderIdentity();
    })
    .catch((err) => toast(err.message));
}

function syncIdentityFields() {
  const form = $("#identity-form");
  const jwt = form.elements.mode.value === "jwt";
  $("#identity-algorithm-field").hidden = !jwt;
  const provider = jwt && form.elements.jwt_algorithm.value !== "HS256";
  $("#identity-jwks").hidden = !provider;
  $("#identity-jwks").required = provider;
}

function renderIdentity() {
  const s = identity;
  const c = channelById(s.channel_id) || { name: "", type: "webchat" };
  const form = $("#identity-form");
  form.elements.mode.value = s.mode;
  form.elements.jwt_algorithm.value = s.jwt_algorithm || "HS256";
  form.elements.jwks_url.value = s.jwks_url || "";
  syncIdentityFields();
  const stateLine = $("#identity-state");
  stateLine.dataset.mode = s.mode;
  stateLine.textContent =
    s.mode === "off"
      ? "Verification is off for " +
        c.name +
        ": user ids are not checked (anonymous visitors, or ids anyone could claim)."
      : "Verification is on for " + c.name + ": " + modeLabel(s) + ".";
  $("#identity-secret-box").hidden = !s.secret;
  $("#identity-prepare").hidden = Boolean(s.secret) || s.mode !== "off";
  $("#identity-secret").textContent = s.secret || "";
  $("#identity-snippets").replaceChildren(...identitySnippets(s, c));
}

function saveIdentity(event) {
  event.preventDefault();
  if (!identityChannel || !identity) return;
  const form = event.currentTarget;
  const body = { mode: form.elements.mode.value };
  if (body.mode === "jwt") {
    body.jwt_algorithm = form.elements.jwt_algorithm.value;
    if (body.jwt_algorithm !== "HS256") body.jwks_url = form.elements.jwks_url.value.trim();
  }
  if (identity.mode === "off" && body.mode !== "off" && !window.confirm(TURN_ON)) return;
  const channelId = identityChannel;
  api(channelPath(channelId, "/identity"), { method: "PUT", json: body })
    .then((settings) => {
      showError("#identity-error", "");
      if (identityChannel === channelId) {
        identity = settings;
        renderIdentity();
      }
      toast("Saved: verification " + modeLabel(settings) + ".", "info");
      return reload();
    })
    .catch((err) => showError("#identity-error", err.message));
}

function rotateSecret() {
  if (!identityChannel || !window.confirm(ROTATE)) return;
  drawSecret("A new secret: put it on your server.");
}

// Draws a new secret (the first one while verification is still off: nothing is refused).
function drawSecret(done) {
  if (!identityChannel) return;
  const channelId = identityChannel;
  api(channelPath(channelId, "/identity/rotate-secret"), { method: "POST" })
    .then((settings) => {
      if (identityChannel !== channelId) return;
      identity = settings;
      renderIdentity();
      toast(done, "info");
    })
    .catch((err) => toast(err.message));
}

function codeBlock(key, title, lines) {
  const pre = el("pre", { class: "snippet code", text: lines.join("\n") });
  return el(
    "div",
    { class: "code-snippet", dataset: { snippet: key } },
    el("div", { class: "code-head" }, el("span", { text: title }), copyButton(pre)),
    pre,
  );
}

function hmacSnippets(secret) {
  return [
    codeBlock("node-hmac", "Node.js (crypto)", [
      'const crypto = require("crypto");',
      "",
      "// " + NO_SECRET_HERE,
      'const CHAT_IDENTITY_SECRET = "' + secret + '";',
      "",
      "function chatUserHash(userId) {",
      '  return crypto.createHmac("sha256", CHAT_IDENTITY_SECRET).update(String(userId)).digest("hex");',
      "}",
    ]),
    codeBlock("python-hmac", "Python (hmac)", [
      "import hashlib",
      "import hmac",
      "",
      "# " + NO_SECRET_HERE,
      'CHAT_IDENTITY_SECRET = "' + secret + '"',
      "",
      "",
      "def chat_user_hash(user_id: str) -> str:",
      "    return hmac.new(",
      "        CHAT_IDENTITY_SECRET.encode(), str(user_id).encode(), hashlib.sha256",
      "    ).hexdigest()",
    ]),
    codeBlock("php-hmac", "PHP (hash_hmac)", [
      "<?php",
      "// " + NO_SECRET_HERE,
      "const CHAT_IDENTITY_SECRET = '" + secret + "';",
      "",
      "function chat_user_hash(string $userId): string {",
      "    return hash_hmac('sha256', $userId, CHAT_IDENTITY_SECRET);",
      "}",
    ]),
    codeBlock("ruby-hmac", "Ruby (OpenSSL::HMAC)", [
      'require "openssl"',
      "",
      "# " + NO_SECRET_HERE,
      'CHAT_IDENTITY_SECRET = "' + secret + '"',
      "",
      "def chat_user_hash(user_id)",
      '  OpenSSL::HMAC.hexdigest("SHA256", CHAT_IDENTITY_SECRET, user_id.to_s)',
      "end",
    ]),
  ];
}

function jwtSnippets(secret) {
  return [
    codeBlock("node-jwt", "Node.js (jsonwebtoken)", [
      'const jwt = require("jsonwebtoken"); // npm install jsonwebtoken',
      "",
      "// " + NO_SECRET_HERE,
      'const CHAT_IDENTITY_SECRET = "' + secret + '";',
      "",
      "function chatIdentityToken(userId) {",
      "  // sub: the user's id; exp (required): here one hour",
      "  return jwt.sign({ sub: String(userId) }, CHAT_IDENTITY_SECRET, {",
      '    algorithm: "HS256",',
      '    expiresIn: "1h",',
      "  });",
      "}",
    ]),
    codeBlock("python-jwt", "Python (PyJWT)", [
      "import datetime as dt",
      "",
      "import jwt  # pip install PyJWT",
      "",
      "# " + NO_SECRET_HERE,
      'CHAT_IDENTITY_SECRET = "' + secret + '"',
      "",
      "",
      "def chat_identity_token(user_id: str) -> str:",
      "    now = dt.datetime.now(dt.timezone.utc)",
      "    # sub: the user's id; exp (required): here one hour",
      "    claims = {",
      '        "sub": str(user_id),',
      '        "iat": now,',
      '        "exp": now + dt.timedelta(hours=1),',
      "    }",
      '    return jwt.encode(claims, CHAT_IDENTITY_SECRET, algorithm="HS256")',
    ]),
  ];
}

function clientSnippet(s, c) {
  const origin = window.location.origin;
  const hmac = s.mode === "hmac";
  if (c.type === "mobile_sdk") {
    const proof = hmac ? '"user_hash": "USER_HASH"' : '"identity_token": "IDENTITY_TOKEN"';
    return codeBlock("app", "In your app (the proof from your server, with the user's id)", [
      "POST " + origin + "/api/mobile/conversations",
      "Content-Type: application/json",
      "",
      '{"channel_key": "' + (c.public_key || "") + '", "external_id": "USER_ID", ' + proof + "}",
      "",
      "Socket.IO (" + origin + ", websocket transport), in the handshake:",
      "auth: {" + proof + "}",
    ]);
  }
  const proof = hmac ? '  data-user-hash="USER_HASH"' : '  data-identity-token="IDENTITY_TOKEN"';
  return codeBlock("web", "In your page (filled in by your server for the signed-in user)", [
    "<script",
    '  src="' + origin + '/chat-widget/embed.js"',
    '  data-embed-token="ew_…your embed token…"',
    '  data-user-id="USER_ID"',
    proof,
    "></" + "script>",
  ]);
}

function identitySnippets(s, c) {
  if (s.mode === "off") return [];
  const out = [];
  if (s.mode === "hmac") {
    out.push(
      el("p", {
        class: "hint",
        text:
          "USER_HASH is hex(HMAC-SHA256(secret, USER_ID)), computed by your server for the " +
          "signed-in user's id:",
      }),
      ...(s.secret ? hmacSnippets(s.secret) : []),
    );
  } else if (s.jwt_algorithm === "HS256" || !s.jwt_algorithm) {
    out.push(
      el("p", {
        class: "hint",
        text:
          "IDENTITY_TOKEN is a JWT your server signs HS256 with the secret, with sub = the " +
          "user's id (USER_ID) and exp (required):",
      }),
      ...(s.secret ? jwtSnippets(s.secret) : []),
    );
  } else {
    out.push(
      el(
        "p",
        { class: "hint" },
        "IDENTITY_TOKEN is a JWT your identity provider signs " +
          s.jwt_algorithm +
          ", with sub = the user's id (USER_ID) and exp (required). Its keys are read from ",
        el("code", { class: "mono", text: s.jwks_url || "" }),
        ".",
      ),
    );
  }
  out.push(clientSnippet(s, c));
  return out;
}

// ---- Mobile SDK: channels ------------------------------------------------------------------

function mobileRow(c) {
  const id = el("code", { class: "mono channel-id", text: c.id });
  const key = el("code", { class: "mono public-key", text: c.public_key || "" });
  return el(
    "tr",
    { dataset: { channelId: c.id } },
    el("td", { text: c.name }),
    el("td", {}, id, " ", copyButton(id)),
    el("td", {}, key, " ", copyButton(key)),
    el("td", { class: "identity-mode", text: modeLabel(c.identity) }),
    el(
      "td",
      { class: "actions" },
      button("Push settings", () => showPush(c.id, true)),
      button("Verified users", () => showIdentity(c.id)),
    ),
  );
}

function markShownPushRow() {
  document.querySelectorAll("#mobile-channel-table tbody tr").forEach((row) => {
    if (row.dataset.channelId === pushChannel) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  });
}

function createMobileChannel(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const name = String(new FormData(form).get("name") || "").trim();
  api("/api/admin/channels", { method: "POST", json: { type: "mobile_sdk", name } })
    .then((channel) => {
      form.reset();
      toast("Created " + channel.name + ".", "info");
      pushChannel = channel.id; // shown once the list has it
      return reload().then(() => showPush(channel.id, false));
    })
    .catch((err) => toast(err.message));
}

// ---- Mobile SDK: push settings -------------------------------------------------------------

function loadPush(channelId) {
  return api(channelPath(channelId, "/push"))
    .then((settings) => {
      if (pushChannel !== channelId) return;
      renderPush(settings);
    })
    .catch((err) => toast(err.message));
}

function summaryRows(pairs) {
  return pairs.flatMap(([label, value]) => [
    el("dt", { text: label }),
    el("dd", { class: "mono", text: value || "" }),
  ]);
}

function renderProvider(platform, summary, pairs) {
  const box = $("#push-" + platform);
  const configured = Boolean(summary);
  box.dataset.configured = configured ? "true" : "false";
  $("#" + platform + "-summary").replaceChildren(...(configured ? summaryRows(pairs) : []));
  $("#" + platform + "-summary").hidden = !configured;
  $("#" + platform + "-none").hidden = configured;
  $("#" + platform + "-actions").hidden = !configured;
  $("#" + platform + "-form").hidden = configured;
  $("#" + platform + "-cancel").hidden = true;
}

function renderPush(settings) {
  push = settings;
  $("#push-settings").hidden = false;
  $("#push-preview").value = settings.preview;
  const d = settings.devices || { fcm: 0, apns: 0 };
  $("#push-devices").textContent =
    "Registered devices: " + d.fcm + " Android (FCM), " + d.apns + " iOS (APNs).";
  const fcm = settings.fcm;
  renderProvider(
    "fcm",
    fcm,
    fcm && [
      ["Project", fcm.project_id],
      ["Service account", fcm.client_email],
      ["Saved", shortTime(fcm.updated_at)],
    ],
  );
  const apns = settings.apns;
  renderProvider(
    "apns",
    apns,
    apns && [
      ["Team ID", apns.team_id],
      ["Key ID", apns.key_id],
      ["Bundle ID", apns.bundle_id],
      ["Environment", apns.environment],
      ["Saved", shortTime(apns.updated_at)],
    ],
  );
}

function editCredentials(platform, editing) {
  const form = $("#" + platform + "-form");
  form.reset();
  showError("#" + platform + "-error", "");
  form.hidden = !editing;
  $("#" + platform + "-cancel").hidden = !editing;
  $("#" + platform + "-actions").hidden = editing;
  if (editing) form.querySelector("input, textarea").focus();
}

function savePreview(event) {
  const channelId = pushChannel;
  api(channelPath(channelId, "/push"), { method: "PATCH", json: { preview: event.target.value } })
    .then((settings) => {
      if (pushChannel === channelId) renderPush(settings);
      toast("Saved.", "info");
    })
    .catch((err) => {
      toast(err.message);
      if (push) $("#push-preview").value = push.preview;
    });
}

function putCredentials(platform, body, form) {
  const channelId = pushChannel;
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  return api(channelPath(channelId, "/push/" + platform), { method: "PUT", json: body })
    .then((settings) => {
      form.reset();
      showError("#" + platform + "-error", "");
      if (pushChannel === channelId) renderPush(settings);
      toast("Saved the " + platform.toUpperCase() + " credentials.", "info");
    })
    .catch((err) => showError("#" + platform + "-error", err.message))
    .finally(() => {
      submit.disabled = false;
    });
}

function saveFcm(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const text = form.elements.service_account.value.trim();
  let account;
  try {
    account = JSON.parse(text);
  } catch (err) {
    showError(
      "#fcm-error",
      "This is not valid JSON (" +
        err.message +
        "). Paste the whole service-account file Firebase downloaded, from { to }.",
    );
    return;
  }
  if (!account || typeof account !== "object" || Array.isArray(account)) {
    showError(
      "#fcm-error",
      "The service-account file is a JSON object ({ … }), with type, project_id, " +
        "private_key and client_email.",
    );
    return;
  }
  putCredentials("fcm", { service_account: account }, form);
}

function saveApns(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = new FormData(form);
  const body = {};
  ["team_id", "key_id", "bundle_id", "environment"].forEach((name) => {
    body[name] = String(data.get(name) || "").trim();
  });
  body.private_key = String(data.get("private_key") || "").trim() + "\n";
  if (body.private_key.indexOf("-----BEGIN PRIVATE KEY-----") < 0) {
    showError(
      "#apns-error",
      "Paste the whole .p8 file, from -----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----.",
    );
    return;
  }
  putCredentials("apns", body, form);
}

function removeCredentials(platform) {
  const name = platform === "fcm" ? "FCM (Android)" : "APNs (iOS)";
  if (!window.confirm("Remove the " + name + " credentials? Those devices get no push then.")) {
    return;
  }
  const channelId = pushChannel;
  api(channelPath(channelId, "/push/" + platform), { method: "DELETE" })
    .then((settings) => {
      if (pushChannel === channelId) renderPush(settings);
      toast("Removed the " + platform.toUpperCase() + " credentials.", "info");
    })
    .catch((err) => toast(err.message));
}

function loadFile(input) {
  const file = input.files && input.files[0];
  if (!file) return;
  file
    .text()
    .then((text) => {
      $("#" + input.dataset.fills).value = text;
      input.value = "";
    })
    .catch(() => toast("Could not read " + file.name + "."));
}

// ---- Mobile SDK: test push and delivery log ------------------------------------------------

const OUTCOMES = {
  delivered: "The provider accepted it: the device should show it shortly.",
  unregistered:
    "The provider says this token is no longer valid (the app was uninstalled, or the " +
    "token was replaced).",
  retry: "The provider is unavailable or throttling: try again later.",
  rejected:
    "The provider refused it: check the credentials, the bundle ID and environment, and " +
    "that the token is of this app.",
};

function renderTestResult(result) {
  const box = $("#push-test-result");
  box.dataset.outcome = result.outcome;
  box.replaceChildren(
    el(
      "p",
      {},
      el("strong", { class: "push-outcome", text: result.outcome }),
      " · response ",
      el("span", {
        class: "push-status mono",
        text: result.status_code == null ? "none" : String(result.status_code),
      }),
      result.detail ? " · " : null,
      result.detail ? el("span", { class: "push-detail mono", text: result.detail }) : null,
    ),
    el("p", { class: "hint", text: OUTCOMES[result.outcome] || "" }),
  );
  box.hidden = false;
}

function sendTestPush(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = new FormData(form);
  const body = {
    platform: String(data.get("platform")),
    token: String(data.get("token") || "").trim(),
  };
  const channelId = pushChannel;
  const submit = $("#push-test-submit");
  const box = $("#push-test-result");
  submit.disabled = true;
  box.hidden = false;
  box.dataset.outcome = "sending";
  box.replaceChildren(el("p", { class: "hint", text: "Sending…" }));
  api(channelPath(channelId, "/push/test"), { method: "POST", json: body })
    .then((result) => {
      if (pushChannel === channelId) renderTestResult(result);
    })
    .catch((err) => {
      box.dataset.outcome = "error";
      box.replaceChildren(el("p", { class: "form-error", text: err.message }));
    })
    .finally(() => {
      submit.disabled = false;
    });
}

function deliveryRow(d) {
  return el(
    "tr",
    { dataset: { deliveryId: String(d.id), outcome: d.outcome, platform: d.platform } },
    el("td", { text: shortTime(d.created_at) }),
    el("td", { text: d.platform === "apns" ? "APNs" : "FCM" }),
    el("td", { class: "push-outcome", text: d.outcome }),
    el("td", { text: d.status_code == null ? "—" : String(d.status_code) }),
    el("td", { text: String(d.attempt) }),
    el("td", {
      class: "mono",
      title: "conversation " + d.conversation_id,
      text: d.seq == null ? "" : "#" + d.seq,
    }),
    el("td", { class: "hint", text: d.detail || "" }),
  );
}

function loadPushLog(older) {
  const channelId = pushChannel;
  if (!channelId) return Promise.resolve();
  let path = channelPath(channelId, "/push/deliveries?limit=50");
  if (older && logBefore != null) path += "&before=" + encodeURIComponent(logBefore);
  return api(path)
    .then((page) => {
      if (pushChannel !== channelId) return;
      const rows = page.deliveries.map(deliveryRow);
      const body = $("#push-log-table tbody");
      if (older) body.append(...rows);
      else body.replaceChildren(...rows);
      logBefore = page.next_before;
      $("#push-log-older").hidden = page.next_before == null;
      $("#push-log-empty").hidden = body.childElementCount > 0;
    })
    .catch((err) => toast(err.message));
}
