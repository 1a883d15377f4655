/* The Bots page (owners and admins): the organization's bots (each one's switch and where it
 * answers), the editor of one (a flow bot's JSON definition and commands, or a webhook bot's
 * address), a test chat that runs the flow as it is in the editor through the server without
 * saving anything, and which bot answers on each channel and web chat embed token. Every
 * text from the server or the editor is put in the page as text. */
import { safeUrl } from "../shared/format.js";
import { el, renderContent } from "../shared/render.js";
import { api } from "./api.js";
import { $, toast } from "./ui.js";

const BOTS = "/api/admin/bots";

// A new flow bot starts from this: each part of a flow, small enough to read at a glance.
const EXAMPLE_FLOW = {
  greeting: [
    {
      content: "Hi! I'm the shop's assistant. What can I do for you?",
      content_type: "quick_button",
      rich_media: {
        buttons: [
          { label: "Pricing", value: "pricing" },
          { label: "Talk to a person", value: "/agent" },
        ],
      },
    },
  ],
  intents: [
    {
      name: "pricing",
      values: ["pricing"],
      keywords: ["price", "prices", "plans", "cost"],
      patterns: ["\\bhow much\\b"],
      replies: ["Plans start at $10 a month, and every plan comes with a 14-day free trial."],
    },
    {
      name: "updates",
      keywords: ["newsletter", "updates", "keep me posted"],
      replies: ["Happy to keep you posted."],
      collect: {
        field: "email",
        type: "email",
        prompt: ["What email address should we write to?"],
        done: ["Thanks! You'll hear from us."],
      },
    },
  ],
  fallback: ["Sorry, I didn't get that. Ask about pricing, or type /agent to talk to a person."],
  handoff_after: 2,
};
const EXAMPLE_COMMANDS = [{ command: "/pricing", description: "Our plans", intent: "pricing" }];

let bots = []; // GET /api/admin/bots, as last loaded
let channels = []; // GET /api/admin/channels
let tokens = []; // GET /api/admin/embed-tokens
let editing = null; // the bot the editor saves to (null: the editor creates one)

// The test chat: the state the server returned last, and a queue so that each line is sent
// with the state of the answer before it. A restart bumps the generation, and answers to
// lines of an earlier generation are dropped.
let testState = null;
let testQueue = Promise.resolve();
let testGeneration = 0;
let handedOff = false;

function botPath(id, rest) {
  return BOTS + "/" + encodeURIComponent(id) + (rest || "");
}

function button(text, onclick) {
  return el("button", { class: "button small", type: "button", text, onclick });
}

function showError(selector, message) {
  const box = $(selector);
  box.textContent = message || "";
  box.hidden = !message;
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/* The JSON of a textarea: {value} or {error}. An empty commands box means no commands. */
function readJson(selector, label, empty) {
  const text = $(selector).value;
  if (!text.trim()) {
    return empty === undefined ? { error: label + ": empty." } : { value: empty };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: label + ": not valid JSON: " + err.message };
  }
}

function checkJson(selector, status, label, empty) {
  const { error } = readJson(selector, label, empty);
  $(status).textContent = error || "";
  if (error) $(selector).setAttribute("aria-invalid", "true");
  else $(selector).removeAttribute("aria-invalid");
}

function checkEditor() {
  checkJson("#bot-flow", "#bot-flow-status", "Flow");
  checkJson("#bot-commands", "#bot-commands-status", "Commands", []);
}

// ---- The page's entry points -------------------------------------------------------------

export function startBots() {
  $("#bot-new").addEventListener("click", () => newBot(true));
  $("#bot-cancel").addEventListener("click", () => newBot(false));
  $("#bot-kind").addEventListener("change", syncKind);
  $("#bot-form").addEventListener("submit", saveBot);
  $("#bot-flow").addEventListener("input", () =>
    checkJson("#bot-flow", "#bot-flow-status", "Flow"),
  );
  $("#bot-commands").addEventListener("input", () =>
    checkJson("#bot-commands", "#bot-commands-status", "Commands", []),
  );
  $("#bot-test-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#bot-test-text");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    say(text);
  });
  $("#bot-test-restart").addEventListener("click", restartTest);
  newBot(false);
}

