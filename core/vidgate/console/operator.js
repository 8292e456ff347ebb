// The operator console: a read-only view of GET /v1/operator/overview, refreshed every few seconds.
import { ApiError, client, el, keyStore } from "./api.js";

const $ = (id) => document.getElementById(id);
const key = keyStore("vidgate.console.operator-key");
const REFRESH_MS = 5000;
let api = null;
let timer = null;

function showError(node, err) {
  node.textContent = err ? (err instanceof ApiError ? err.text : String(err.message || err)) : "";
  node.hidden = !err;
}

function table(node, headings, rows, empty) {
  const head = el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col", text: h }))));
  const body = el("tbody");
  for (const row of rows) body.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell instanceof Node ? cell : String(cell ?? "")))));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: String(headings.length), class: "hint", text: empty })));
  node.replaceChildren(head, body);
}

const when = (seconds) => new Date(seconds * 1000).toLocaleString();
const amount = (value) => (typeof value === "number" ? value.toFixed(4) : "");

function render(data) {
  table($("channels"), ["channel", "vendor", "breaker", "reason", "in flight", "max concurrent", "rate/min", "models", "groups"],
    data.channels.map((c) => [
      c.name, c.vendor, el("span", { class: `state state-${c.state}`, text: c.state }), c.reason || "",
      c.in_flight, c.max_concurrent ?? "∞", c.rate_per_minute ?? "∞", c.models.join(", "), c.groups.join(", "),
    ]), "No channel is configured.");
  table($("statuses"), ["status", "tasks"],
    Object.entries(data.tasks_by_status).sort().map(([status, n]) => [status, n]), "No task yet.");
  table($("failures"), ["task", "when", "token", "model", "channel", "error", "attempts"],
    data.recent_failures.map((f) => [
      f.id, when(f.updated_at), f.token ?? "", f.model, f.channel, `${f.error_message ?? ""} (${f.error_code ?? ""})`,
      el("ol", { class: "attempts" }, ...f.attempts.map((a) => el("li", { text: `${a.channel}: ${a.outcome}${a.detail ? ` (${a.detail})` : ""}` }))),
    ]), "No failed task.");
  table($("usage"), ["token", "model", "tasks", "estimated", "settled", "refunded", "net"],
    data.usage.map((u) => [u.token, u.model ?? "", u.tasks, amount(u.charged), amount(u.settled), amount(u.refunded), amount(u.net)]),
    "Nothing billed yet.");
  $("updated").textContent = `Updated ${when(data.generated_at)}`;
  $("who").textContent = `Signed in as ${data.operator}`;
  $("who").hidden = false;
}

async function refresh() {
  try {
    render(await api.json("v1/operator/overview"));
    showError($("overview-error"), null);
  } catch (err) {
    showError($("overview-error"), err);
  }
}

async function signIn(candidate) {
  const attempt = client(candidate);
  const data = await attempt.json("v1/operator/overview");
  api = attempt;
  key.set(candidate);
  render(data);
  $("sign-in").hidden = true;
  $("overview").hidden = false;
  $("sign-out").hidden = false;
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut() {
  clearInterval(timer);
  key.clear();
  api = null;
  $("overview").hidden = true;
  $("sign-out").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("operator-key").value = "";
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("sign-in-error"), null);
  try {
    await signIn($("operator-key").value.trim());
  } catch (err) {
    showError($("sign-in-error"), err);
  }
});
$("sign-out").addEventListener("click", signOut);
$("refresh").addEventListener("click", refresh);
const saved = key.get();
if (saved) signIn(saved).catch((err) => { key.clear(); showError($("sign-in-error"), err); });
