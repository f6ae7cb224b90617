// AIPM attach terminal: xterm.js (npm @xterm/xterm, vendored by `make web-vendor` into vendor/) connected to
// the agent's attach WebSocket (ec2_agent/attach.py). The protocol, JSON text frames: first
// {"type": "attach", token, owner, repo, branch}; then the agent sends {"type": "ready"}, {"type": "output",
// data} and {"type": "exit"}; the page sends {"type": "input", data}, {"type": "resize", rows, cols} and
// {"type": "finish"} (answered {"type": "finished", commit}); a refusal is {"type": "error", message}, then
// close. The agent accepts this page's Origin only when it is its AIPM_CONSOLE_ORIGIN. The token is held in
// this page's memory only; nothing is stored. Query parameters prefill the repository and branch
// (terminal.html?repo=owner/repo&branch=feature/x), never the token.
"use strict";

(function () {
  const ROWS = 30;
  const COLS = 110;
  const $ = (id) => document.getElementById(id);
  const state = { ws: null, term: null, ready: false };

  function setState(text, ok) {
    const pill = $("attach-state");
    pill.textContent = text;
    pill.className = "pill " + (ok === undefined ? "pill-idle" : ok ? "pill-ok" : "pill-bad");
  }

  function say(text, kind) {
    const box = $("attach-message");
    box.className = "result" + (kind ? " " + kind : "");
    box.textContent = text;
  }

  function fieldError(id, text) {
    $(id).setAttribute("aria-invalid", "true");
    $(id + "-error").textContent = text;
  }

  function clearErrors() {
    for (const input of document.querySelectorAll("#attach-form [aria-invalid]")) input.removeAttribute("aria-invalid");
    for (const span of document.querySelectorAll("#attach-form .field-error")) span.textContent = "";
  }

  function readForm() {
    const value = (id) => $(id).value.trim();
    const problems = [];
    const [owner, repo, extra] = value("attach-repo").split("/");
    if (!owner || !repo || extra !== undefined) {
      problems.push(["attach-repo", "Enter the repository as owner/repo, e.g. aipm-demo/tools."]);
    }
    if (!value("attach-branch")) problems.push(["attach-branch", "Enter the job's branch."]);
    if (!/^wss?:\/\/[^\s/]+\/\S*$/.test(value("attach-url"))) {
      problems.push(["attach-url", "Enter the attach address, e.g. ws://127.0.0.1:8083/attach."]);
    }
    if (!$("attach-token").value) problems.push(["attach-token", "Enter the agent's token."]);
    return { owner, repo, branch: value("attach-branch"), url: value("attach-url"), token: $("attach-token").value, problems };
  }

  function connected(on) {
    $("attach-connect").hidden = on;
    $("attach-finish").hidden = !on;
    $("attach-close").hidden = !on;
    for (const id of ["attach-repo", "attach-branch", "attach-url", "attach-token"]) $(id).disabled = on;
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function terminal() {
    if (state.term) return state.term;
    const term = new window.Terminal({ rows: ROWS, cols: COLS, convertEol: false, cursorBlink: true,
      fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace", fontSize: 14,
      // xterm.js's default bright black (#666) on black is below WCAG AA contrast (4.5:1); CLIs use it for hints.
      theme: { background: "#000000", foreground: "#e6e6e6", brightBlack: "#8c8c8c" } });
    term.open($("terminal"));
    term.onData((data) => send({ type: "input", data }));
    term.onResize(({ rows, cols }) => send({ type: "resize", rows, cols }));
    state.term = term;
    return term;
  }

  function onConnect(event) {
    event.preventDefault();
    clearErrors();
    const form = readForm();
    if (form.problems.length) {
      for (const [id, text] of form.problems) fieldError(id, text);
      say("Please correct the marked fields.", "error");
      $(form.problems[0][0]).focus();
      return;
    }
    if (typeof window.Terminal !== "function") {
      say("The terminal client is not installed next to the console: run `make web-vendor` (it vendors " +
        "the pinned xterm.js from npm).", "error");
      return;
    }
    let ws;
    try {
      ws = new WebSocket(form.url);
    } catch (err) {
      fieldError("attach-url", "This address cannot be used: " + (err.message || err));
      return;
    }
    state.ws = ws;
    state.ready = false;
    connected(true);
    setState("connecting…");
    say("Opening a session on " + form.owner + "/" + form.repo + " " + form.branch + "…");
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "attach", token: form.token, owner: form.owner, repo: form.repo,
        branch: form.branch }));
    });
    ws.addEventListener("message", (event) => onMessage(ws, event));
    ws.addEventListener("close", (event) => onClose(ws, event));
  }

  function onMessage(ws, event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (message.type === "ready") {
      state.ready = true;
      const term = terminal();
      term.reset();
      send({ type: "resize", rows: term.rows, cols: term.cols });
      term.focus();
      setState("connected", true);
      say("Connected: type into the terminal. Finish commits and pushes your changes to the branch; " +
        "disconnecting discards them.", "ok");
    } else if (message.type === "output" && typeof message.data === "string") {
      terminal().write(message.data);
    } else if (message.type === "exit") {
      say("The CLI exited. Finish to commit and push what changed, or disconnect.");
    } else if (message.type === "finished") {
      say(message.commit ? "Pushed commit " + message.commit + " to the branch." :
        "Nothing changed, so nothing was pushed.", "ok");
      $("attach-message").dataset.commit = message.commit || "";
    } else if (message.type === "error") {
      say("The agent refused: " + String(message.message || "no reason given"), "error");
      $("attach-message").dataset.refused = "1";
    }
  }

  function onClose(ws, event) {
    if (state.ws !== ws) return;
    state.ws = null;
    connected(false);
    setState("not connected", event.code === 1000 || event.code === 1005 ? undefined : false);
    if (!state.ready && !$("attach-message").dataset.refused) {
      // A browser hides why a handshake failed; the usual reasons, in order.
      say("Could not open the session (WebSocket closed, code " + event.code + "): is the attach port " +
        "reachable at this address, and is this console's origin the agent's AIPM_CONSOLE_ORIGIN?", "error");
    }
    delete $("attach-message").dataset.refused;
    state.ready = false;
  }

  function onFinish() {
    say("Committing and pushing…");
    send({ type: "finish" });
  }

  function onDisconnect() {
    if (state.ws) state.ws.close(1000, "closed by the person");
    say("Disconnected; the session's changes were discarded.");
  }

  async function start() {
    const params = new URLSearchParams(window.location.search);
    $("attach-repo").value = params.get("repo") || "";
    $("attach-branch").value = params.get("branch") || "";
    let config = {};
    try {
      const resp = await fetch("config.json", { cache: "no-store" });
      if (resp.ok) config = (await resp.json()) || {};
    } catch (err) {
      config = {};
    }
    $("attach-url").value = config.attachUrl || "ws://127.0.0.1:8083/attach";
    $("attach-form").addEventListener("submit", onConnect);
    $("attach-finish").addEventListener("click", onFinish);
    $("attach-close").addEventListener("click", onDisconnect);
    (params.get("branch") ? $("attach-token") : $("attach-repo")).focus();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
