/* The composer: text, quick buttons, dropdown, carousel, uploads; typing notices. */
import { randomId, safeUrl } from "../shared/format.js";
import { el } from "../shared/render.js";
import { api, ApiError } from "./api.js";
import { emitAck, socket } from "./socket.js";
import { app, state, TYPING_EVERY_MS } from "./state.js";
import { $, toast } from "./ui.js";

// ---- the composer ---------------------------------------------------------------------

function rowEditor(kind, initialRows) {
  var rows = el("ul", { class: "rows", dataset: { kind: kind } });
  function addRow(label, value) {
    rows.append(
      el(
        "li",
        { class: "row" },
        el("input", {
          class: "row-label",
          type: "text",
          placeholder: "Label",
          "aria-label": kind + " label",
          value: label || "",
        }),
        el("input", {
          class: "row-value",
          type: "text",
          placeholder: "Value (defaults to the label)",
          "aria-label": kind + " value",
          value: value || "",
        }),
        el("button", {
          class: "button small subtle remove-row",
          type: "button",
          "aria-label": "Remove",
          text: "\u00D7",
          onclick: function (ev) {
            ev.currentTarget.closest("li").remove();
          },
        }),
      ),
    );
  }
  for (var i = 0; i < initialRows; i++) addRow();
  return el(
    "div",
    { class: "row-editor" },
    rows,
    el("button", {
      class: "button small subtle add-row",
      type: "button",
      text: "Add " + kind,
      onclick: function () {
        addRow();
      },
    }),
  );
}

function cardEditor() {
  return el(
    "fieldset",
    { class: "card-editor" },
    el("legend", { text: "Card" }),
    el("input", {
      class: "card-title-input",
      type: "text",
      placeholder: "Title (required)",
      "aria-label": "Card title",
    }),
    el("input", {
      class: "card-subtitle-input",
      type: "text",
      placeholder: "Subtitle",
      "aria-label": "Card subtitle",
    }),
    el("input", {
      class: "card-image-input",
      type: "url",
      placeholder: "Image URL (https://… or /uploads/…)",
      "aria-label": "Card image URL",
    }),
    rowEditor("button", 1),
    el("button", {
      class: "button small subtle remove-card",
      type: "button",
      text: "Remove card",
      onclick: function (ev) {
        ev.currentTarget.closest("fieldset").remove();
      },
    }),
  );
}

var PLACEHOLDERS = {
  text: "Write a reply… (Enter sends, Shift+Enter adds a line)",
  quick_button: 'Prompt shown above the buttons, e.g. "Choose an option:"',
  dropdown: 'Prompt shown above the dropdown, e.g. "Select your region:"',
  carousel: "Optional text shown above the cards",
};

function setComposerType(type) {
  var editor = $("#rich-editor");
  $("#composer-type").value = type;
  $("#composer-text").placeholder = PLACEHOLDERS[type];
  editor.replaceChildren();
  editor.dataset.type = type;
  if (type === "quick_button") {
    editor.append(el("div", { class: "editor-title", text: "Buttons" }), rowEditor("button", 2));
  } else if (type === "dropdown") {
    editor.append(
      el("input", {
        id: "dropdown-placeholder",
        type: "text",
        placeholder: "Placeholder, e.g. -- pick one --",
        "aria-label": "Dropdown placeholder",
      }),
      el("div", { class: "editor-title", text: "Options" }),
      rowEditor("option", 2),
    );
  } else if (type === "carousel") {
    var cards = el("div", { class: "cards" }, cardEditor());
    editor.append(
      cards,
      el("button", {
        id: "add-card",
        class: "button small subtle",
        type: "button",
        text: "Add card",
        onclick: function () {
          cards.append(cardEditor());
        },
      }),
    );
  }
  editor.hidden = type === "text";
}

function collectRows(root) {
  var out = [];
  root.querySelectorAll(":scope > .row-editor > .rows > .row").forEach(function (row) {
    var label = row.querySelector(".row-label").value.trim();
    var value = row.querySelector(".row-value").value.trim();
    if (label) out.push({ label: label, value: value || label });
  });
  return out;
}

