// The hypertask web client: a page over the sync server's own protocol (docs/http-protocol.md),
// served by `hypertask serve` from files built into the binary. It keeps no copy of the tasks
// beyond the open page, so it never hashes or merges: the server merges every state the page
// sends and answers with what it holds. Edits stamp per-field clocks exactly as the CLI does
// (docs/merge.md, "Local edits"), so a web edit and a CLI edit of different fields both survive.

const TOKEN_KEY = "hypertask.token";
const ID_ALPHABET = "23456789abcdefghkmnpqrstwxyz";
const LONG_POLL_SECS = 25;
const POLL_MS = 5000;
const MAX_BACKOFF_MS = 30000;

// Taskwarrior's default urgency coefficients, as core/src/manage/urgency.rs applies them, so the
// page lists pending tasks in the same order as `hypertask list`.
const URGENCY = {
  next: 15, due: 12, blocking: 8, H: 6, M: 3.9, L: 1.8, scheduled: 5, active: 4, age: 2,
  annotations: 1, tags: 1, project: 1, waiting: -3, blocked: -5, ageMaxDays: 365,
};

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  /** id → task document, as the server answered it. */
  tasks: new Map(),
  /** id → content hash, from the server's last `GET /hashes`. */
  hashes: new Map(),
  etag: null,
  maxBatch: 1000,
  longPoll: false,
  /** Bumped on sign-in and sign-out: a watch loop of an older generation stops. */
  generation: 0,
};

// ---------------------------------------------------------------------------------------------
// Talking to the server

class Refused extends Error {}

async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = {
    method,
    signal,
    cache: "no-store",
    headers: { ...headers, Authorization: `Bearer ${state.token}` },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) throw new Refused("The server refused this token.");
  if (!res.ok && res.status !== 304) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).error ?? detail;
    } catch {
      // Not JSON: keep the status text.
    }
    throw new Error(`The server answered ${res.status}: ${detail}`);
  }
  return res;
}

/** Sends client states (`null` reads) and returns the server's states, batch by batch. */
async function resolve(states) {
  const ids = Object.keys(states);
  const out = {};
  for (let i = 0; i < ids.length; i += state.maxBatch) {
    const chunk = {};
    for (const id of ids.slice(i, i + state.maxBatch)) chunk[id] = states[id];
    const res = await api("/tasks", { method: "POST", body: { client_states: chunk } });
    const answer = await res.json();
    Object.assign(out, answer.server_states ?? {});
    for (const [id, e] of Object.entries(answer.errors ?? {})) {
      show(`Task ${id} was not saved: ${e.error}`, true);
    }
  }
  return out;
}

/** Takes the server's map: reads the tasks whose hash changed and forgets the ones gone. */
async function applyListing(res) {
  state.etag = res.headers.get("ETag");
  const listed = new Map(Object.entries(await res.json()));
  const wanted = {};
  for (const [id, hash] of listed) {
    if (state.hashes.get(id) !== hash || !state.tasks.has(id)) wanted[id] = null;
  }
  for (const id of state.tasks.keys()) {
    if (!listed.has(id)) state.tasks.delete(id);
  }
  const got = await resolve(wanted);
  for (const [id, task] of Object.entries(got)) {
    if (task) state.tasks.set(id, task);
    else state.tasks.delete(id);
  }
  state.hashes = listed;
  render();
}

