// The client console: sign in, create videos, watch them render, play them.
// Everything a user or a vendor wrote (prompts, error messages) is set as textContent.
import { ApiError, client, el, formatCost, keyStore } from "./api.js";

const $ = (id) => document.getElementById(id);
const key = keyStore("vidgate.console.key");
const TERMINAL = ["completed", "failed", "cancelled"];

let api = null;
let models = new Map(); // id -> model object from GET /v1/models
const cards = new Map(); // task id -> { node, task, stream, urls }
let pickedImage = null; // a data URL

function show(node, visible) {
  node.hidden = !visible;
}

function showError(node, err) {
  if (!err) {
    node.textContent = "";
    show(node, false);
    return;
  }
  node.textContent = err instanceof ApiError ? err.text : String(err.message || err);
  show(node, true);
}

// -- sign in -------------------------------------------------------------------------

async function signIn(candidate) {
  const attempt = client(candidate);
  const list = await attempt.json("v1/models");
  api = attempt;
  key.set(candidate);
  models = new Map(list.data.map((m) => [m.id, m]));
  const select = $("model");
  select.replaceChildren(...list.data.map((m) => el("option", { value: m.id, text: m.id })));
  describeModel();
  show($("sign-in"), false);
  show($("workspace"), true);
  show($("sign-out"), true);
  $("who").textContent = `${list.data.length} model${list.data.length === 1 ? "" : "s"} available`;
  show($("who"), true);
  await loadTasks();
}

function signOut() {
  key.clear();
  api = null;
  for (const card of cards.values()) forget(card);
  cards.clear();
  $("tasks").replaceChildren();
  show($("workspace"), false);
  show($("sign-out"), false);
  show($("who"), false);
  show($("sign-in"), true);
  $("api-key").value = "";
}

function describeModel() {
  const model = models.get($("model").value);
  if (!model) {
    $("model-info").textContent = "";
    return;
  }
  const caps = model.capabilities || {};
  const can = Object.entries(caps).filter(([, v]) => v).map(([k]) => k.replaceAll("_", " "));
  const seconds = model.seconds && model.seconds.length
    ? `${Math.min(...model.seconds)}-${Math.max(...model.seconds)} s` : "any length";
  $("model-info").textContent = [model.description, seconds, can.join(", ")].filter(Boolean).join(" · ");
  const input = $("seconds");
  input.placeholder = model.default_seconds ? String(model.default_seconds) : "";
  if (model.seconds && model.seconds.length) {
    input.min = String(Math.min(...model.seconds));
    input.max = String(Math.max(...model.seconds));
  } else {
    input.removeAttribute("max");
  }
}

// -- image pick and drop --------------------------------------------------------------

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function useImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError($("create-error"), new ApiError(`${file.name} is not an image.`, { param: "image" }));
    return;
  }
  pickedImage = await readAsDataUrl(file);
  $("image-preview").src = pickedImage;
  show($("image-preview"), true);
  show($("image-clear"), true);
}

function clearImage() {
  pickedImage = null;
  $("image").value = "";
  $("image-preview").removeAttribute("src");
  show($("image-preview"), false);
  show($("image-clear"), false);
}

// -- create ---------------------------------------------------------------------------

function createBody() {
  const body = { model: $("model").value, prompt: $("prompt").value };
  const seconds = $("seconds").value.trim();
  if (seconds) body.seconds = Number(seconds);
  const size = $("size").value.trim();
  if (size) body.size = size;
  if (pickedImage) body.image = pickedImage;
  const metadata = $("metadata").value.trim();
  if (metadata) {
    try {
      body.metadata = JSON.parse(metadata);
    } catch (err) {
      throw new ApiError(`metadata is not valid JSON: ${err.message}`, { param: "metadata" });
    }
  }
  return body;
}

async function create(event) {
  event.preventDefault();
  const button = $("generate");
  showError($("create-error"), null);
  button.disabled = true;
  try {
    const task = await api.json("v1/video/generations", { method: "POST", body: createBody() });
    track(task, { prepend: true });
  } catch (err) {
    showError($("create-error"), err);
  } finally {
    button.disabled = false;
  }
}

