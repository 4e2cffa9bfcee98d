// The REST API and the caller's session.
//
// The access token lives in this module's memory only; the refresh token is an
// HttpOnly cookie that scripts cannot read, sent by the browser to /api/v1/auth
// alone and never on another site's request. Refreshing is serialised across
// tabs (Web Locks): two tabs spending the same refresh token at once would look
// like a stolen token to the server, which then revokes the sign-in.

const API = "/api/v1";
const REFRESH_LOCK = "edgefleet-refresh";
// Set while this browser holds a sign-in, so that a first visit does not ask the
// server to refresh a cookie that is not there (and log a 401).
const SIGNED_IN = "edgefleet.signed-in";
let access = null;
let expires = 0;
let me = null;
const signedOut = new Set();

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function failure(answer) {
  let type = "GENERAL_ERROR";
  let message = answer.statusText;
  try {
    const body = await answer.json();
    type = body.error?.type ?? body.type ?? type;
    message = body.error?.message ?? body.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(answer.status, type, message);
}

async function post(path, body) {
  return fetch(API + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
}

async function adopt(answer) {
  if (!answer.ok) throw await failure(answer);
  const pair = (await answer.json()).data;
  access = pair.access_token;
  expires = Date.now() + pair.expires_in * 1000;
  me = await call("GET", "/auth/me");
  localStorage.setItem(SIGNED_IN, "1");
  return me;
}

async function refreshNow() {
  const run = async () => adopt(await post("/auth/refresh", {}));
  return navigator.locks ? navigator.locks.request(REFRESH_LOCK, run) : run();
}

/** Resume the session the cookie holds (a reload); null when there is none. */
export async function restore() {
  if (!localStorage.getItem(SIGNED_IN)) return null;
  try {
    return await refreshNow();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
      localStorage.removeItem(SIGNED_IN);
      return null;
    }
    throw error;
  }
}

export async function signIn(username, password) {
  return adopt(await post("/auth/login", { username, password }));
}

/** Revoke the refresh token (the cookie) and forget the access token. */
export async function signOut() {
  try {
    await post("/auth/logout", {});
  } finally {
    forget();
  }
}

function forget() {
  localStorage.removeItem(SIGNED_IN);
  access = null;
  me = null;
  for (const listener of signedOut) listener();
}

export function onSignedOut(listener) {
  signedOut.add(listener);
}

export function currentUser() {
  return me;
}

/** A header for requests the caller makes itself (the event stream). */
export async function authorization() {
  if (!access || Date.now() > expires - 30_000) await refreshNow();
  return { Authorization: `Bearer ${access}` };
}

async function send(method, path, body, extra) {
  const headers = { ...(await authorization()), ...extra };
  const init = { method, headers };
  if (body instanceof Blob) {
    init.body = body;
    headers["Content-Type"] = body.type || "application/octet-stream";
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  return fetch(API + path, init);
}

/** The data of an API call; ApiError with the envelope's type and message.
 *  headers: more request headers (If-Match). */
export async function call(method, path, body, headers) {
  let answer = await send(method, path, body, headers);
  if (answer.status === 401 && access) {
    try {
      await refreshNow();
    } catch (error) {
      forget();
      throw error;
    }
    answer = await send(method, path, body, headers);
  }
  if (!answer.ok) throw await failure(answer);
  return (await answer.json()).data;
}

export const get = (path) => call("GET", path);

/** A query string of the values that are set. */
export function query(params) {
  const kept = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return kept.length ? `?${new URLSearchParams(kept)}` : "";
}

/** A device's file as a blob: URL for an <img> (files need the bearer token). */
export async function fileUrl(url) {
  const answer = await fetch(url, { headers: await authorization() });
  if (!answer.ok) throw await failure(answer);
  const blob = await answer.blob();
  return { url: URL.createObjectURL(blob), type: blob.type };
}

/** Does the caller hold permission everywhere, or on one of groupIds? */
export function can(permission, groupIds) {
  const held = me?.permissions.find((p) => p.permission === permission);
  if (!held) return false;
  if (held.everywhere || groupIds === undefined) return true;
  return groupIds.some((id) => held.group_ids.includes(id));
}

/** Does the caller hold permission on the whole installation (not only on some
 *  groups)? Jobs need that: a job spans groups. */
export function everywhere(permission) {
  return Boolean(me?.permissions.find((p) => p.permission === permission)?.everywhere);
}
