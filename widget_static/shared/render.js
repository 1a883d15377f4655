/* The one rich-message renderer of the widget and the agent app (classes rm-*, styled by
 * shared/render.css): text, image, file, quick buttons, dropdown, carousel, as the guide
 * defines them. Every text a message carries (content, labels, titles, file names) is put in
 * the page with textContent or as an attribute value, never parsed as HTML.
 *
 * The widget renders interactively (a pick calls onChoose(label, value) and disables the
 * group); the agent app renders read-only (what the visitor was offered, values as titles).
 */
import { formatSize, safeUrl } from "./format.js";

/* el("div", {class: "x", text: "y", dataset: {...}, onclick: fn}, child, ...): strings become
 * text nodes, attributes are set with setAttribute, so nothing is parsed as HTML. */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function fileIcon() {
  // Built node by node: a constant shape, no markup parsed.
  const svg = document.createElementNS(SVG, "svg");
  for (const [k, v] of Object.entries({
    width: 22,
    height: 22,
    viewBox: "0 0 24 24",
    fill: "none",
    stroke: "currentColor",
    "stroke-width": 1.8,
    "stroke-linejoin": "round",
    "aria-hidden": "true",
  }))
    svg.setAttribute(k, String(v));
  for (const d of ["M6 2h8l5 5v15H6z", "M14 2v5h5M9 13h7M9 17h7"]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return el("span", { class: "rm-fileicon" }, svg);
}

const CHOICE_TYPES = new Set(["quick_button", "dropdown", "carousel"]);

/* The {label, value} pairs a message offers the visitor (buttons, options, card buttons). */
export function choicesOf(m) {
  const rm = (m && m.rich_media) || {};
  if (!m || !CHOICE_TYPES.has(m.content_type)) return [];
  if (m.content_type === "quick_button") return rm.buttons || [];
  if (m.content_type === "dropdown") return rm.options || [];
  return (rm.cards || []).flatMap((c) => c.buttons || []);
}

/* A pick is sent as the visitor's text reply carrying the choice's value (the contract); on
 * screen it reads as the label the visitor clicked. Choices remembers what was offered, by
 * seq, and names a reply by the nearest offer before it that has its value. */
export class Choices {
  constructor() {
    this.offers = []; // [seq, Map value -> label], ascending by seq
  }

  remember(m) {
    const pairs = choicesOf(m).filter((c) => c && typeof c.value === "string");
    if (!pairs.length || typeof m.seq !== "number") return;
    if (this.offers.some((o) => o[0] === m.seq)) return;
    this.offers.push([m.seq, new Map(pairs.map((c) => [c.value, String(c.label || c.value)]))]);
    this.offers.sort((a, b) => a[0] - b[0]);
  }

  /* The label of a visitor's text reply that picked a choice, else null. seq may be
   * Infinity (a reply not stored yet). */
  labelOf(m, seq) {
    if (!m || m.sender_type !== "end_user" || (m.content_type || "text") !== "text") return null;
    const at = seq === undefined ? m.seq : seq;
    for (let i = this.offers.length - 1; i >= 0; i--) {
      const [offerSeq, labels] = this.offers[i];
      if (offerSeq < at && labels.has(m.content)) return labels.get(m.content);
    }
    return null;
  }
}

function choiceButton(choice, opts, group) {
  const label = String((choice && choice.label) || "");
  const value = String((choice && choice.value) || label);
  if (!opts.interactive) {
    return el("span", {
      class: "rm-choice",
      "aria-disabled": "true",
      title: "value: " + value,
      dataset: { value },
      text: label,
    });
  }
  const btn = el("button", { class: "rm-choice", type: "button", text: label, dataset: { value } });
  btn.addEventListener("click", () => {
    group.querySelectorAll("button").forEach((b) => {
      b.disabled = true;
    });
    btn.classList.add("rm-chosen");
    opts.onChoose(label, value);
  });
  return btn;
}

function choiceGroup(cls, choices, opts) {
  const group = el("div", { class: cls });
  (choices || []).forEach((c) => group.append(choiceButton(c, opts, group)));
  return group;
}

function text(content) {
  return el("p", { class: "rm-text", text: content });
}

/* The nodes of a message's body. opts: interactive, onChoose(label, value), onImageLoad,
 * label (what to show instead of content: a reply's chosen label). */
export function renderContent(m, opts = {}) {
  const rm = (m.rich_media && typeof m.rich_media === "object" && m.rich_media) || {};
  const out = [];
  let url;
  switch (m.content_type) {
    case "image": {
      url = safeUrl(rm.url);
      if (url) {
        const img = el("img", { src: url, alt: rm.alt || m.content || "Image" });
        if (opts.onImageLoad) img.addEventListener("load", opts.onImageLoad);
        out.push(
          el(
            "a",
            { class: "rm-image", href: url, target: "_blank", rel: "noopener noreferrer" },
            img,
          ),
        );
      }
      if (m.content) out.push(text(m.content));
      break;
    }
    case "file": {
      url = safeUrl(rm.url);
      const size = [formatSize(rm.size), url ? "Download" : ""].filter(Boolean).join(" · ");
      out.push(
        el(
          url ? "a" : "span",
          {
            class: "rm-filecard",
            href: url,
            target: url ? "_blank" : null,
            rel: url ? "noopener noreferrer" : null,
            download: url ? rm.filename || "" : null,
            title: rm.mime_type || null,
          },
          fileIcon(),
          el(
            "span",
            { class: "rm-filemeta" },
            el("span", { class: "rm-filename", text: rm.filename || m.content || "File" }),
            el("span", { class: "rm-filesize", text: size }),
          ),
        ),
      );
      // A file message's content is usually its name, which the card shows already.
      if (m.content && m.content !== rm.filename) out.push(text(m.content));
      break;
    }
    case "quick_button":
      if (m.content) out.push(text(m.content));
      out.push(choiceGroup("rm-choices", rm.buttons, opts));
      break;
    case "dropdown": {
      if (m.content) out.push(text(m.content));
      if (!opts.interactive) {
        out.push(el("div", { class: "rm-placeholder", text: rm.placeholder || "Choose…" }));
        out.push(choiceGroup("rm-choices", rm.options, opts));
        break;
      }
      const select = el("select", { class: "rm-select", "aria-label": m.content || "Choose" });
      const ph = el("option", { value: "", text: rm.placeholder || "Choose…" });
      ph.disabled = true;
      ph.selected = true;
      select.append(ph);
      (rm.options || []).forEach((o) => {
        if (o) select.append(el("option", { value: String(o.value), text: o.label }));
      });
      select.addEventListener("change", () => {
        if (!select.value) return;
        select.disabled = true;
        opts.onChoose(select.selectedOptions[0].textContent, select.value);
      });
      out.push(select);
      break;
    }
    case "carousel": {
      if (m.content) out.push(text(m.content));
      const track = el("div", { class: "rm-carousel" });
      (rm.cards || []).forEach((c) => {
        if (!c) return;
        const src = safeUrl(c.image_url);
        const actions = el("div", { class: "rm-card-actions" });
        (c.buttons || []).forEach((b) => actions.append(choiceButton(b, opts, track)));
        track.append(
          el(
            "div",
            { class: "rm-card" },
            src
              ? el("img", { class: "rm-card-img", src, alt: c.title || "", loading: "lazy" })
              : null,
            el("div", { class: "rm-card-title", text: c.title || "" }),
            c.subtitle ? el("div", { class: "rm-card-sub", text: c.subtitle }) : null,
            actions.childElementCount ? actions : null,
          ),
        );
      });
      out.push(track);
      break;
    }
    default:
      if (opts.label) {
        // A picked choice: its label, and the value sent as a hint.
        const p = text(opts.label);
        p.title = "sent: " + m.content;
        p.dataset.value = m.content;
        out.push(p);
      } else {
        out.push(text(m.content));
      }
  }
  return out;
}