// -- the task list ----------------------------------------------------------------------

async function loadTasks() {
  showError($("list-error"), null);
  try {
    const page = await api.json("v1/videos?limit=50&order=desc");
    const seen = new Set();
    for (const task of page.data) {
      seen.add(task.id);
      track(task, { prepend: false });
    }
    for (const [id, card] of cards) {
      if (!seen.has(id) && TERMINAL.includes(card.task.status)) {
        forget(card);
        card.node.remove();
        cards.delete(id);
      }
    }
  } catch (err) {
    showError($("list-error"), err);
  }
}

function forget(card) {
  if (card.stream) card.stream.abort();
  for (const url of card.urls) URL.revokeObjectURL(url);
  card.urls = [];
}

function track(task, { prepend }) {
  let card = cards.get(task.id);
  if (!card) {
    card = { task, node: buildCard(task), stream: null, urls: [], media: false };
    cards.set(task.id, card);
    const list = $("tasks");
    if (prepend) list.prepend(card.node);
    else list.append(card.node);
  }
  update(card, task);
  if (!TERMINAL.includes(task.status) && !card.stream) follow(card);
}

function follow(card) {
  card.stream = new AbortController();
  api.events(`v1/videos/${encodeURIComponent(card.task.id)}/events`, (_type, task) => update(card, task), card.stream.signal)
    .catch((err) => {
      if (err.name !== "AbortError") showError(card.parts.error, err);
    })
    .finally(() => {
      card.stream = null;
    });
}

function buildCard(task) {
  const parts = {
    title: el("h3", { class: "prompt", text: task.prompt || "(no prompt)" }),
    status: el("p", { class: "status" }),
    progress: el("progress", { max: "100", value: "0", "aria-label": "Progress" }),
    facts: el("p", { class: "facts" }),
    cost: el("p", { class: "cost" }),
    error: el("p", { class: "error", role: "alert", hidden: true }),
    media: el("div", { class: "media" }),
    actions: el("div", { class: "actions" }),
    forms: el("div", { class: "forms" }),
  };
  const node = el(
    "article",
    { class: "task", "aria-label": task.prompt || task.id, "data-task-id": task.id },
    parts.title, parts.status, parts.progress, parts.facts, parts.cost, parts.error, parts.media, parts.actions,
    parts.forms,
  );
  node.parts = parts;
  return node;
}

function update(card, task) {
  card.task = task;
  const { parts } = card.node;
  card.parts = parts;
  card.node.dataset.status = task.status;
  parts.status.textContent = task.status;
  parts.progress.value = task.progress;
  show(parts.progress, !TERMINAL.includes(task.status));
  parts.progress.textContent = `${task.progress}%`;
  parts.facts.textContent = [
    task.model, task.size, task.seconds ? `${task.seconds} s` : null,
    TERMINAL.includes(task.status) ? null : `${task.progress}%`,
    task.remixed_from_video_id ? `remix of ${task.remixed_from_video_id}` : null,
  ].filter(Boolean).join(" · ");
  const cost = formatCost(task.usage);
  parts.cost.textContent = cost ? `cost ${cost}` : "";
  if (task.error) {
    parts.error.textContent = `${task.error.message} (${task.error.code})`;
    show(parts.error, true);
  }
  if (task.status === "completed" && !card.media) {
    card.media = true;
    loadMedia(card);
  }
  renderActions(card);
}

async function loadMedia(card) {
  const { parts } = card.node;
  const id = encodeURIComponent(card.task.id);
  try {
    const thumb = await api.blobUrl(`v1/videos/${id}/content?variant=thumbnail`);
    card.urls.push(thumb);
    parts.media.append(el("img", { class: "thumbnail", src: thumb, alt: "Thumbnail" }));
  } catch (err) {
    if (err.status !== 404) showError(parts.error, err); // some vendors make no thumbnail
  }
  try {
    // A <video src> cannot send the key: fetch the file with it, play it from memory.
    const video = await api.blobUrl(`v1/videos/${id}/content`);
    card.urls.push(video);
    const player = el("video", { src: video, controls: true, muted: true, loop: true, playsinline: true, preload: "auto" });
    player.muted = true;
    parts.media.append(player);
    parts.media.append(el("a", { href: video, download: `${card.task.id}.mp4`, text: "Download" }));
  } catch (err) {
    showError(parts.error, err);
  }
}

