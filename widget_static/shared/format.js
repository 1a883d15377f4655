/* Small pure helpers of the widget and the agent app: URLs, sizes, times, ids, names. */

/* Links and images only to http(s) or our own root-relative paths (uploads): the server
 * validates rich_media the same way; this keeps javascript: out even if it did not. */
export function safeUrl(url) {
  if (typeof url !== "string") return null;
  if (/^https?:\/\/[^\s/]+/i.test(url)) return url;
  if (url.charAt(0) === "/" && url.charAt(1) !== "/" && url.charAt(1) !== "\\") return url;
  return null;
}

export function formatSize(size) {
  if (typeof size !== "number" || !isFinite(size) || size < 0) return "";
  if (size < 1024) return size + " B";
  if (size < 1024 * 1024) return (size / 1024).toFixed(size < 10240 ? 1 : 0) + " KB";
  return (size / (1024 * 1024)).toFixed(1) + " MB";
}

// The server's times are UTC without a zone suffix (as in the guide's examples).
export function parseTime(iso) {
  if (!iso) return null;
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z");
  return isNaN(d.getTime()) ? null : d;
}

export function nowIso() {
  return new Date().toISOString().replace("Z", "000");
}

/* A clock time today, else a short date and the time. */
export function formatTime(iso, withDate = false) {
  const d = parseTime(iso);
  if (!d) return "";
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (!withDate || d.toDateString() === new Date().toDateString()) return time;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => (b + 256).toString(16).slice(1)).join("");
}

/* A visitor without a name is "Visitor" and the start of their id, in hex: the widget's
 * session ids are hex already; any other id (a mobile app's) is shown by its hex digest. */
export function visitorName(endUser) {
  if (!endUser) return "Visitor";
  if (endUser.display_name) return endUser.display_name;
  return "Visitor " + visitorHex(endUser.external_id).slice(0, 8);
}

/* The visitor's id as hex: itself when it is hex, else the hex of its UTF-8 bytes. */
export function visitorHex(externalId) {
  const id = String(externalId || "");
  if (/^[0-9a-f]+$/i.test(id)) return id.toLowerCase();
  return Array.from(new TextEncoder().encode(id), (b) => (b + 256).toString(16).slice(1)).join("");
}