/** Follows the server: a long poll when it offers one, a plain poll otherwise. */
async function watch(generation) {
  let backoff = 1000;
  while (generation === state.generation) {
    try {
      const headers = {};
      if (state.etag) {
        headers["If-None-Match"] = state.etag;
        if (state.longPoll) headers.Prefer = `wait=${LONG_POLL_SECS}`;
      }
      const asked = Date.now();
      const res = await api("/hashes", { headers });
      if (generation !== state.generation) return;
      if (res.status === 200) await applyListing(res);
      $("live").hidden = !state.longPoll;
      backoff = 1000;
      // A change is followed at once by the next (held) request; a server that did not hold
      // this one (no long poll, or all its slots taken) is asked again a little later.
      if (res.status !== 200 && Date.now() - asked < 1000) await sleep(POLL_MS);
    } catch (e) {
      if (generation !== state.generation) return;
      if (e instanceof Refused) {
        signOut(e.message);
        return;
      }
      $("live").hidden = true;
      show(`Cannot reach the server (${e.message}); retrying.`, true);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Tasks: the same rules as core/src/task (edits) and core/src/manage (status, urgency)

const stampOf = (ms) => new Date(ms).toISOString();

/** The stamp a local edit gets: max(now, updated_at + 1 ms). */
function editStamp(task) {
  const floor = Date.parse(task.updated_at) + 1;
  return stampOf(Number.isNaN(floor) ? Date.now() : Math.max(Date.now(), floor));
}

/**
 * A copy of `task` with `changes` applied: `{set: {field: value}, clear: [field],
 * addTags: [t], removeTags: [t]}`, every changed clock key stamped with one edit stamp.
 */
function edited(task, { set = {}, clear = [], addTags = [], removeTags = [] }) {
  const stamp = editStamp(task);
  const doc = structuredClone(task);
  const clocks = (doc.field_updated_at ??= {});
  for (const [k, v] of Object.entries(set)) {
    doc[k] = v;
    clocks[k] = stamp;
  }
  for (const k of clear) {
    delete doc[k];
    clocks[k] = stamp;
  }
  const tags = new Set(doc.tags ?? []);
  for (const t of addTags) {
    tags.add(t);
    clocks[`tags.${t}`] = stamp;
  }
  for (const t of removeTags) {
    tags.delete(t);
    clocks[`tags.${t}`] = stamp;
  }
  doc.tags = [...tags].sort();
  if (doc.tags.length === 0) delete doc.tags;
  doc.updated_at = stamp;
  return doc;
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join("");
}

/** Words as `hypertask add` reads them: `+tag`, `project:P`, `priority:H`, `due:DATE`. */
function parseWords(text) {
  const words = [];
  const set = {};
  const tags = [];
  for (const w of text.trim().split(/\s+/)) {
    const attr = /^(project|pro|priority|pri|due):(.*)$/.exec(w);
    if (w.length > 1 && w.startsWith("+")) {
      tags.push(w.slice(1));
    } else if (attr && attr[2] !== "") {
      const [, key, value] = attr;
      if (key.startsWith("pro")) set.project = value;
      else if (key.startsWith("pri")) set.priority = priority(value);
      else set.due = dueFrom(value);
    } else if (w) {
      words.push(w);
    }
  }
  if (words.length === 0) throw new Error("A task needs a description.");
  set.description = words.join(" ");
  return { set, tags };
}

function priority(value) {
  const p = value.toUpperCase();
  if (!["H", "M", "L"].includes(p)) throw new Error(`Priority is H, M or L, not '${value}'.`);
  return p;
}

/** A date typed as YYYY-MM-DD (start of that day) or YYYY-MM-DDTHH:MM, in local time. */
function dueFrom(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?$/.exec(value);
  if (!m) throw new Error(`Cannot read '${value}' as a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM.`);
  const [, y, mo, d, h = "0", mi = "0"] = m;
  const t = new Date(+y, +mo - 1, +d, +h, +mi);
  if (Number.isNaN(t.getTime())) throw new Error(`'${value}' is not a date.`);
  return stampOf(t.getTime());
}

function statusOf(task, now) {
  if (task.deleted) return "deleted";
  if (task.done) return "completed";
  if (task.status === "recurring") return "recurring";
  const wait = [task.wait, task.snooze].filter(Boolean).map(Date.parse);
  if (wait.some((w) => w > now)) return "waiting";
  return "pending";
}

const isOpen = (status) => status === "pending" || status === "waiting";

function dependencies(task) {
  const ids = Object.keys(task).filter((k) => k.startsWith("dep_")).map((k) => k.slice(4));
  if (typeof task.blocked_by === "string") ids.push(task.blocked_by);
  return ids;
}

function urgencyOf(task, now, graph) {
  const status = statusOf(task, now);
  if (!isOpen(status)) return 0;
  const c = URGENCY;
  const count = (n) => (n === 0 ? 0 : n === 1 ? 0.8 : n === 2 ? 0.9 : 1);
  const tags = task.tags ?? [];
  let u = 0;
  if (tags.includes("next")) u += c.next;
  if (task.due) {
    const overdueDays = (now - Date.parse(task.due)) / 86400000;
    const f = overdueDays >= 7 ? 1 : overdueDays >= -14 ? ((overdueDays + 14) * 0.8) / 21 + 0.2 : 0.2;
    u += f * c.due;
  }
  if (graph.blocking.has(task.id)) u += c.blocking;
  if (c[task.priority] && ["H", "M", "L"].includes(task.priority)) u += c[task.priority];
  if (task.scheduled && Date.parse(task.scheduled) < now) u += c.scheduled;
  if (task.start) u += c.active;
  const days = (now - Date.parse(task.created_at)) / 86400000;
  u += Math.min(Math.max(days / c.ageMaxDays, 0), 1) * c.age;
  u += count(Object.keys(task).filter((k) => k.startsWith("annotation_")).length) * c.annotations;
  u += count(tags.length) * c.tags;
  if (task.project) u += c.project;
  if (status === "waiting") u += c.waiting;
  if (graph.blocked.has(task.id)) u += c.blocked;
  return u;
}

function graphOf(tasks, now) {
  const open = new Set(tasks.filter((t) => isOpen(statusOf(t, now))).map((t) => t.id));
  const blocked = new Set();
  const blocking = new Set();
  for (const t of tasks) {
    if (!open.has(t.id)) continue;
    for (const d of dependencies(t)) {
      if (open.has(d) && d !== t.id) {
        blocked.add(t.id);
        blocking.add(d);
      }
    }
  }
  return { blocked, blocking };
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** The tasks of one status in the CLI's order for that report. */
function ordered(status, now) {
  const all = [...state.tasks.values()];
  const shown = all.filter((t) => statusOf(t, now) === status);
  if (status === "completed") return shown.sort((a, b) => cmp(b.done, a.done));
  if (status === "deleted") return shown.sort((a, b) => cmp(b.deleted, a.deleted));
  if (status === "waiting") return shown.sort((a, b) => cmp(a.wait ?? "", b.wait ?? ""));
  const graph = graphOf(all, now);
  const u = new Map(shown.map((t) => [t.id, urgencyOf(t, now, graph)]));
  // `hypertask list`: most urgent first, then a task without a due date, then the sooner due,
  // then the older, then by id.
  return shown.sort(
    (a, b) =>
      u.get(b.id) - u.get(a.id) ||
      cmp(a.due ?? "", b.due ?? "") ||
      cmp(a.created_at, b.created_at) ||
      cmp(a.id, b.id),
  );
}

// ---------------------------------------------------------------------------------------------
// The page

function show(message, isError = false) {
  const s = $("status");
  s.textContent = message;
  s.classList.toggle("error", isError);
}

function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  Object.assign(e.dataset, dataset);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

function fillSelect(select, values) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "", textContent: "any" }));
  for (const v of [...values].sort()) select.append(el("option", { value: v, textContent: v }));
  select.value = values.has(current) ? current : "";
}