export function loadBots() {
  return Promise.all([api(BOTS), api("/api/admin/channels"), api("/api/admin/embed-tokens")])
    .then(([b, c, t]) => {
      bots = b;
      channels = c;
      tokens = t.filter((token) => !token.revoked_at);
      renderBots();
      renderAttachments();
    })
    .catch((err) => toast(err.message));
}

// ---- The list ----------------------------------------------------------------------------

function tokenLabel(t) {
  return (t.name || t.token_prefix + "…") + " (embed token)";
}

function placesOf(bot) {
  const ids = new Set(bot.channel_ids || []);
  const tokenIds = new Set(bot.embed_token_ids || []);
  return channels
    .filter((c) => ids.has(c.id))
    .map((c) => c.name)
    .concat(tokens.filter((t) => tokenIds.has(t.id)).map(tokenLabel));
}

function enabledSwitch(bot) {
  const box = el("input", {
    type: "checkbox",
    role: "switch",
    "aria-label": "Enabled: " + bot.name,
  });
  box.checked = bot.enabled;
  box.addEventListener("change", () => {
    box.disabled = true;
    api(botPath(bot.id), { method: "PATCH", json: { enabled: box.checked } })
      .then(loadBots)
      .catch((err) => {
        box.checked = !box.checked;
        toast(err.message);
      })
      .finally(() => {
        box.disabled = false;
      });
  });
  return el("label", { class: "bot-enabled" }, box, bot.enabled ? " on" : " off");
}

function renderBots() {
  $("#bot-empty").hidden = bots.length > 0;
  $("#bot-table tbody").replaceChildren(
    ...bots.map((bot) => {
      const avatar = safeUrl(bot.avatar_url);
      const places = placesOf(bot);
      return el(
        "tr",
        { dataset: { botId: bot.id, enabled: bot.enabled ? "true" : "false" } },
        el(
          "td",
          {},
          el(
            "span",
            { class: "bot-name" },
            avatar ? el("img", { class: "bot-avatar", src: avatar, alt: "" }) : null,
            el("span", { text: bot.name }),
          ),
        ),
        el("td", { text: bot.kind === "webhook" ? "Webhook" : "Flow" }),
        el("td", {}, enabledSwitch(bot)),
        el("td", {
          class: places.length ? "bot-places" : "bot-places hint",
          text: places.join(", ") || "nowhere yet",
        }),
        el(
          "td",
          { class: "actions" },
          button("Edit", () => editBot(bot)),
          bot.kind === "webhook" ? button("New secret", () => rotateSecret(bot)) : null,
          button("Delete", () => deleteBot(bot)),
        ),
      );
    }),
  );
}

/* The signing secret and API key of a webhook bot, shown this once (the server keeps
 * neither: the secret is derived, the key hashed); `null` leaves a part out. */
function showSecrets(secret, apiKey) {
  $("#new-bot-secrets").hidden = !secret && !apiKey;
  $("#new-bot-secret").textContent = secret || "";
  $("#new-bot-api-key").textContent = apiKey || "";
  $("#new-bot-api-key-line").hidden = !apiKey;
}

function rotateSecret(bot) {
  const question =
    "Make a new signing secret for " +
    bot.name +
    "? Its service must verify requests with " +
    "the new one from now on: the current one stops at once.";
  if (!window.confirm(question)) return;
  api(botPath(bot.id, "/rotate-secret"), { method: "POST" })
    .then((rotated) => showSecrets(rotated.secret, null))
    .catch((err) => toast(err.message));
}

function deleteBot(bot) {
  const question =
    "Delete the bot " + bot.name + "? Where it answers, conversations go to people from now on.";
  if (!window.confirm(question)) return;
  api(botPath(bot.id), { method: "DELETE" })
    .then(() => {
      if (editing && editing.id === bot.id) newBot(false);
      return loadBots();
    })
    .catch((err) => toast(err.message));
}

// ---- Where bots answer -------------------------------------------------------------------

