// The integration guide's flow driven by the official socket.io-client, unchanged.
// usage: node guide_flow.mjs <base-url> <embed-token> <agent-email> <password> <mode>
// mode: "default" (the client's default options: polling, then upgrade) or "websocket".
import { io } from "socket.io-client";

const [base, token, email, password, mode] = process.argv.slice(2);
const opts = mode === "websocket" ? { transports: ["websocket"] } : {};

function waitFor(socket, event, pred = () => true, ms = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), ms);
    const handler = (data) => {
      if (pred(data)) {
        clearTimeout(timer);
        socket.off(event, handler);
        resolve(data);
      }
    };
    socket.on(event, handler);
  });
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const report = { mode };
const login = await fetch(`${base}/auth/login`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ email, password }),
});
check(login.status === 200, `login status ${login.status}`);
const { csrf_token: csrf, user } = await login.json();
const cookie = login.headers.get("set-cookie").split(";")[0];

const opened = await fetch(`${base}/chat-widget/conversations`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ embed_token: token, external_id: `js-${Date.now()}`, customer_name: "JS Visitor" }),
});
check(opened.status === 201, `open status ${opened.status}`);
const conv = await opened.json();
const externalId = conv.end_user.external_id;

const agent = io(base, { ...opts, extraHeaders: { Cookie: cookie } });
const visitor = io(base, opts);
await Promise.all([connected(agent), connected(visitor)]);

agent.emit("join_queue");
await agent.emitWithAck("join_org_presence");
const joined = await visitor.emitWithAck("join_conversation", {
  conversation_id: conv.id,
  external_id: externalId,
});
check(joined.conversation_id === conv.id, "join ack");

const updated = waitFor(agent, "conversation_updated", (d) => d.conversation_id === conv.id);
visitor.emit("send_message", {
  conversation_id: conv.id,
  content: "Hello, I need help",
  content_type: "text",
  sender_type: "end_user",
  external_id: externalId,
});
const upd = await updated;
check(upd.content === "Hello, I need help" && upd.sender_type === "end_user", "conversation_updated");

const assigned = waitFor(agent, "conversation_assigned", (d) => d.conversation_id === conv.id);
agent.emit("claim_conversation", { conversation_id: conv.id });
const asg = await assigned;
check(asg.assigned_to === user.id, "conversation_assigned");

const typing = waitFor(visitor, "typing_indicator", (d) => d.conversation_id === conv.id);
agent.emit("user_typing", { conversation_id: conv.id, sender_type: "agent" });
check((await typing).sender_type === "agent", "typing_indicator");

const reply = waitFor(visitor, "message_received", (d) => d.sender_type === "agent");
const cleared = waitFor(visitor, "typing_cleared", (d) => d.conversation_id === conv.id);
agent.emit("send_message", {
  conversation_id: conv.id,
  content: "Hi! How can I help you today?",
  content_type: "text",
  sender_type: "agent",
});
const msg = await reply;
check(msg.content === "Hi! How can I help you today?" && msg.seq === 2, "message_received");
await cleared;

const rich = await visitor.emitWithAck("send_message", {
  conversation_id: conv.id,
  content: "Choose an option:",
  content_type: "quick_button",
  rich_media: { buttons: [{ label: "Yes", value: "yes" }, { label: "No", value: "no" }] },
  sender_type: "end_user",
  external_id: externalId,
});
check(rich.seq === 3 && rich.rich_media.buttons.length === 2, "rich ack");

const bad = await visitor.emitWithAck("send_message", { conversation_id: conv.id });
check(bad.error && bad.error.code === "invalid_input", "invalid payload refused");

const resolved = await fetch(`${base}/api/conversations/${conv.id}/resolve`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Cookie: cookie, "X-CSRFToken": csrf },
  body: JSON.stringify({ tags: ["billing"] }),
});
check(resolved.status === 200, `resolve status ${resolved.status}`);
const res = await resolved.json();
check(res.status === "resolved" && res.tags[0] === "billing", "resolve body");

report.transport = { agent: agent.io.engine.transport.name, visitor: visitor.io.engine.transport.name };
report.ok = true;
agent.close();
visitor.close();
console.log(JSON.stringify(report));
