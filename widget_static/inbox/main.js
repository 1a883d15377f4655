/* The agent app: the console shell (Inbox · Integrations · Team · Settings, routed by the URL's
 * fragment) around the inbox. Each part is a module; this one wires the page to them.
 *
 * Talks to the server only through the contract: REST under /api and Socket.IO events through
 * the official socket.io-client (window.io). Every piece of text that came from a visitor or
 * another agent is put into the page with textContent or as an attribute value.
 */
import { api } from "./api.js";
import "./composer.js";
import { startConsole } from "./console.js";
import "./conversation.js";
import "./list.js";
import "./presence.js";
import "./socket.js";
import { app, state } from "./state.js";
import { $ } from "./ui.js";

function signOut() {
  api("/auth/logout", { method: "POST" })
    .catch(() => {
      /* the session may already be gone */
    })
    .then(() => window.location.assign("/auth/login"));
}
app.signOut = signOut;

document.querySelectorAll(".filters [data-filter]").forEach((tab) => {
  tab.addEventListener("click", () => app.setFilter(tab.dataset.filter));
});
$("#claim").addEventListener("click", () => {
  if (state.current) app.claim(state.current);
});
$("#resolve-form").addEventListener("submit", app.resolveCurrent);
$("#load-older").addEventListener("click", app.loadOlder);
$("#composer").addEventListener("submit", app.submitComposer);
$("#composer").addEventListener("input", app.onComposerInput);
$("#composer-type").addEventListener("change", (ev) => app.setComposerType(ev.target.value));
$("#composer-text").addEventListener("keydown", (ev) => {
  if (
    ev.key === "Enter" &&
    !ev.shiftKey &&
    !ev.isComposing &&
    $("#composer-type").value === "text"
  ) {
    ev.preventDefault();
    $("#composer").requestSubmit();
  }
});
$("#attach").addEventListener("click", () => $("#file-input").click());
$("#file-input").addEventListener("change", (ev) => app.uploadAndSend(ev.target.files[0]));
$("#sign-out").addEventListener("click", signOut);
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !state.current) return;
  if (state.unread.delete(state.current)) {
    app.updateTitle();
    app.renderList();
  }
  app.markRead();
});

app.setComposerType("text");
app.renderList();
app.updateTitle();
app.loadTeam();
startConsole();