function botSelect(current, label, onchange) {
  const select = el(
    "select",
    { class: "bot-select", "aria-label": label },
    el("option", { value: "", text: "No bot" }),
    ...bots.map((b) =>
      el("option", { value: b.id, text: b.name + (b.enabled ? "" : " (turned off)") }),
    ),
  );
  select.value = current || "";
  select.addEventListener("change", () => {
    select.disabled = true;
    onchange(select.value || null)
      .catch((err) => toast(err.message))
      .then(loadBots);
  });
  return select;
}

function attach(path, botId) {
  return api(path, { method: "PUT", json: { bot_id: botId } });
}

function renderAttachments() {
  const channelName = new Map(channels.map((c) => [c.id, c.name]));
  $("#bot-channel-table tbody").replaceChildren(
    ...channels.map((c) =>
      el(
        "tr",
        { dataset: { channelId: c.id } },
        el("td", { text: c.name }),
        el("td", { text: c.type === "mobile_sdk" ? "Mobile SDK" : "Web chat" }),
        el(
          "td",
          {},
          botSelect(c.bot_id, "Bot of channel " + c.name, (botId) =>
            attach("/api/admin/channels/" + encodeURIComponent(c.id) + "/bot", botId),
          ),
        ),
      ),
    ),
  );
  $("#bot-token-empty").hidden = tokens.length > 0;
  $("#bot-token-table tbody").replaceChildren(
    ...tokens.map((t) =>
      el(
        "tr",
        { dataset: { tokenId: t.id } },
        el("td", { class: "mono", text: t.token_prefix + "…" }),
        el("td", { text: t.name || "" }),
        el("td", { text: channelName.get(t.channel_id) || "" }),
        el(
          "td",
          {},
          botSelect(t.bot_id, "Bot of " + tokenLabel(t), (botId) =>
            attach("/api/admin/embed-tokens/" + encodeURIComponent(t.id) + "/bot", botId),
          ),
        ),
      ),
    ),
  );
}

// ---- The editor --------------------------------------------------------------------------

function syncKind() {
  const flow = $("#bot-kind").value === "flow";
  const flowFields = $("#bot-flow-fields");
  const hookFields = $("#bot-webhook-fields");
  // A disabled fieldset's fields are neither validated nor submitted.
  flowFields.hidden = flowFields.disabled = !flow;
  hookFields.hidden = hookFields.disabled = flow;
  $("#bot-test").hidden = !flow;
}

function setEditing(bot) {
  editing = bot;
  $("#bot-editor-title").textContent = bot ? "Edit " + bot.name : "New bot";
  $("#bot-submit").textContent = bot ? "Save bot" : "Create bot";
  $("#bot-cancel").hidden = !bot;
  // A bot keeps its kind: a webhook bot's secret and key are made when it is created.
  $("#bot-kind").disabled = !!bot;
}

function newBot(focus) {
  const form = $("#bot-form");
  form.reset();
  setEditing(null);
  $("#bot-flow").value = pretty(EXAMPLE_FLOW);
  $("#bot-commands").value = pretty(EXAMPLE_COMMANDS);
  showError("#bot-form-error", "");
  checkEditor();
  syncKind();
  restartTest();
  if (focus) form.elements.name.focus();
}

function editBot(bot) {
  const form = $("#bot-form");
  form.reset();
  setEditing(bot);
  form.elements.name.value = bot.name;
  form.elements.kind.value = bot.kind;
  form.elements.avatar_url.value = bot.avatar_url || "";
  $("#bot-flow").value = bot.flow ? pretty(bot.flow) : "";
  $("#bot-commands").value = pretty(bot.commands || []);
  form.elements.webhook_url.value = bot.webhook_url || "";
  form.elements.timeout_seconds.value = String(bot.timeout_seconds || 10);
  showError("#bot-form-error", "");
  checkEditor();
  syncKind();
  restartTest();
  $("#bot-editor-panel").scrollIntoView({ block: "start" });
  form.elements.name.focus();
}

