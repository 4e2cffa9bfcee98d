// The fleet's live events: one stream per tab (GET /api/v1/stream), read with
// fetch so that the access token goes in a header (EventSource cannot send one).
// Pages listen by event type; a dropped stream comes back with Last-Event-ID and
// the server replays what was missed.

import { authorization } from "./api.js";

const TYPES = ["device.state", "device.status", "command.result", "record.created", "config.reported", "job.progress"];
const RETRY_MS = 2000;
const listeners = new Set();
let controller = null;
let lastId = null;

/** Call listener(event) for every event until the returned function is called. */
export function listen(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function dispatch(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) lastId = line.slice(3).trim();
    else if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return;
  const event = { ...JSON.parse(data.join("\n")), type };
  for (const listener of listeners) listener(event);
}

async function read(signal) {
  const headers = await authorization();
  if (lastId) headers["Last-Event-ID"] = lastId;
  const answer = await fetch(`/api/v1/stream?types=${TYPES.join(",")}`, { headers, signal });
  if (!answer.ok) throw new Error(String(answer.status));
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

/** Open the stream (once signed in) and keep it open until stop(). */
export function start() {
  stop();
  const own = new AbortController();
  controller = own;
  (async () => {
    while (!own.signal.aborted) {
      try {
        await read(own.signal);
      } catch {
        // dropped, refused or aborted: wait, then resume from lastId
      }
      if (!own.signal.aborted) await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  })();
}

export function stop() {
  controller?.abort();
  controller = null;
  lastId = null;
}
