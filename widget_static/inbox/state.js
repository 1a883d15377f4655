/* The agent app's shared state: who is signed in (from the page), what is shown, and `app`,
 * where each module puts the functions others call (modules import state.js, never each
 * other in a circle: their URLs carry the versions of what they import). */

export const PAGE_SIZE = 50;
export const ACK_TIMEOUT_MS = 10000;
export const TYPING_EVERY_MS = 2000;
export const FILTERS = ["unassigned", "mine", "bot", "all"];

const body = document.body;
export const ME = {
  id: body.dataset.userId,
  name: body.dataset.userName,
  email: body.dataset.userEmail,
  role: body.dataset.userRole,
  orgId: body.dataset.orgId,
};
export const IS_ADMIN = ME.role === "owner" || ME.role === "admin";

function initialFilter() {
  const f = new URLSearchParams(window.location.search).get("filter");
  return FILTERS.indexOf(f) >= 0 ? f : "unassigned";
}

export const state = {
  filter: initialFilter(),
  convs: new Map(), // id -> conversation, as GET /api/conversations/<id> shapes it
  previews: new Map(), // id -> the last conversation_updated payload
  resolutions: new Map(), // id -> {tags, resolved_at} of the session last resolved here
  unread: new Set(), // conversation ids with visitor messages the agent has not seen
  inflight: new Map(), // id -> {dirty} while GET /api/conversations/<id> runs
  queued: null, // queue events that arrive while the list loads, replayed after it
  listGeneration: 0,
  current: null,
  messages: new Map(), // seq -> message of the open conversation
  choices: null, // what the open conversation offered the visitor (shared/render.js)
  readSent: new Set(),
  lastSeq: 0, // the highest seq shown; gaps.gapFree() is the highest without a hole
  oldestSeq: null,
  flagged: new Set(), // ids of the open conversation's messages moderation flagged
  bots: new Map(), // id -> {id, name, avatar_url} of the organization's bots
  team: new Map(), // id -> {id, display_name, role}
  online: new Set(),
  teamRequested: false,
  lastTypingEmit: 0,
  busy: false,
};

// Filled by the modules: list.js, conversation.js, composer.js, presence.js, console.js.
export const app = {};