function render() {
  const now = Date.now();
  const status = $("filter-status").value;
  const tags = new Set();
  const projects = new Set();
  for (const t of state.tasks.values()) {
    for (const tag of t.tags ?? []) tags.add(tag);
    if (t.project) projects.add(t.project);
  }
  fillSelect($("filter-tag"), tags);
  fillSelect($("filter-project"), projects);
  const tag = $("filter-tag").value;
  const project = $("filter-project").value;
  const shown = ordered(status, now).filter(
    (t) =>
      (!tag || (t.tags ?? []).includes(tag)) &&
      (!project || t.project === project || (t.project ?? "").startsWith(`${project}.`)),
  );
  $("list").replaceChildren(...shown.map((t) => row(t, status)));
  $("empty").hidden = shown.length > 0;
}

function row(task, status) {
  const meta = [];
  if (task.project) meta.push(el("span", { className: "project", textContent: task.project }));
  for (const tag of task.tags ?? []) meta.push(el("span", { className: "tag", textContent: `+${tag}` }));
  if (task.priority) meta.push(el("span", { className: "priority", textContent: `priority ${task.priority}` }));
  if (task.due) {
    const overdue = Date.parse(task.due) < Date.now() && isOpen(status);
    meta.push(el("span", {
      className: overdue ? "due overdue" : "due",
      textContent: `due ${when(task.due)}`,
    }));
  }
  const button = (label, onclick) =>
    el("button", { type: "button", textContent: label, title: `${label}: ${task.description}`, onclick });
  // The changes are made at the click, so `done` and `deleted` say when it happened.
  const change = (changes) => () => act(() => edited(task, changes()));
  const remove = button("Delete", change(() => ({ set: { deleted: editStamp(task) } })));
  const buttons =
    isOpen(status) ? [button("Done", change(() => ({ set: { done: editStamp(task) } }))), button("Edit", () => openEditor(task)), remove]
    : status === "completed" ? [button("Reopen", change(() => ({ clear: ["done"] }))), remove]
    : status === "deleted" ? [button("Restore", change(() => ({ clear: ["deleted"] })))]
    : [];
  return el(
    "li",
    { className: "task", dataset: { id: task.id } },
    el("span", { className: "description", textContent: task.description ?? "(no description)" }),
    el("span", { className: "meta" }, ...meta),
    el("span", { className: "actions" }, ...buttons),
  );
}