/* The body of POST or PATCH, or {error} when a JSON box does not parse (nothing is sent). */
function botBody(form) {
  const kind = form.elements.kind.value;
  const body = { name: form.elements.name.value.trim() };
  const avatar = form.elements.avatar_url.value.trim();
  if (avatar) body.avatar_url = avatar;
  else if (editing && editing.avatar_url) body.avatar_url = null;
  if (!editing) body.kind = kind;
  const commands = readJson("#bot-commands", "Commands", []);
  if (commands.error) return { error: commands.error };
  body.commands = commands.value;
  if (kind === "flow") {
    const flow = readJson("#bot-flow", "Flow");
    if (flow.error) return { error: flow.error };
    body.flow = flow.value;
  } else {
    body.webhook_url = form.elements.webhook_url.value.trim();
    body.timeout_seconds = Number(form.elements.timeout_seconds.value);
  }
  return { body };
}

function saveBot(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const { body, error } = botBody(form);
  showError("#bot-form-error", error);
  if (error) return;
  const creating = !editing;
  const request = creating
    ? api(BOTS, { method: "POST", json: body })
    : api(botPath(editing.id), { method: "PATCH", json: body });
  const submit = $("#bot-submit");
  submit.disabled = true;
  request
    .then((bot) => {
      if (creating) showSecrets(bot.secret, bot.api_key);
      // The editor keeps the text as written; further saves go to this bot.
      setEditing(bot);
      toast((creating ? "Created " : "Saved ") + bot.name + ".", "info");
      return loadBots();
    })
    .catch((err) => showError("#bot-form-error", err.message))
    .finally(() => {
      submit.disabled = false;
    });
}

// ---- The test chat -----------------------------------------------------------------------

function scrollTranscript() {
  const list = $("#bot-test-transcript");
  list.scrollTop = list.scrollHeight;
}

function line(text) {
  $("#bot-test-transcript").append(el("li", { class: "system-line", text }));
}

function testerLine(text, label) {
  const p = el("p", { class: "rm-text", text: label || text });
  if (label) {
    p.title = "sent: " + text;
    p.dataset.value = text;
  }
  $("#bot-test-transcript").append(
    el("li", { class: "msg from-tester" }, el("div", { class: "bubble" }, p)),
  );
  scrollTranscript();
}

function botLine(reply, generation) {
  const content = renderContent(reply, {
    interactive: true,
    // A pick is sent as the visitor's text, the choice's value (as the widget does).
    onChoose: (label, value) => {
      if (generation === testGeneration) say(value, label);
    },
  });
  $("#bot-test-transcript").append(
    el("li", { class: "msg from-bot" }, el("div", { class: "bubble" }, ...content)),
  );
}

function say(text, label) {
  if (handedOff) return;
  const generation = testGeneration;
  testerLine(text, label);
  testQueue = testQueue.then(() => exchange(text, generation));
}

function exchange(text, generation) {
  if (generation !== testGeneration) return null;
  const flow = readJson("#bot-flow", "Flow");
  const commands = readJson("#bot-commands", "Commands", []);
  const error = flow.error || commands.error;
  showError("#bot-test-error", error);
  if (error) return null;
  const body = { flow: flow.value, commands: commands.value, state: testState, text };
  return api(BOTS + "/test", { method: "POST", json: body })
    .then((answer) => {
      if (generation !== testGeneration) return;
      testState = answer.state;
      (answer.replies || []).forEach((reply) => botLine(reply, generation));
      if (answer.flagged) line("flagged");
      Object.entries(answer.collected || {}).forEach(([field, value]) => {
        line("collected " + field + "=" + value);
      });
      if (answer.handoff) {
        // From here on people answer, not the bot: so does the test.
        handedOff = true;
        $("#bot-test-text").disabled = true;
        $("#bot-test-send").disabled = true;
        line("→ handed to a person (" + answer.handoff + ")");
        line("The bot stays quiet from here on: Restart to try again.");
      }
      scrollTranscript();
    })
    .catch((err) => {
      if (generation === testGeneration) showError("#bot-test-error", err.message);
    });
}

function restartTest() {
  testGeneration += 1;
  testState = null;
  testQueue = Promise.resolve();
  handedOff = false;
  $("#bot-test-transcript").replaceChildren();
  $("#bot-test-text").disabled = false;
  $("#bot-test-send").disabled = false;
  showError("#bot-test-error", "");
}
