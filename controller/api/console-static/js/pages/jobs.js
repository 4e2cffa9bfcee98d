// Jobs: the list (state, action, progress, rate) and one job (its settings, its
// progress as job.progress events come, its executions page by page, and pause,
// resume and cancel for those who may send commands everywhere).
//
// A job spans groups, so the API shows jobs only to callers whose permission
// holds on the whole installation; the menu offers the pages to them alone.

import { call, everywhere, get, query } from "../api.js";
import { h, put } from "../dom.js";
import { number, t, term, when } from "../i18n.js";
import { dangerButton, facts, json, link, pager, problem, section, table } from "../ui.js";

const PER_PAGE = 50;
const REDRAW_MS = 1000;
const DONE = ["succeeded", "failed", "timed_out", "skipped", "canceled"];
const FAILED = ["failed", "timed_out"];

function stateBadge(state) {
  return h("span", { class: `badge job-${state}`, "data-job-state": state }, term("job.state", state));
}

function executionBadge(state) {
  return h("span", { class: `badge execution-${state}`, "data-execution": state }, term("execution.state", state));
}

function actionOf(job) {
  if (job.action.update) return t("job.action_update", { artifact: job.action.update.artifact_id });
  return t("job.action_command", { order: job.action.command.order });
}

function sum(counts, states) {
  return states.reduce((total, state) => total + (counts[state] ?? 0), 0);
}

/** "12 of 40 done, 1 failed". */
function progress(job) {
  const all = Object.values(job.counts).reduce((a, b) => a + b, 0);
  return t("job.progress", { done: number(sum(job.counts, DONE)), all: number(all), failed: number(sum(job.counts, FAILED)) });
}

function rate(job) {
  return t("job.rate_value", { rate: number(job.rate, 1) });
}

/** Call f at most once per REDRAW_MS while events keep coming. */
function throttled(f) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      f();
    }, REDRAW_MS);
  };
}

export async function jobs(ctx) {
  const page = Number(ctx.query.get("page") || 1);
  const results = h("div", { "data-testid": "jobs" });
  const draw = (found) => {
    const columns = [
      [t("job.name"), (j) => link(`jobs/${j.job_id}`, j.name)],
      [t("job.state_label"), (j) => stateBadge(j.state)],
      [t("job.action"), actionOf],
      [t("job.progress_label"), progress],
      [t("job.rate"), rate],
      [t("job.created"), (j) => when(j.created_at)],
    ];
    put(
      results,
      table(t("nav.jobs"), columns, found.items, (j) => ({ "data-job": j.job_id })),
      pager(found.page, found.per_page, found.total, (n) => (window.location.hash = `#/jobs?page=${n}`)),
    );
  };
  const read = async () => {
    try {
      const found = await get(`/jobs${query({ page, per_page: PER_PAGE })}`);
      if (!ctx.stale()) draw(found);
    } catch (error) {
      put(results, problem(error));
    }
  };
  draw(await get(`/jobs${query({ page, per_page: PER_PAGE })}`));
  const soon = throttled(read);
  ctx.live((event) => event.type === "job.progress" && soon());
  return h("div", {}, h("h1", {}, t("nav.jobs")), results);
}

function target(job) {
  const { group_id: group, selector, device_ids: ids } = job.target;
  if (group) return link(`devices?group=${group}`, t("job.target_group", { group }));
  if (selector) return t("job.target_selector", { selector });
  return t("job.target_devices", { count: number(ids.length) });
}

function settings(job) {
  const { rollout } = job;
  const action = job.action.update ? job.action.update : job.action.command;
  return facts([
    [t("job.state_label"), stateBadge(job.state)],
    [t("job.reason"), job.reason],
    [t("job.action"), actionOf(job)],
    [t("job.parameters"), job.action.command ? json(action.params ?? {}) : null],
    [t("job.target"), target(job)],
    [t("job.rate"), rate(job)],
    [t("job.rollout"), t("job.rollout_value", { rate: number(rollout.max_per_minute, 1), factor: number(rollout.increase_factor, 2), after: number(rollout.increase_after) })],
    [t("job.abort"), job.abort ? t("job.abort_value", { percent: number(job.abort.failure_percent, 1), min: number(job.abort.min_executed) }) : null],
    [t("job.device_timeout"), t("job.seconds", { seconds: number(job.device_timeout, 1) })],
    [t("job.retries"), number(job.retries)],
    [t("job.deadline"), when(job.deadline)],
    [t("job.actor"), job.actor],
    [t("job.created"), when(job.created_at)],
    [t("job.finished"), when(job.finished_at)],
  ]);
}