/** A timestamp for people: the day alone when it is a day's start (`due:2026-12-24`). */
function when(ts) {
  const d = new Date(ts);
  const day = { weekday: "short", month: "short", day: "numeric" };
  if (d.getFullYear() !== new Date().getFullYear()) day.year = "numeric";
  return d.getHours() === 0 && d.getMinutes() === 0
    ? d.toLocaleDateString(undefined, day)
    : d.toLocaleString(undefined, { ...day, hour: "2-digit", minute: "2-digit" });
}

/** Sends one new state and shows the server's answer at once. */
async function save(task) {
  const got = await resolve({ [task.id]: task });
  if (got[task.id]) state.tasks.set(task.id, got[task.id]);
  render();
}

async function act(makeState) {
  try {
    await save(makeState());
    show("Saved.");
  } catch (e) {
    failed(e);
  }
}

function failed(e) {
  if (e instanceof Refused) signOut(e.message);
  else show(e.message, true);
}

let editing = null;

function openEditor(task) {
  editing = task;
  $("edit-description").value = task.description ?? "";
  $("edit-tags").value = (task.tags ?? []).join(" ");
  $("edit-project").value = task.project ?? "";
  $("edit-priority").value = task.priority ?? "";
  $("edit-due").value = task.due ? localInput(task.due) : "";
  $("editor").showModal();
  $("edit-description").focus();
}

/** A timestamp as a `datetime-local` input shows it. */
function localInput(ts) {
  const d = new Date(ts);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** The changes the edit form makes to `task`: only what differs is stamped. */
function formChanges(task) {
  const set = {};
  const clear = [];
  const description = $("edit-description").value.trim();
  if (!description) throw new Error("A task needs a description.");
  if (description !== task.description) set.description = description;
  for (const [field, value] of [["project", $("edit-project").value.trim()], ["priority", $("edit-priority").value]]) {
    if (value && value !== task[field]) set[field] = value;
    if (!value && task[field] !== undefined) clear.push(field);
  }
  const dueText = $("edit-due").value;
  const due = dueText ? dueFrom(dueText) : null;
  if (due && (!task.due || localInput(task.due) !== dueText)) set.due = due;
  if (!due && task.due !== undefined) clear.push("due");
  const before = new Set(task.tags ?? []);
  const after = new Set($("edit-tags").value.split(/\s+/).map((t) => t.replace(/^\+/, "")).filter(Boolean));
  return {
    set,
    clear,
    addTags: [...after].filter((t) => !before.has(t)),
    removeTags: [...before].filter((t) => !after.has(t)),
  };
}

function signOut(message) {
  state.generation += 1;
  state.token = null;
  state.tasks.clear();
  state.hashes.clear();
  state.etag = null;
  localStorage.removeItem(TOKEN_KEY);
  $("tasks-view").hidden = true;
  $("sign-out").hidden = true;
  $("live").hidden = true;
  $("sign-in-view").hidden = false;
  show(message ?? "Signed out.", Boolean(message));
  $("token").focus();
}

/** Checks the token against the server, then shows the tasks and follows changes. */
async function signIn(token) {
  state.token = token;
  state.generation += 1;
  const generation = state.generation;
  show("Signing in…");
  try {
    const caps = await (await api("/capabilities")).json();
    state.maxBatch = Math.max(1, caps.max_batch ?? 1);
    state.longPoll = caps.long_poll === true;
    localStorage.setItem(TOKEN_KEY, token);
    $("sign-in-view").hidden = true;
    $("tasks-view").hidden = false;
    $("sign-out").hidden = false;
    await applyListing(await api("/hashes"));
    show(`Signed in. ${state.tasks.size} task${state.tasks.size === 1 ? "" : "s"}.`);
    $("add-description").focus();
    watch(generation);
  } catch (e) {
    if (e instanceof Refused) signOut(e.message);
    else show(e.message, true);
  }
}

function start() {
  $("sign-in").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value;
    $("token").value = "";
    signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const { set, tags } = parseWords($("add-description").value);
      const now = stampOf(Date.now());
      const task = edited(
        { id: newId(), created_at: now, updated_at: now, field_updated_at: {} },
        { set, addTags: tags },
      );
      await save(task);
      $("add-description").value = "";
      show(`Added: ${set.description}`);
    } catch (e) {
      failed(e);
    }
  });
  $("edit").addEventListener("submit", async (ev) => {
    if (ev.submitter?.value !== "save" || !editing) return;
    ev.preventDefault();
    try {
      const task = edited(editing, formChanges(editing));
      $("editor").close();
      editing = null;
      await save(task);
      show("Saved.");
    } catch (e) {
      failed(e);
    }
  });
  for (const id of ["filter-status", "filter-tag", "filter-project"]) $(id).addEventListener("change", render);
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else signOut("");
}

start();
