// The gateway API as the console uses it: the key lives in sessionStorage (this tab only,
// gone when it closes) and travels only in the Authorization header, never in a URL.

// The API root, relative to this file (/console/static/api.js -> /), so a gateway served
// under a path prefix by a proxy works too.
export const ROOT = new URL("../../", import.meta.url);

export class ApiError extends Error {
  constructor(message, { status = 0, param = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.param = param;
    this.code = code;
  }

  // The API's message with the field it names, as the console shows it.
  get text() {
    return this.param ? `${this.message} (field: ${this.param})` : this.message;
  }
}

export function keyStore(name) {
  return {
    get: () => sessionStorage.getItem(name),
    set: (key) => sessionStorage.setItem(name, key),
    clear: () => sessionStorage.removeItem(name),
  };
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not the error shape (a proxy's page): fall back to the status line
  }
  const error = body && body.error;
  if (error && typeof error.message === "string") {
    return new ApiError(error.message, { status: response.status, param: error.param, code: error.code });
  }
  return new ApiError(`The gateway answered ${response.status} ${response.statusText}.`, { status: response.status });
}

export function client(key) {
  const headers = (extra = {}) => ({ Authorization: `Bearer ${key}`, ...extra });

  async function raw(path, { method = "GET", body, accept, signal, headers: extra } = {}) {
    const init = { method, headers: headers(extra), signal, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (accept) init.headers.Accept = accept;
    let response;
    try {
      response = await fetch(new URL(path, ROOT), init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(`The gateway could not be reached: ${err.message}`);
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  return {
    raw,
    json: async (path, options) => (await raw(path, options)).json(),
    // The bytes of a content URL as an object URL the page may put in <video>/<img>:
    // neither element can send an Authorization header.
    blobUrl: async (path, signal) => URL.createObjectURL(await (await raw(path, { signal })).blob()),
    events: (path, onEvent, signal) => readEvents(raw, path, onEvent, signal),
  };
}

// Split a text/event-stream body into events (the WHATWG rules that matter here:
// "field: value" lines, data lines joined by "\n", a blank line ends an event,
// lines starting with ":" are comments).
export function sseParser(onEvent) {
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) onEvent({ type: event.type, data: event.data.join("\n"), id: event.id });
        event = { type: "message", data: [], id: event.id };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") event.data.push(value);
      else if (field === "event") event.type = value;
      else if (field === "id") event.id = value;
    }
  };
}

// EventSource cannot send an Authorization header, so the stream is read with fetch().
// Reconnects with Last-Event-ID until a terminal event (or the signal aborts).
async function readEvents(raw, path, onEvent, signal) {
  let lastId = null;
  let finished = false;
  for (let attempt = 0; !finished && attempt < 20; attempt++) {
    const headers = lastId === null ? {} : { "Last-Event-ID": lastId };
    let response;
    try {
      response = await raw(path, { accept: "text/event-stream", signal, headers });
    } catch (err) {
      if (err.name === "AbortError" || err.status) throw err;
      await new Promise((done) => setTimeout(done, 1000));
      continue;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const feed = sseParser((event) => {
      if (event.id !== null) lastId = event.id;
      const task = JSON.parse(event.data);
      if (["completed", "failed", "cancelled"].includes(task.status)) finished = true;
      onEvent(event.type, task);
    });
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(value);
      }
    } catch (err) {
      if (err.name === "AbortError") throw err;
    }
  }
}

export function formatCost(usage) {
  if (!usage || typeof usage.cost !== "number") return "";
  return usage.cost.toFixed(4);
}

// An element with children, text set as text (never parsed as HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}
