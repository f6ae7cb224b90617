// AIPM web console: the "Generate Code & PR" form, a live list of jobs with their steps, the worker pool.
// Plain JavaScript, no framework, no third-party code. Every value from the API is put in the page as
// text (textContent), never as HTML. Configuration: config.json next to this file ({"apiUrl": "...",
// "auth": {...}}), the API URL overridable in the Connection panel. People sign in through auth.js (Cognito
// managed login, authorization code + PKCE); its tokens live in this tab's sessionStorage only.
"use strict";

(function () {
  const TERMINAL = new Set(["completed", "failed", "timed_out", "cancelled", "no_changes", "checks_failed"]);
  const RETRYABLE = new Set(["failed", "timed_out", "cancelled", "no_changes", "checks_failed"]);
  const HAPPY_PATH = ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"];
  const FIELD_INPUT = { owner: "repo", repo: "repo", branchName: "branchName", taskTitle: "taskTitle",
    objective: "objective", prTitle: "prTitle", constraints: "constraints",
    acceptanceCriteria: "acceptanceCriteria", baseBranch: "baseBranch" };
  const FAST_POLL_MS = 1500;
  const SLOW_POLL_MS = 8000;
  const PAGE_SIZE = 25;
  const MAX_TRACKED = 50;
  const KEY_URL = "aipm.apiUrl";
  const KEY_TRACKED = "aipm.trackedJobs";

  const state = {
    apiUrl: "",
    jobs: new Map(),          // jobId -> JobView
    listSupported: true,      // false once GET /api/jobs answers "no such route"
    expanded: new Set(),      // job ids whose output is open
    openTimelines: new Set(), // job ids whose timeline is open
    openFollowUps: new Set(), // first-job ids whose follow-up list is open (read with GET /api/jobs/{id})
    followUps: new Map(),     // first-job id -> its followUps, as GET /api/jobs/{id} last gave them
    announced: new Map(),     // job id -> the status last announced (or first seen)
    filters: { status: "", repo: "", mine: false },
    loaded: false,            // the first page of the list (or the first refresh) has been read
    nextCursor: null,         // the API's nextCursor after the last page shown ("Load older jobs")
    pages: 1,                 // pages of the list shown
    listGeneration: 0,        // bumped when the filters change: answers to older requests are dropped
    pool: null,               // the last GET /api/workers answer (null: none, or not reported)
    poolNote: "",             // why the pool is not shown
    poolSupported: true,      // false once GET /api/workers answers "no such route"
    bannerJob: null,          // the job the submit banner follows to its end
    jobsTimer: null,
    auth: null,               // an AipmAuth (auth.js) when config.json names the sign-in
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // -- configuration ---------------------------------------------------------------------------------

  function normaliseUrl(raw) {
    let url = String(raw || "").trim().replace(/\/+$/, "");
    if (url.endsWith("/api")) url = url.slice(0, -4);
    return url;
  }

  function signedIn() {
    return Boolean(state.auth && state.auth.signedIn());
  }

  async function loadConfig() {
    let config = {};
    try {
      const resp = await fetch("config.json", { cache: "no-store" });
      if (resp.ok) config = (await resp.json()) || {};
    } catch (err) {
      config = {};
    }
    state.apiUrl = normaliseUrl(sessionStorage.getItem(KEY_URL) || config.apiUrl || "");
    if (state.apiUrl) $("api-reference").href = state.apiUrl + "/api/openapi.json";
    $("api-url").value = state.apiUrl;
    if (!state.apiUrl) $("settings-details").open = true;
    if (config.auth) {
      try {
        const { AipmAuth } = await import("./auth.js");
        state.auth = new AipmAuth(config.auth);
        await state.auth.handleRedirect();
      } catch (err) {
        $("auth-status").textContent = String(err.message || err);
      }
    }
    renderAuth();
  }

  // -- sign-in ---------------------------------------------------------------------------------------

  function renderAuth(note) {
    const user = signedIn() ? state.auth.user() : null;
    $("auth-status").textContent = note ||
      (user ? "Signed in as " + (user.email || user["cognito:username"] || user.sub) :
        state.auth ? "Not signed in" : "Sign-in is not configured (config.json has no auth)");
    $("sign-in").hidden = !state.auth || Boolean(user);
    $("sign-out").hidden = !user;
  }

  async function onSignIn() {
    try {
      await state.auth.signIn();
    } catch (err) {
      renderAuth(String(err.message || err));
    }
  }

  async function onSignOut() {
    clearTimeout(state.jobsTimer);
    await state.auth.signOut();
  }

  function tracked() {
    try {
      const ids = JSON.parse(sessionStorage.getItem(KEY_TRACKED) || "[]");
      return Array.isArray(ids) ? ids.filter((id) => /^[0-9a-f]{32}$/.test(id)) : [];
    } catch (err) {
      return [];
    }
  }

  function track(jobId) {
    const ids = [jobId, ...tracked().filter((id) => id !== jobId)].slice(0, MAX_TRACKED);
    sessionStorage.setItem(KEY_TRACKED, JSON.stringify(ids));
  }

  // -- API -------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body, message) {
      super(message);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, path, body, extraHeaders) {
    if (!state.apiUrl) throw new ApiError(0, {}, "Set the API URL in the Connection panel.");
    const send = async (refresh) => {
      const headers = { Accept: "application/json", ...(extraHeaders || {}) };
      if (state.auth) Object.assign(headers, await state.auth.authHeaders(refresh));
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return fetch(state.apiUrl + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
      });
    };
    let resp;
    try {
      resp = await send(false);
      if (resp.status === 401 && signedIn()) resp = await send(true);  // expired: one refresh, one more try
    } catch (err) {
      setConnection(false, "unreachable");
      throw new ApiError(0, {}, "Could not reach the API at " + state.apiUrl +
        " (network error or CORS). Check the Connection panel.");
    }
    let data = {};
    try {
      data = await resp.json();
    } catch (err) {
      data = {};
    }
    if (resp.status === 401 || (resp.status === 403 && !data.error)) {
      setConnection(false, "sign-in needed");
      renderAuth();
      throw new ApiError(resp.status, data, "The API wants you signed in (" + resp.status + "): " +
        (data.message || "Unauthorized") + ". Use the Sign in button.");
    }
    if (!resp.ok) {
      const message = data.message || data.error || ("HTTP " + resp.status);
      throw new ApiError(resp.status, data, message);
    }
    setConnection(true, "connected");
    return data;
  }

  function isMissingRoute(err) {
    return err instanceof ApiError && (err.status === 404 || err.status === 405) &&
      (!err.body.error || err.body.error === "not_found");
  }

  function setConnection(ok, text) {
    const pill = $("connection");
    pill.textContent = text;
    pill.className = "pill " + (ok ? "pill-ok" : "pill-bad");
  }

  function idempotencyKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- the form --------------------------------------------------------------------------------------

  function clearFieldErrors() {
    for (const input of document.querySelectorAll("#delegate-form [aria-invalid]")) {
      input.removeAttribute("aria-invalid");
    }
    for (const span of document.querySelectorAll("#delegate-form .field-error")) span.textContent = "";
  }

  function labelText(inputId) {
    const label = document.querySelector('label[for="' + inputId + '"]');
    return label ? label.textContent.replace(/\s*\(.*\)\s*$/, "").trim() : inputId;
  }

  // An error under its input, worded with the input's label (not the API's field name), tied to the input
  // with aria-describedby (the error element's id is already in it, see index.html).
  function fieldError(field, message) {
    const inputId = FIELD_INPUT[String(field || "").split(".")[0]];
    if (!inputId) return false;
    $(inputId).setAttribute("aria-invalid", "true");
    const text = String(message || "").replace(/^[A-Za-z.]+: /, "");
    $(inputId + "-error").textContent = text.startsWith("Enter ") ? text : labelText(inputId) + ": " + text;
    return true;
  }

  function focusFirstInvalid() {
    const first = document.querySelector("#delegate-form [aria-invalid]");
    if (first) first.focus();
  }

  function readForm() {
    const value = (id) => $(id).value.trim();
    const problems = [];
    const repo = value("repo");
    const [owner, name, extra] = repo.split("/");
    if (!owner || !name || extra !== undefined) {
      problems.push(["repo", "Enter the repository as owner/repo, e.g. aipm-demo/tools."]);
    }
    for (const id of ["taskTitle", "objective"]) {
      if (!value(id)) problems.push([id, "Enter the " + labelText(id).toLowerCase() + "."]);
    }
    // As the CLI does: the PR title defaults to the task title, the branch to feature/<title as a slug>.
    const slug = value("taskTitle").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60)
      .replace(/-+$/, "");
    const body = {
      owner: owner || "", repo: name || "", branchName: value("branchName") || (slug ? "feature/" + slug : ""),
      taskTitle: value("taskTitle"), objective: value("objective"), prTitle: value("prTitle") || value("taskTitle"),
    };
    if (value("constraints")) body.constraints = value("constraints");
    const criteria = $("acceptanceCriteria").value.split("\n").map((l) => l.replace(/^[\s*-]+/, "").trim())
      .filter(Boolean);
    if (criteria.length) body.acceptanceCriteria = criteria;
    if (value("baseBranch")) body.baseBranch = value("baseBranch");
    return { body, problems };
  }

  async function onSubmit(event) {
    event.preventDefault();
    clearFieldErrors();
    const result = $("delegate-result");
    result.className = "result";
    result.replaceChildren();
    const { body, problems } = readForm();
    if (problems.length) {
      for (const [field, message] of problems) fieldError(field, message);
      result.className = "result error";
      result.textContent = "Please correct the marked fields.";
      focusFirstInvalid();
      return;
    }
    const button = $("delegate-submit");
    button.disabled = true;
    button.textContent = "Opening the pull request…";
    try {
      const answer = await api("POST", "/api/personal-delegate", body, { "Idempotency-Key": idempotencyKey() });
      track(answer.jobId);
      result.className = "result ok";
      // The job's status follows it to its end; aria-live="off": the announcer says status changes once.
      result.replaceChildren(
        "Pull request ", link(answer.html_url, "#" + answer.number), " opened on ", answer.branchName,
        ". Confirmation: ", el("code", { text: answer.confirmationCode }), ". Job ",
        el("code", { text: answer.jobId, id: "delegate-job-id" }), ": ",
        el("span", { id: "delegate-job-status", "aria-live": "off", text: "queued" }), ".");
      state.bannerJob = answer.jobId;
      state.jobs.set(answer.jobId, {
        jobId: answer.jobId, status: "queued", repo: body.owner + "/" + body.repo, taskTitle: body.taskTitle,
        branchName: answer.branchName, prNumber: answer.number, prUrl: answer.html_url, timeline: [],
        attempts: 0, createdAt: new Date().toISOString(), updatedAt: new Date().toISOString(),
      });
      renderJobs();
      pollJobsSoon();
    } catch (err) {
      result.className = "result error";
      const marked = err.body && err.body.field ? fieldError(err.body.field, err.message) : false;
      result.textContent = marked ? "Please correct the marked field." : err.message;
      if (marked) focusFirstInvalid();
    } finally {
      button.disabled = false;
      button.textContent = "Generate Code & PR";
    }
  }

  // -- jobs ------------------------------------------------------------------------------------------

  function link(href, text) {
    if (!/^https?:\/\//i.test(String(href || ""))) return el("span", { text });
    return el("a", { href, text, target: "_blank", rel: "noopener noreferrer", className: "pr-link" });
  }

  function clock(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso || "") : date.toLocaleTimeString([], { hour12: false });
  }

  // "started 14 Mar 2026, 10:02 · took 1 min 5 s" (or "running for …").
  function when(job) {
    const start = new Date(job.createdAt), end = new Date(job.updatedAt);
    if (Number.isNaN(start.getTime())) return "";
    const date = start.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    const ended = TERMINAL.has(job.status) && !Number.isNaN(end.getTime());
    const seconds = Math.max(0, Math.round(((ended ? end : new Date()) - start) / 1000));
    const span = seconds >= 60 ? Math.floor(seconds / 60) + " min " + (seconds % 60) + " s" : seconds + " s";
    return "started " + date + " · " + (ended ? "took " : "running for ") + span;
  }

  function pathBar(job) {
    const steps = (job.timeline || []).map((e) => e.step);
    const reached = HAPPY_PATH.filter((s) => steps.includes(s) || s === job.status);
    const last = HAPPY_PATH.indexOf(reached[reached.length - 1]);
    const bar = el("div", { className: "path" + (TERMINAL.has(job.status) && job.status !== "completed" ? " ended-bad" : ""),
      title: "queued → claimed → preparing → generating → committing → pushed → completed" });
    HAPPY_PATH.forEach((step, i) => {
      let cls = "";
      if (i < last || (i === last && job.status === "completed")) cls = "done";
      else if (i === last) cls = "current";
      bar.append(el("span", { className: cls }));
    });
    return bar;
  }

  function jobCard(job) {
    const status = String(job.status || "unknown");
    const card = el("li", { className: "job", "data-job-id": job.jobId, "data-status": status,
      "data-branch": job.branchName });
    card.append(el("div", { className: "job-head" },
      el("span", { className: "status status-" + status, text: status }),
      el("span", { className: "job-title", text: job.taskTitle || "(untitled)" }),
      link(job.prUrl, "PR #" + (job.prNumber ?? "?"))));
    const meta = el("div", { className: "job-meta" },
      el("span", { text: job.repo }), el("span", { text: job.branchName }),
      el("span", { text: "attempts " + (job.attempts ?? 0) + (job.maxAttempts ? "/" + job.maxAttempts : "") }));
    if (job.worker) meta.append(el("span", { text: "worker " + job.worker }));
    if (job.commitSha) {
      // The PR page shows the commits and the diff.
      const commit = link(job.prUrl, String(job.commitSha).slice(0, 12));
      if (commit.tagName === "A") commit.className = "commit-link";
      meta.append(el("span", {}, "commit ", commit));
    }
    meta.append(el("span", { text: when(job) }));
    meta.append(el("span", { text: "job " + job.jobId }));
    card.append(meta, pathBar(job));
    const steps = el("ol", { className: "steps" });
    for (const entry of job.timeline || []) {
      steps.append(el("li", { "data-step": entry.step },
        el("time", { datetime: entry.at, text: clock(entry.at) }),
        el("span", { className: "step", text: entry.step }),
        el("span", { className: "detail", text: entry.detail || "" })));
    }
    const count = (job.timeline || []).length;
    const timeline = el("details", { className: "timeline", open: state.openTimelines.has(job.jobId) },
      el("summary", { text: "Timeline (" + count + " step" + (count === 1 ? "" : "s") + ")" }), steps);
    timeline.addEventListener("toggle", () => {
      if (timeline.open) state.openTimelines.add(job.jobId); else state.openTimelines.delete(job.jobId);
    });
    card.append(timeline);
    if (job.followUp) card.append(followUpOf(job.followUp));
    else card.append(followUpList(job));
    if (job.reason && status !== "completed") card.append(el("div", { className: "problem", text: job.reason }));
    if (job.error) card.append(el("div", { className: "problem", text: "error: " + job.error }));
    if (job.changedFiles && job.changedFiles.length) {
      card.append(el("div", { className: "job-meta", text: "files: " + job.changedFiles.join(", ") }));
    }
    const actions = el("div", { className: "job-actions" });
    if (!TERMINAL.has(status)) actions.append(actionButton("Cancel", job.jobId, "cancel"));
    if (RETRYABLE.has(status)) actions.append(actionButton("Retry", job.jobId, "retry"));
    if (TERMINAL.has(status) && job.repo && job.branchName) {
      // A CLI session on the job's branch, in the attach terminal's page (terminal.html, xterm.js).
      const query = new URLSearchParams({ repo: job.repo, branch: job.branchName });
      actions.append(el("a", { href: "terminal.html?" + query, className: "button-link small", target: "_blank",
        rel: "noopener noreferrer", "data-action": "attach", text: "Attach terminal" }));
    }
    if (job.outputTail) {
      const open = state.expanded.has(job.jobId);
      const toggle = el("button", { type: "button", className: "secondary small", text: open ? "Hide output" : "Agent output",
        "data-action": "output", "aria-expanded": String(open) });
      toggle.addEventListener("click", () => {
        if (state.expanded.has(job.jobId)) state.expanded.delete(job.jobId); else state.expanded.add(job.jobId);
        renderJobs();
      });
      actions.append(toggle);
      if (open) card.append(el("pre", { className: "tail", text: job.outputTail }));
    }
    if (actions.childElementCount) card.append(actions);
    return card;
  }

  // What a follow-up job answers: "follow-up of job <parent>: <author>'s review comment on <path>:<line>".
  function commentText(followUp) {
    const kind = String(followUp.event || "comment").replace(/_/g, " ");
    const where = followUp.path ? " on " + followUp.path + ":" + followUp.line : "";
    return (followUp.author || "someone") + "'s " + kind + where;
  }

  function followUpOf(followUp) {
    return el("div", { className: "job-meta follow-up-of", "data-parent-job-id": followUp.parentJobId },
      "follow-up of job " + followUp.parentJobId + ": ", link(followUp.commentUrl, commentText(followUp)));
  }

  // A PR's first job: its follow-up jobs (PR comments that asked for more), read when the list is opened.
  function followUpList(job) {
    const known = state.followUps.get(job.jobId);
    const items = el("ul", { className: "follow-ups-list" });
    if (known === undefined) items.append(el("li", { className: "muted", text: "Loading…" }));
    else if (!known.length) items.append(el("li", { className: "muted", text: "None: no PR comment asked for more." }));
    for (const f of known || []) {
      const item = el("li", { "data-follow-up-id": f.jobId, "data-status": f.status },
        el("span", { className: "status status-" + f.status, text: f.status }), " ",
        link(f.commentUrl, commentText(f)),
        el("span", { className: "muted", text: " · job " + f.jobId + (f.commitSha ? " · commit " + String(f.commitSha).slice(0, 12) : "") }));
      items.append(item);
    }
    const label = "Follow-ups" + (known && known.length ? " (" + known.length + ")" : "");
    const details = el("details", { className: "follow-ups", open: state.openFollowUps.has(job.jobId) },
      el("summary", { text: label }), items);
    details.addEventListener("toggle", () => {
      if (!details.open) { state.openFollowUps.delete(job.jobId); return; }
      state.openFollowUps.add(job.jobId);
      readFollowUps(job.jobId).then(renderJobs);
    });
    return details;
  }

  async function readFollowUps(jobId) {
    try {
      const job = await api("GET", "/api/jobs/" + jobId);
      state.followUps.set(jobId, job.followUps || []);
      state.jobs.set(jobId, job);
    } catch (err) {
      if (err.status === 404) state.jobs.delete(jobId);
      else $("jobs-note").textContent = err.message;
    }
  }

  function actionButton(label, jobId, action) {
    const button = el("button", { type: "button", className: "secondary small", text: label, "data-action": action });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const job = await api("POST", "/api/jobs/" + jobId + "/" + action);
        state.jobs.set(jobId, job);
        $("jobs-note").textContent = "";
      } catch (err) {
        $("jobs-note").textContent = (isMissingRoute(err) ? "This API cannot " + action + " jobs yet." : err.message);
      }
      renderJobs();
      pollJobsSoon();
    });
    return button;
  }

  // Incremental: a card is rebuilt only when its job changed, so focus, text selection and open details
  // survive a refresh; a rebuilt card gets focus back on the same control.
  function me() {
    const user = signedIn() ? state.auth.user() : null;
    return user ? user.email || user["cognito:username"] || user.sub : null;
  }

  function matches(job) {
    const f = state.filters;
    return (!f.status || job.status === f.status) && (!f.repo || job.repo === f.repo) &&
      (!f.mine || job.requestedBy === undefined || job.requestedBy === me());
  }

  // What the list says when it has no card: never "No jobs yet" before the jobs could be read.
  function emptyText() {
    if (!state.apiUrl) return "Set the API URL in the Connection panel to see jobs.";
    if (!signedIn()) return state.auth ? "Sign in to see your jobs." : "Sign-in is not configured, so jobs cannot be read.";
    if (!state.loaded) return "Loading jobs…";
    if (state.filters.status || state.filters.repo || state.filters.mine) return "No jobs match these filters.";
    return "No jobs yet.";
  }

  function renderJobs() {
    const jobs = [...state.jobs.values()].filter(matches)
      .sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
    const list = $("jobs");
    const existing = new Map();
    for (const card of list.querySelectorAll(":scope > li.job")) existing.set(card.dataset.jobId, card);
    const wanted = jobs.map((job) => {
      const key = JSON.stringify(job) + "|" + state.expanded.has(job.jobId) + "|" +
        JSON.stringify(state.followUps.get(job.jobId) ?? null);
      const old = existing.get(job.jobId);
      if (old && old.dataset.key === key) return old;
      const card = jobCard(job);
      card.dataset.key = key;
      if (old) {
        const focused = old.contains(document.activeElement) ? document.activeElement : null;
        const action = focused && focused.dataset ? focused.dataset.action : null;
        old.replaceWith(card);
        if (focused) {
          const again = card.querySelector(action ? '[data-action="' + action + '"]' : "button, a, summary");
          if (again) again.focus();
        }
      }
      return card;
    });
    [...list.children].forEach((child) => { if (!wanted.includes(child)) child.remove(); });
    wanted.forEach((card, i) => { if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null); });
    if (!jobs.length) list.append(el("li", { className: "muted empty", text: emptyText() }));
    $("jobs-more").hidden = !(signedIn() && state.nextCursor);
    announceChanges(jobs);
    followBanner();
    renderWorkers();
  }

  function followBanner() {
    const job = state.bannerJob && state.jobs.get(state.bannerJob);
    const span = $("delegate-job-status");
    if (!job || !span) return;
    const text = job.status + (TERMINAL.has(job.status) && job.reason ? " — " + job.reason : "");
    if (span.textContent !== text) span.textContent = text;
    span.dataset.status = job.status;
  }

  // Each status change of a job is said once, in one polite live region (the job list itself is not live).
  function announceChanges(jobs) {
    const said = [];
    for (const job of jobs) {
      const before = state.announced.get(job.jobId);
      if (before !== undefined && before !== job.status) said.push((job.taskTitle || "Job") + ": " + job.status);
      state.announced.set(job.jobId, job.status);
    }
    if (said.length) $("announcer").textContent = said.join(". ");
  }

  function listPath(cursor) {
    const f = state.filters;
    let path = "/api/jobs?limit=" + PAGE_SIZE;
    if (f.status) path += "&status=" + encodeURIComponent(f.status);
    if (f.repo) path += "&repo=" + encodeURIComponent(f.repo);
    if (f.mine) path += "&mine=true";
    if (cursor) path += "&cursor=" + encodeURIComponent(cursor);
    return path;
  }

  // One refresh reads the jobs and the worker pool together, so the two panels tell the same moment.
  async function refresh() {
    const generation = state.listGeneration;
    const [, pool] = await Promise.all([refreshJobs(), readPool()]);
    if (pool !== undefined) state.pool = pool;
    if (generation === state.listGeneration) state.loaded = true;
    renderJobs();
  }

  async function refreshJobs() {
    const inPage = new Set();
    const generation = state.listGeneration;
    if (state.listSupported) {
      try {
        const page = await api("GET", listPath(null));
        if (generation !== state.listGeneration) return;  // the filters changed meanwhile
        for (const job of page.jobs || []) {
          state.jobs.set(job.jobId, job);
          inPage.add(job.jobId);
        }
        if (state.pages === 1) state.nextCursor = page.nextCursor || null;
        $("jobs-note").textContent = "";
      } catch (err) {
        if (isMissingRoute(err)) {
          state.listSupported = false;
          $("jobs-note").textContent = "This API cannot list jobs; showing the jobs submitted from this tab.";
        } else {
          $("jobs-note").textContent = err.message;
        }
      }
    }
    await Promise.all([...state.openFollowUps].filter((id) => state.jobs.has(id)).map(readFollowUps));
    // Jobs the first page did not bring that may have moved on: submitted from this tab, or still running.
    for (const id of new Set([...tracked(), ...state.jobs.keys()])) {
      const known = state.jobs.get(id);
      if (inPage.has(id) || (known && TERMINAL.has(known.status) && (known.timeline || []).length)) continue;
      try {
        state.jobs.set(id, await api("GET", "/api/jobs/" + id));
      } catch (err) {
        if (err.status === 404) state.jobs.delete(id);
      }
    }
  }

  async function loadMore() {
    const button = $("jobs-more");
    button.disabled = true;
    const generation = state.listGeneration;
    try {
      const page = await api("GET", listPath(state.nextCursor));
      if (generation !== state.listGeneration) return;
      for (const job of page.jobs || []) state.jobs.set(job.jobId, job);
      state.nextCursor = page.nextCursor || null;
      state.pages += 1;
      $("jobs-note").textContent = "";
    } catch (err) {
      $("jobs-note").textContent = err.message;
    } finally {
      button.disabled = false;
    }
    renderJobs();
  }

  function onFilter(event) {
    if (event) event.preventDefault();
    const repo = $("repo-filter").value.trim();
    if (repo && !/^[A-Za-z0-9-]+\/[A-Za-z0-9._-]+$/.test(repo)) {
      $("jobs-note").textContent = "Enter the repository as owner/repo, e.g. aipm-demo/tools.";
      $("repo-filter").setAttribute("aria-invalid", "true");
      $("repo-filter").focus();
      return;
    }
    $("repo-filter").removeAttribute("aria-invalid");
    state.filters = { status: $("status-filter").value, repo, mine: $("mine-filter").checked };
    state.listGeneration += 1;
    state.jobs.clear();          // the list starts again from its first page under the new filters
    state.nextCursor = null;
    state.pages = 1;
    state.loaded = false;
    $("jobs-note").textContent = "";
    renderJobs();
    pollJobsSoon();
  }

  function anyActive() {
    for (const job of state.jobs.values()) if (!TERMINAL.has(job.status)) return true;
    return false;
  }

  function pollJobsSoon() {
    clearTimeout(state.jobsTimer);
    state.jobsTimer = setTimeout(pollJobs, 50);
  }

  async function pollJobs() {
    clearTimeout(state.jobsTimer);
    if (state.apiUrl && signedIn()) await refresh();
    else renderJobs();
    state.jobsTimer = setTimeout(pollJobs, anyActive() ? FAST_POLL_MS : SLOW_POLL_MS);
  }

  // -- workers ---------------------------------------------------------------------------------------

  // Crashes apart from planned resets (a fresh session on purpose), when the agent reports them.
  function restartText(slot) {
    if (slot.crashes === undefined) return slot.restarts ? " · " + slot.restarts + " restart(s)" : "";
    return (slot.crashes ? " · " + slot.crashes + " crash(es)" : "") + (slot.resets ? " · " + slot.resets + " reset(s)" : "");
  }

  // The slot a job's worker names: "<agentId>/slot-<n>/<claim id>" (the lease owner).
  function slotOf(worker) {
    const match = /^(.+)\/slot-(\d+)(?:\/|$)/.exec(String(worker || ""));
    return match ? match[1] + "/" + match[2] : null;
  }

  // A slot as the jobs read in the same refresh tell it: the heartbeat may be up to its interval old, so a
  // job the list shows running on a slot makes it busy, and a slot's job the list shows ended makes it idle.
  function reconcile(agent, slot) {
    const key = agent.agentId + "/" + slot.id;
    const running = [...state.jobs.values()].find((j) => !TERMINAL.has(j.status) && slotOf(j.worker) === key);
    if (running) return { busy: true, job: running.jobId };
    const current = slot.currentJob ? state.jobs.get(slot.currentJob) : null;
    if (slot.busy && current && TERMINAL.has(current.status)) return { busy: false, job: null };
    return { busy: Boolean(slot.busy), job: slot.currentJob || null };
  }

  function renderWorkers() {
    const box = $("workers");
    const pool = state.pool;
    if (!pool) {
      const text = state.poolNote || (!state.apiUrl ? "Set the API URL in the Connection panel." :
        !signedIn() ? (state.auth ? "Sign in to see the worker pool." : "Sign-in is not configured.") :
          "Waiting for the API…");
      if (box.textContent !== text) box.replaceChildren(el("p", { className: "muted", text }));
      return;
    }
    const agents = pool.agents || [];
    let busy = 0, total = 0;
    const cards = agents.map((agent) => {
      const card = el("div", { className: "agent", "data-agent-id": agent.agentId },
        el("div", { className: "agent-head" },
          el("span", { className: "status " + (agent.healthy ? "status-completed" : "status-failed"),
            text: agent.healthy ? "healthy" : "unhealthy" }),
          el("strong", { text: agent.agentId }),
          el("span", { className: "muted", text: "v" + (agent.version || "?") +
            " · seen " + Math.round(agent.ageS ?? 0) + " s ago" + (agent.draining ? " · draining" : "") })));
      const slots = el("div", { className: "slots" });
      for (const slot of agent.slots || []) {
        const now = reconcile(agent, slot);
        total += 1;
        if (now.busy) busy += 1;
        const cls = "slot" + (now.busy ? " busy" : "") + (slot.ready ? "" : " down");
        const text = "slot " + slot.id + ": " + (now.busy ? "busy " + (now.job || "") :
          slot.ready ? "idle" : "not ready") + restartText(slot);
        slots.append(el("span", { className: cls, text, "data-job-id": now.job || undefined }));
      }
      card.append(slots);
      return card;
    });
    const summary = el("p", { id: "workers-summary",
      text: (pool.healthyAgents ?? 0) + " of " + agents.length + " agent(s) healthy · " +
        busy + " of " + (total || pool.totalSlots || 0) + " slot(s) busy" });
    const fresh = el("div", {}, summary, ...cards);
    if (box.innerHTML !== fresh.innerHTML) box.replaceChildren(...fresh.childNodes);  // no churn when unchanged
  }

  // The pool for this refresh; undefined when it could not be read (the last one stays, with a note).
  async function readPool() {
    if (!state.poolSupported) return null;
    try {
      const pool = await api("GET", "/api/workers");
      state.poolNote = "";
      return pool;
    } catch (err) {
      if (isMissingRoute(err)) {
        state.poolSupported = false;
        state.poolNote = "This API does not report the worker pool.";
        return null;
      }
      state.poolNote = err.message;
      return null;
    }
  }

  // -- start -----------------------------------------------------------------------------------------

  function onSaveSettings(event) {
    event.preventDefault();
    state.apiUrl = normaliseUrl($("api-url").value);
    $("api-url").value = state.apiUrl;
    sessionStorage.setItem(KEY_URL, state.apiUrl);
    state.listSupported = true;
    state.poolSupported = true;
    state.poolNote = "";
    $("settings-details").open = false;
    pollJobsSoon();
  }

  async function start() {
    $("settings-form").addEventListener("submit", onSaveSettings);
    $("sign-in").addEventListener("click", onSignIn);
    $("sign-out").addEventListener("click", onSignOut);
    $("delegate-form").addEventListener("submit", onSubmit);
    $("job-filters").addEventListener("submit", onFilter);
    $("status-filter").addEventListener("change", onFilter);
    $("mine-filter").addEventListener("change", onFilter);
    $("jobs-more").addEventListener("click", loadMore);
    await loadConfig();
    renderJobs();
    pollJobs();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