function counts(job) {
  const states = Object.entries(job.counts).filter(([, n]) => n > 0);
  return h(
    "div",
    { "data-testid": "job-progress" },
    h("p", {}, progress(job)),
    h("ul", { class: "chips" }, states.map(([state, n]) => h("li", {}, executionBadge(state), " ", number(n)))),
  );
}

function executions(found, go) {
  const columns = [
    [t("execution.device"), (e) => link(`devices/${e.device_id}`, e.device_id)],
    [t("execution.state_label"), (e) => executionBadge(e.state)],
    [t("execution.attempts"), (e) => number(e.attempts)],
    [t("execution.result"), (e) => [e.result_status ? term("command.status", e.result_status) : "", " ", e.result_message ?? ""]],
    [t("execution.queued"), (e) => when(e.queued_at)],
    [t("execution.finished"), (e) => when(e.finished_at)],
  ];
  return [table(t("execution.title"), columns, found.items), pager(found.page, found.per_page, found.total, go)];
}

/** Pause, resume and cancel, as the job's state allows them. */
function controls(job, changed) {
  const message = h("div", { "aria-live": "polite" });
  const act = (verb) => async () => {
    put(message);
    try {
      changed(await call("POST", `/jobs/${job.job_id}/${verb}`));
    } catch (error) {
      put(message, problem(error));
    }
  };
  const buttons = [];
  if (job.state === "running") buttons.push(h("button", { type: "button", onclick: act("pause") }, t("job.pause")));
  if (job.state === "paused") buttons.push(h("button", { type: "button", onclick: act("resume") }, t("job.resume")));
  if (job.state === "running" || job.state === "paused") {
    buttons.push(dangerButton(t("job.cancel"), t("job.cancel_named", { name: job.name }), t("job.confirm_cancel", { name: job.name }), act("cancel")));
  }
  return h("div", { class: "actions", "data-testid": "job-controls" }, buttons, message);
}

export async function job(ctx) {
  const id = ctx.params.id;
  let page = 1;
  const head = h("div", {});
  const runs = h("div", { "data-testid": "executions" });
  const may = everywhere("commands:send");
  // A pause, resume or cancel answers with the job; its executions are read again
  // (a cancel ends the waiting ones at once).
  const changed = (found) => {
    drawJob(found);
    readRuns().catch((error) => put(runs, problem(error)));
  };
  const drawJob = (found) => {
    const parts = [section(t("job.settings"), settings(found)), section(t("job.progress_label"), counts(found))];
    if (may) parts.splice(1, 0, controls(found, changed));
    put(head, h("h1", {}, t("job.title", { name: found.name }), " ", stateBadge(found.state)), parts);
  };
  const readRuns = async () => {
    const found = await get(`/jobs/${id}/devices${query({ page, per_page: PER_PAGE })}`);
    if (!ctx.stale()) put(runs, executions(found, go));
  };
  const go = (n) => {
    page = n;
    readRuns().catch((error) => put(runs, problem(error)));
  };
  const [found, first] = await Promise.all([get(`/jobs/${id}`), get(`/jobs/${id}/devices${query({ per_page: PER_PAGE })}`)]);
  drawJob(found);
  put(runs, executions(first, go));
  const soon = throttled(async () => {
    try {
      const now = await get(`/jobs/${id}`);
      if (ctx.stale()) return;
      drawJob(now);
      await readRuns();
    } catch (error) {
      put(runs, problem(error));
    }
  });
  ctx.live((event) => event.type === "job.progress" && event.data.job_id === id && soon());
  return h("div", { class: "job" }, head, section(t("execution.title"), runs));
}