function button(label, onclick, cls = "") {
  return el("button", { type: "button", class: cls, text: label, onclick });
}

function renderActions(card) {
  const { task } = card;
  const { parts } = card.node;
  const caps = (models.get(task.model) || {}).capabilities || {};
  const actions = [];
  if (!TERMINAL.includes(task.status)) actions.push(button("Cancel", () => act(card, "cancel")));
  if (TERMINAL.includes(task.status)) actions.push(button("Delete", () => act(card, "delete"), "danger"));
  if (task.status === "completed" && caps.remix) actions.push(button("Remix", () => openForm(card, "remix")));
  if (task.status === "completed" && caps.extend) actions.push(button("Extend", () => openForm(card, "extend")));
  const labels = actions.map((b) => b.textContent).join("|");
  if (parts.actions.dataset.labels !== labels) {
    parts.actions.dataset.labels = labels;
    parts.actions.replaceChildren(...actions);
  }
}

async function act(card, verb) {
  const id = encodeURIComponent(card.task.id);
  showError(card.node.parts.error, null);
  try {
    if (verb === "cancel") {
      update(card, await api.json(`v1/videos/${id}/cancel`, { method: "POST" }));
    } else {
      await api.json(`v1/videos/${id}`, { method: "DELETE" });
      forget(card);
      card.node.remove();
      cards.delete(card.task.id);
    }
  } catch (err) {
    showError(card.node.parts.error, err);
  }
}

// Remix and extend ask for a prompt (and extend for seconds) in a small form on the card.
function openForm(card, kind) {
  const { parts } = card.node;
  const uid = `${kind}-${card.task.id}`;
  const prompt = el("input", { id: `${uid}-prompt`, required: true });
  const seconds = el("input", { id: `${uid}-seconds`, type: "number", min: "1", step: "1" });
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const title = kind === "remix" ? "Remix prompt" : "Extension prompt";
  const fields = [el("label", { for: prompt.id, text: title }), prompt];
  if (kind === "extend") fields.push(el("label", { for: seconds.id, text: "Extra seconds" }), seconds);
  const form = el(
    "form", { class: "inline-form", "aria-label": kind === "remix" ? "Remix" : "Extend" },
    ...fields,
    el("button", { type: "submit", text: kind === "remix" ? "Submit remix" : "Submit extension" }),
    button("Close", () => form.remove()),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    try {
      let task;
      if (kind === "remix") {
        task = await api.json(`v1/videos/${encodeURIComponent(card.task.id)}/remix`, {
          method: "POST", body: { prompt: prompt.value },
        });
      } else {
        const body = { prompt: prompt.value, video: { id: card.task.id } };
        if (seconds.value.trim()) body.seconds = Number(seconds.value);
        task = await api.json("v1/videos/extensions", { method: "POST", body });
      }
      form.remove();
      track(task, { prepend: true });
    } catch (err) {
      showError(error, err);
    }
  });
  parts.forms.replaceChildren(form);
  prompt.focus();
}

// -- wiring ---------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError($("sign-in-error"), null);
    try {
      await signIn($("api-key").value.trim());
    } catch (err) {
      showError($("sign-in-error"), err);
    }
  });
  $("sign-out").addEventListener("click", signOut);
  $("create-form").addEventListener("submit", create);
  $("model").addEventListener("change", describeModel);
  $("refresh").addEventListener("click", loadTasks);
  $("image").addEventListener("change", () => useImage($("image").files[0]));
  $("image-clear").addEventListener("click", clearImage);
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    useImage(event.dataTransfer.files[0]);
  });
  const saved = key.get();
  if (saved) {
    signIn(saved).catch((err) => {
      key.clear();
      showError($("sign-in-error"), err);
    });
  }
}

wire();