function composerPayload() {
  var type = $("#composer-type").value;
  var content = $("#composer-text").value;
  var editor = $("#rich-editor");
  if (type === "text") {
    if (!content.trim()) throw new ApiError("Write a message first.");
    return { content_type: "text", content: content };
  }
  if (type === "quick_button") {
    var buttons = collectRows(editor);
    if (!buttons.length) throw new ApiError("Add at least one button with a label.");
    return { content_type: type, content: content, rich_media: { buttons: buttons } };
  }
  if (type === "dropdown") {
    var options = collectRows(editor);
    if (!options.length) throw new ApiError("Add at least one option with a label.");
    var media = { options: options };
    var placeholder = $("#dropdown-placeholder").value.trim();
    if (placeholder) media.placeholder = placeholder;
    return { content_type: type, content: content, rich_media: media };
  }
  var cards = [];
  var problem = null;
  editor.querySelectorAll(".card-editor").forEach(function (fs) {
    var title = fs.querySelector(".card-title-input").value.trim();
    var subtitle = fs.querySelector(".card-subtitle-input").value.trim();
    var image = fs.querySelector(".card-image-input").value.trim();
    var cardButtons = collectRows(fs);
    if (!title && !subtitle && !image && !cardButtons.length) return;
    if (!title) problem = "Every card needs a title.";
    if (image && !safeUrl(image)) problem = "A card image must be an http(s) URL or a /path.";
    var card = { title: title };
    if (subtitle) card.subtitle = subtitle;
    if (image) card.image_url = image;
    if (cardButtons.length) card.buttons = cardButtons;
    cards.push(card);
  });
  if (problem) throw new ApiError(problem);
  if (!cards.length) throw new ApiError("Add at least one card.");
  return { content_type: "carousel", content: content, rich_media: { cards: cards } };
}

function send(payload) {
  var id = state.current;
  var message = {
    conversation_id: id,
    sender_type: "agent",
    content: payload.content || "",
    content_type: payload.content_type,
    client_message_id: randomId(),
  };
  if (payload.rich_media) message.rich_media = payload.rich_media;
  return emitAck("send_message", message).then(function (stored) {
    if (stored.conversation_id === state.current) {
      app.addMessage(stored);
      app.scrollToBottom();
    }
    // Writing into a resolved conversation opened a session assigned to us.
    var conv = state.convs.get(id);
    if (conv && !conv.active_session) app.refreshConversation(id);
    return stored;
  });
}

function submitComposer(event) {
  event.preventDefault();
  if (!state.current || state.busy) return;
  var payload;
  try {
    payload = composerPayload();
  } catch (err) {
    toast(err.message);
    return;
  }
  state.busy = true;
  $("#send").disabled = true;
  var sentType = $("#composer-type").value;
  var sentText = $("#composer-text").value;
  send(payload)
    .then(function () {
      // The visitor may see the message before our ack arrives; if the agent has already
      // started the next message meanwhile, leave it alone.
      if ($("#composer-type").value !== sentType || $("#composer-text").value !== sentText) return;
      $("#composer-text").value = "";
      setComposerType("text");
      $("#composer-text").focus();
    })
    .catch(function (err) {
      toast(err.message);
    })
    .then(function () {
      state.busy = false;
      $("#send").disabled = false;
    });
}

/* Upload through POST /api/uploads, then send an image message for images and a file
 * message for anything else; the composer text becomes the caption. */
function uploadAndSend(file) {
  if (!file || !state.current) return;
  var form = new FormData();
  form.append("file", file, file.name);
  var caption = $("#composer-text").value.trim();
  $("#attach").disabled = true;
  $("#composer-note").textContent = "Uploading " + file.name + "…";
  api("/api/uploads", { method: "POST", body: form })
    .then(function (up) {
      var isImage = /^image\//.test(up.mime_type || "");
      if (isImage) {
        return send({
          content_type: "image",
          content: caption,
          rich_media: { url: up.url, alt: caption || up.filename },
        });
      }
      return send({
        content_type: "file",
        content: caption || up.filename,
        rich_media: { url: up.url, filename: up.filename, size: up.size, mime_type: up.mime_type },
      });
    })
    .then(function () {
      $("#composer-text").value = "";
      $("#composer-note").textContent = "";
    })
    .catch(function (err) {
      $("#composer-note").textContent = "";
      toast(err.message);
    })
    .then(function () {
      $("#attach").disabled = false;
      $("#file-input").value = "";
    });
}

function onComposerInput() {
  if (!state.current || !socket.connected) return;
  var now = Date.now();
  if (now - state.lastTypingEmit < TYPING_EVERY_MS) return;
  state.lastTypingEmit = now;
  socket.emit("user_typing", { conversation_id: state.current, sender_type: "agent" });
}

Object.assign(app, {
  rowEditor,
  cardEditor,
  setComposerType,
  collectRows,
  composerPayload,
  send,
  submitComposer,
  uploadAndSend,
  onComposerInput,
});
