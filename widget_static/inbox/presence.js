/* The team panel: everyone in the organization, online first (org presence room). */
import { el } from "../shared/render.js";
import { api } from "./api.js";
import { app, ME, state } from "./state.js";
import { $, toast } from "./ui.js";

// ---- the team -------------------------------------------------------------------------

function loadTeam() {
  if (state.teamRequested) return Promise.resolve();
  state.teamRequested = true;
  return api("/api/team")
    .then(function (members) {
      members.forEach(function (m) {
        state.team.set(m.id, m);
      });
      renderTeam();
      app.renderList();
      if (state.current) app.renderHeader();
    })
    .catch(function (err) {
      toast(err.message);
    })
    .then(function () {
      // A colleague added later (unknown id on agent_status_changed) asks again.
      state.teamRequested = false;
    });
}

function renderTeam() {
  var ids = new Set();
  state.team.forEach(function (_m, id) {
    ids.add(id);
  });
  state.online.forEach(function (id) {
    ids.add(id);
  });
  var members = Array.from(ids).map(function (id) {
    var m = state.team.get(id) || { id: id, display_name: id, role: "" };
    return { id: id, name: m.display_name, role: m.role, online: state.online.has(id) };
  });
  members.sort(function (a, b) {
    if (a.online !== b.online) return a.online ? -1 : 1;
    return a.name.localeCompare(b.name);
  });
  var list = $("#team-list");
  list.replaceChildren.apply(
    list,
    members.map(function (m) {
      return el(
        "li",
        {
          class: "member",
          dataset: { agentId: m.id, status: m.online ? "online" : "offline" },
          title: m.online ? "Online" : "Offline",
        },
        el("span", { class: "dot", "aria-hidden": "true" }),
        el("span", { class: "member-name", text: m.name }),
        m.id === ME.id ? el("span", { class: "member-you", text: "(you)" }) : null,
        el("span", { class: "member-status", text: m.online ? "online" : "offline" }),
        m.role ? el("span", { class: "member-role", text: m.role }) : null,
      );
    }),
  );
  if (app.presenceChanged) app.presenceChanged();
}

Object.assign(app, { loadTeam, renderTeam });
