/*
 * The agent's chat page. Dependency-free; runs under a strict CSP (no inline code or styles).
 *
 * Security rules this file keeps:
 * - every piece of server or model text goes into the DOM through textContent (never innerHTML):
 *   replies can carry text from third-party APIs;
 * - the page handles no credentials: the ALB session cookie goes along with same-origin fetches;
 * - an authorization URL is opened only if it resolves to this page's own origin;
 * - an action that changes data is shown field by field, every argument complete, with invisible
 *   Unicode format characters made visible (\uXXXX). Approve and Deny post to the binder's
 *   approval page (same origin, the browser's own session: the agent cannot approve for the
 *   user); only then does the page send the confirmation turn with the action's id.
 */
"use strict";

(() => {
  const ENDPOINT = "/app/chat";
  const STORAGE_KEY = "agent-chat:v1";
  const MAX_HISTORY_TURNS = 20; // turns sent as history
  const MAX_TURN_CHARS = 8000; // per history text
  const MAX_BODY_BYTES = 60000; // the service refuses bodies over 64 KiB: stay under it
  const MAX_STORED_ENTRIES = 200; // kept in sessionStorage
  const SESSION_EXPIRED = "Your session has expired — reload the page to sign in again.";
  const ACTION_ID = /^[A-Za-z0-9_-]{1,128}$/;
  // Characters shown as escapes in an action's fields, the rule of svc_common/invisible.py:
  // format, control (other than tab and newline), separator, private-use, unassigned and
  // surrogate code points, and the default-ignorable ones (variation selectors, fillers), except
  // U+FE0F right after a symbol (an emoji's presentation selector).
  const INVISIBLE =
    /(?<!\p{So})\uFE0F|[\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}\u0000-\u0008\u000b-\u001f\u007f-\u009f\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0e\uffa0\ufff0-\ufff8\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]/gu;

  const REASONS = {
    no_connection: "not connected yet",
    insufficient_scope: "needs more access",
    reauthorization_required: "access expired",
  };
  // Provider display names come from the server (GET /app/providers, the binder's names for
  // this agent's providers), so the page never keeps a list of its own to drift.
  const PROVIDERS_ENDPOINT = "/app/providers";
  const displayNames = new Map();
  const STATUS_LABELS = {
    ok: "ok",
    error: "error",
    authorization_required: "needs connection",
    approval_required: "awaiting approval",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    scroller: $("scroller"),
    empty: $("empty"),
    transcript: $("transcript"),
    typing: $("typing"),
    error: $("error"),
    errorText: $("error-text"),
    errorActions: $("error-actions"),
    errorDismiss: $("error-dismiss"),
    form: $("composer"),
    message: $("message"),
    send: $("send"),
    clear: $("clear"),
    badge: $("model-badge"),
  };

  // ---------------------------------------------------------------- small helpers

  /** Build an element. Text is always set with textContent / text nodes, never parsed as HTML. */
  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "on") {
        for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const asString = (v) => (typeof v === "string" ? v : "");
  let idCounter = 0;
  const nextId = (prefix) => `${prefix}-${++idCounter}`;

  /** A provider's label: the server's display name, else the name itself. */
  function providerName(provider) {
    const key = asString(provider);
    if (displayNames.has(key)) return displayNames.get(key);
    return key || "account";
  }

  /** Fetch the display names once at load; on any failure the names stand as they are. */
  async function loadProviders() {
    try {
      const response = await fetch(PROVIDERS_ENDPOINT, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        cache: "no-store",
        redirect: "manual",
      });
      if (!response.ok) return;
      const data = await response.json();
      if (!isObject(data) || !Array.isArray(data.providers)) return;
      for (const item of data.providers) {
        if (isObject(item) && typeof item.name === "string" && typeof item.display_name === "string") {
          displayNames.set(item.name, item.display_name);
        }
      }
      if (!busy) renderAll(); // else the next render shows them
    } catch (_) {
      // Labels keep the provider names; nothing else depends on this.
    }
  }

  /** Reply text as shown. */
  const displayText = (text) => text.trim();

  /**
   * The first `n` UTF-16 units of a text, one fewer if the cut would split a surrogate pair:
   * the service refuses text holding half a pair (an emoji cut in two) with a 400.
   */
  function head(text, n) {
    const code = text.charCodeAt(n - 1);
    return text.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
  }

  /** Cap a history text (history is context for the model, nothing more). */
  const capText = (text) => (text.length <= MAX_TURN_CHARS ? text : head(text, MAX_TURN_CHARS));

  /** "\u202E" for U+202E, "\u{E0041}" beyond the BMP. */
  function escapeOf(char) {
    const hex = char.codePointAt(0).toString(16).toUpperCase();
    return hex.length > 4 ? `\\u{${hex}}` : `\\u${hex.padStart(4, "0")}`;
  }

  /**
   * Text as nodes, every invisible character replaced by a marked escape: what the user
   * approves reads exactly as it is. Returns {nodes, flagged}.
   */
  function visibleText(text) {
    const nodes = [];
    let flagged = false;
    let last = 0;
    for (const match of text.matchAll(INVISIBLE)) {
      flagged = true;
      if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
      nodes.push(el("span", { class: "cf-escape", title: "invisible character", text: escapeOf(match[0]) }));
      last = match.index + match[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return { nodes, flagged };
  }

  /** The approval page URL, or null: only this origin's /oauth2/actions/ pages are used. */
  function safeApprovalUrl(raw) {
    const href = safeAuthorizationUrl(raw);
    if (!href) return null;
    const url = new URL(href);
    if (!url.pathname.startsWith("/oauth2/actions/") || url.search || url.hash) return null;
    return url.origin + url.pathname.replace(/\/+$/, "");
  }

  function isExpired(expiresAt) {
    if (typeof expiresAt !== "number" || !Number.isFinite(expiresAt) || expiresAt <= 0) return false;
    const ms = expiresAt > 1e12 ? expiresAt : expiresAt * 1000; // seconds or milliseconds
    return Date.now() > ms;
  }

  /** The URL to open for a connection, or null: only this page's own origin is ever opened. */
  function safeAuthorizationUrl(raw) {
    if (typeof raw !== "string" || !raw.trim()) return null;
    let url;
    try {
      url = new URL(raw, window.location.href);
    } catch (_) {
      return null;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") return null;
    if (url.username || url.password) return null;
    if (url.origin !== window.location.origin) return null;
    return url.href;
  }

  // ---------------------------------------------------------------- state and storage

  function cleanToolCalls(value) {
    if (!Array.isArray(value)) return [];
    return value.filter(isObject).slice(0, 50).map((t) => ({
      tool: asString(t.tool),
      provider: asString(t.provider),
      status: asString(t.status),
    }));
  }

  function cleanAuthorizations(value) {
    if (!Array.isArray(value)) return [];
    return value
      .filter((a) => isObject(a) && typeof a.provider === "string" && a.provider)
      .slice(0, 20)
      .map((a) => ({
        provider: a.provider,
        scopes: Array.isArray(a.scopes) ? a.scopes.filter((s) => typeof s === "string") : [],
        authorization_url: asString(a.authorization_url),
        session_id: asString(a.session_id),
        expires_at: typeof a.expires_at === "number" ? a.expires_at : null,
        reason: asString(a.reason),
      }));
  }

  function cleanApproval(value) {
    if (!isObject(value) || typeof value.action_id !== "string" || !ACTION_ID.test(value.action_id)) {
      return null;
    }
    const action = isObject(value.action) ? value.action : {};
    return {
      action_id: value.action_id,
      approval_url: asString(value.approval_url),
      expires_at: typeof value.expires_at === "number" ? value.expires_at : null,
      action: {
        tool: asString(action.tool),
        provider: asString(action.provider),
        arguments: isObject(action.arguments) ? action.arguments : {},
      },
      decision: ["approved", "denied"].includes(value.decision) ? value.decision : null,
    };
  }

  function cleanActionResult(value) {
    if (!isObject(value) || typeof value.status !== "string") return null;
    return {
      action_id: asString(value.action_id),
      tool: asString(value.tool),
      status: value.status,
      reason: asString(value.reason),
      replayed: value.replayed === true,
    };
  }

  function cleanEntry(e) {
    if (!isObject(e) || typeof e.text !== "string") return null;
    if (e.role === "user") {
      const confirmAction =
        typeof e.confirm_action === "string" && ACTION_ID.test(e.confirm_action) ? e.confirm_action : null;
      return { role: "user", text: e.text, confirm_action: confirmAction };
    }
    if (e.role !== "assistant") return null;
    return {
      role: "assistant",
      text: e.text,
      model: asString(e.model),
      tool_calls: cleanToolCalls(e.tool_calls),
      authorization_required: cleanAuthorizations(e.authorization_required),
      approval_required: cleanApproval(e.approval_required),
      action_result: cleanActionResult(e.action_result),
    };
  }

  function emptyState() {
    return { entries: [], model: "", connect: null };
  }

  function load() {
    try {
      const raw = window.sessionStorage.getItem(STORAGE_KEY);
      if (!raw) return emptyState();
      const data = JSON.parse(raw);
      if (!isObject(data)) return emptyState();
      const entries = Array.isArray(data.entries) ? data.entries.map(cleanEntry).filter(Boolean) : [];
      const connect =
        isObject(data.connect) && typeof data.connect.provider === "string"
          ? { provider: data.connect.provider }
          : null;
      return { entries: entries.slice(-MAX_STORED_ENTRIES), model: asString(data.model), connect };
    } catch (_) {
      return emptyState();
    }
  }

  function save() {
    state.entries = state.entries.slice(-MAX_STORED_ENTRIES);
    for (let keep = state.entries.length; ; keep = Math.floor(keep / 2)) {
      try {
        const snapshot = { ...state, entries: state.entries.slice(state.entries.length - keep) };
        window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(snapshot));
        return;
      } catch (_) {
        if (keep === 0) return; // storage disabled: the transcript lives in memory only
      }
    }
  }

  let state = load();
  let busy = false;
  let errorRetry = false; // the error banner currently offers a Retry button
  let leftAfterConnect = false; // the page lost focus/visibility after a Connect click
  let live = null; // {entry, node, retryArea, notice}: actions under the latest reply

  // ---------------------------------------------------------------- rendering

  function renderToolCalls(calls) {
    if (!calls.length) return null;
    return el(
      "ul",
      { class: "tools", "aria-label": "Tool calls" },
      calls.map((c) =>
        el("li", {
          class: `chip status-${/^[a-z_]+$/.test(c.status) ? c.status : "unknown"}`,
          "data-testid": "tool-call",
          "data-status": c.status,
          title: c.provider ? `provider: ${c.provider}` : null,
          text: `${c.tool || "tool"} · ${STATUS_LABELS[c.status] || c.status || "unknown"}`,
        })
      )
    );
  }

  /** A compact, inert summary of what an older reply asked for. */
  function renderPastActions(entry) {
    const lines = [];
    for (const a of entry.authorization_required) {
      const reason = REASONS[a.reason] || a.reason.replace(/_/g, " ");
      lines.push(`Asked to connect ${providerName(a.provider)}${reason ? ` (${reason})` : ""}`);
    }
    const approval = entry.approval_required;
    if (approval) {
      const what = `${approval.action.tool || "an action"} (${providerName(approval.action.provider)})`;
      const decided = approval.decision ? `: ${approval.decision}` : "";
      lines.push(`Asked for approval of ${what}${decided}`);
    }
    if (!lines.length) return null;
    return el("ul", { class: "past-actions" }, lines.map((t) => el("li", { text: t })));
  }

  /** Connect buttons, confirmation and retry under the latest reply. */
  function renderLiveActions(entry) {
    const auths = entry.authorization_required;
    const approval = entry.approval_required;
    if (!auths.length && !approval) return null;
    const box = el("div", { class: "actions" });
    const info = { entry, node: box, retryArea: null, notice: null };

    if (auths.length) {
      const list = el("ul", { class: "connect-list", "aria-label": "Accounts to connect" });
      for (const a of auths) {
        const name = providerName(a.provider);
        const noteId = nextId("connect-note");
        const parts = [REASONS[a.reason] || a.reason.replace(/_/g, " ")];
        if (a.scopes.length) parts.push(`scopes: ${a.scopes.join(", ")}`);
        if (isExpired(a.expires_at)) parts.push("link expired: retry for a new one");
        const note = parts.filter(Boolean).join(" · ");
        list.append(
          el("li", { class: "connect-item" }, [
            el("button", {
              type: "button",
              class: "btn btn-primary btn-small connect",
              "data-testid": `connect-${a.provider}`,
              "aria-describedby": note ? noteId : null,
              text: `Connect ${name}`,
              on: { click: () => openConnection(a) },
            }),
            note ? el("span", { id: noteId, class: "note", text: note }) : null,
          ])
        );
      }
      box.append(list);
      info.notice = el("p", { class: "notice", role: "status", hidden: true });
      info.retryArea = el("div", { class: "retry-area" });
      box.append(info.notice, info.retryArea);
    }

    if (approval) box.append(renderApproval(entry, approval));
    live = info;
    return box;
  }

  /** One argument's value, complete: strings verbatim (escapes for invisible characters). */
  function renderValue(value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    const shown = visibleText(text === undefined ? "null" : text);
    const nodes = [el("pre", { class: "arg-value", tabindex: "0" }, shown.nodes)];
    if (typeof value === "string" && value.length > 200) {
      nodes.push(el("span", { class: "arg-length", text: `${value.length.toLocaleString()} characters, shown in full` }));
    }
    return { nodes, flagged: shown.flagged };
  }

  /** The proposed action, field by field, with Approve and Deny. */
  function renderApproval(entry, approval) {
    const titleId = nextId("approval-title");
    const action = approval.action;
    const fields = el("dl", { class: "approval-fields", "data-testid": "approval-fields" });
    let flagged = false;
    const add = (name, value, testid) => {
      const shown = renderValue(value);
      flagged = flagged || shown.flagged;
      fields.append(el("dt", { text: name }), el("dd", { "data-testid": testid }, shown.nodes));
    };
    add("Tool", action.tool, "approval-tool");
    add("Provider", action.provider, "approval-provider");
    for (const [name, value] of Object.entries(action.arguments)) add(name, value, `approval-arg-${name}`);

    const url = safeApprovalUrl(approval.approval_url);
    const expired = isExpired(approval.expires_at);
    const status = el("p", { class: "notice", role: "status", hidden: true });
    const card = el("div", { class: "approval-card", role: "group", "aria-labelledby": titleId, "data-testid": "approval-card" }, [
      el("p", { id: titleId, class: "approval-title", text: "Approval needed: this changes data. Nothing has run." }),
      fields,
      flagged
        ? el("p", {
            class: "approval-flag",
            "data-testid": "approval-flag",
            text: "Contains invisible formatting characters, shown as \\uXXXX. They can make text read differently from what it is.",
          })
        : null,
      status,
    ]);
    const showStatus = (text) => {
      status.hidden = false;
      status.textContent = text;
    };
    if (approval.decision === "denied") {
      showStatus("Denied: nothing was changed.");
      return card;
    }
    if (!url) {
      showStatus("The approval link does not point to this site, so this action cannot be approved here.");
      return card;
    }
    if (expired) {
      showStatus("This approval has expired: ask again to propose the action anew.");
      return card;
    }
    const confirm = () =>
      send(`Run the approved action: ${action.tool || "action"} (${providerName(action.provider)})`, {
        confirmAction: approval.action_id,
      });
    const buttons =
      approval.decision === "approved"
        ? [
            el("button", {
              type: "button",
              class: "btn btn-primary btn-small",
              "data-testid": "run-approved",
              text: "Run it",
              on: { click: confirm },
            }),
          ]
        : [
            el("button", {
              type: "button",
              class: "btn btn-primary btn-small",
              "data-testid": "approve",
              text: "Approve",
              on: { click: () => decide(entry, approval, url, "approve", showStatus, confirm) },
            }),
            el("button", {
              type: "button",
              class: "btn btn-secondary btn-small",
              "data-testid": "deny",
              text: "Deny",
              on: { click: () => decide(entry, approval, url, "deny", showStatus, confirm) },
            }),
            // Approved on the binder's own page (the link in the reply text) instead.
            el("button", {
              type: "button",
              class: "btn btn-ghost btn-small",
              "data-testid": "run-approved",
              text: "Approved on its page? Run it",
              on: { click: confirm },
            }),
          ];
    card.insertBefore(el("div", { class: "approval-buttons" }, buttons), status);
    return card;
  }

  /** POST the decision to the binder's approval page (same origin, this browser's session). */
  async function decide(entry, approval, url, verb, showStatus, confirm) {
    if (busy) return;
    setBusy(true);
    let ok = false;
    try {
      const response = await fetch(`${url}/${verb}`, {
        method: "POST",
        credentials: "same-origin",
        body: new URLSearchParams(),
        cache: "no-store",
      });
      // Success is a 303 to the approval page, which fetch follows: a page of this origin.
      ok = response.ok && new URL(response.url).origin === window.location.origin;
    } catch (_) {
      ok = false;
    }
    setBusy(false);
    if (!ok) {
      showError(
        verb === "approve"
          ? "The approval was not accepted. Open the approval page, sign in again if asked, and retry."
          : "The denial was not accepted. Open the approval page and retry."
      );
      return;
    }
    approval.decision = verb === "approve" ? "approved" : "denied";
    save();
    if (verb === "deny") {
      renderAll();
      return;
    }
    showStatus("Approved.");
    confirm();
  }

  function renderEntry(entry, isLast) {
    if (entry.role === "user") {
      return el("div", { class: "turn turn-user" }, [
        el("span", { class: "sr-only", text: "You said:" }),
        el("div", { class: "msg user" }, [el("p", { class: "text", text: entry.text })]),
      ]);
    }
    const shown = displayText(entry.text);
    return el("div", { class: "turn turn-assistant" }, [
      el("span", { class: "sr-only", text: "Agent replied:" }),
      el("div", { class: "msg assistant" }, [
        el("p", { class: shown ? "text" : "text muted", text: shown || "(no reply text)" }),
        renderToolCalls(entry.tool_calls),
        isLast ? renderLiveActions(entry) : renderPastActions(entry),
      ]),
    ]);
  }

  function renderAll() {
    live = null;
    const nodes = state.entries.map((e, i) => renderEntry(e, i === state.entries.length - 1));
    ui.transcript.replaceChildren(...nodes);
    refreshRetry();
    updateChrome();
  }

  /** Append entries after a successful turn; the previous reply's live actions become a summary. */
  function appendEntries(entries) {
    if (live) {
      const past = renderPastActions(live.entry);
      if (past) live.node.replaceWith(past);
      else live.node.remove();
      live = null;
    }
    const start = state.entries.length;
    state.entries.push(...entries);
    save();
    entries.forEach((entry, i) => {
      ui.transcript.append(renderEntry(entry, start + i === state.entries.length - 1));
    });
    refreshRetry();
    updateChrome();
  }

  function updateChrome() {
    ui.empty.hidden = state.entries.length > 0 || busy;
    ui.badge.hidden = !state.model;
    ui.badge.textContent = state.model;
    ui.clear.disabled = busy || (state.entries.length === 0 && !ui.transcript.childElementCount);
  }

  function scrollToEnd() {
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    ui.scroller.scrollTo({ top: ui.scroller.scrollHeight, behavior: smooth ? "smooth" : "auto" });
  }

  /** The "Done? Retry" button under the latest reply, after a Connect click or an expired link. */
  function refreshRetry() {
    if (!live || !live.retryArea) return;
    const expired = live.entry.authorization_required.some((a) => isExpired(a.expires_at));
    const wanted = (state.connect !== null || expired) && !errorRetry;
    if (!wanted) {
      live.retryArea.replaceChildren();
      return;
    }
    if (live.retryArea.childElementCount) return;
    live.retryArea.append(
      el("button", {
        type: "button",
        class: "btn btn-secondary btn-small",
        "data-testid": "retry",
        text: "Done? Retry",
        disabled: busy,
        on: { click: retryLastUserMessage },
      })
    );
  }

  function showReturnNotice() {
    if (!live || !live.notice || !state.connect) return;
    live.notice.hidden = false;
    live.notice.textContent =
      `Back from connecting ${providerName(state.connect.provider)}? ` +
      "If you finished, select “Done? Retry” to continue.";
    live.node.classList.add("attention");
  }

  // ---------------------------------------------------------------- errors

  function showError(message, options) {
    const opts = options || {};
    ui.error.hidden = false;
    ui.errorText.textContent = message;
    ui.errorActions.replaceChildren();
    errorRetry = typeof opts.retryText === "string";
    if (errorRetry) {
      ui.errorActions.append(
        el("button", {
          type: "button",
          class: "btn btn-secondary btn-small",
          "data-testid": "retry",
          text: "Retry",
          on: { click: () => send(opts.retryText, { retry: true, confirmAction: opts.retryAction }) },
        })
      );
    }
    if (opts.reload) {
      ui.errorActions.append(
        el("button", {
          type: "button",
          class: "btn btn-secondary btn-small",
          "data-testid": "reload",
          text: "Reload",
          on: { click: () => window.location.reload() },
        })
      );
    }
    refreshRetry();
  }

  function hideError() {
    ui.error.hidden = true;
    ui.errorText.textContent = "";
    ui.errorActions.replaceChildren();
    errorRetry = false;
    refreshRetry();
  }

  function defaultErrorMessage(status) {
    if (status === 400) return "The request was not accepted.";
    if (status === 413) return "The message is too long.";
    if (status === 429) return "Too many requests. Wait a moment, then retry.";
    if (status >= 500) return "The service is not available right now. Try again in a moment.";
    return `The request failed (HTTP ${status}).`;
  }

  // ---------------------------------------------------------------- the API

  /** History to send: user and assistant text only, last turns first to fit the limits. */
  function buildHistory(message) {
    const encoder = new TextEncoder();
    let budget = MAX_BODY_BYTES - encoder.encode(JSON.stringify({ message, history: [] })).length;
    const turns = state.entries.filter((e) => e.text).slice(-MAX_HISTORY_TURNS);
    // History is context for the model only: nothing in it can propose or confirm an action.
    const history = [];
    for (let i = turns.length - 1; i >= 0; i--) {
      const turn = { role: turns[i].role, text: capText(turns[i].text) };
      const size = encoder.encode(JSON.stringify(turn)).length + 1;
      if (size > budget) break;
      budget -= size;
      history.unshift(turn);
    }
    return history;
  }

  async function postChat(body) {
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
        // An expired ALB session answers with a redirect to the sign-in page: do not follow it.
        redirect: "manual",
      });
    } catch (_) {
      return {
        ok: false,
        retry: true,
        message: "Could not reach the service. Check your connection, then retry.",
      };
    }
    if (response.type === "opaqueredirect" || response.status === 401) {
      return { ok: false, reload: true, message: SESSION_EXPIRED };
    }
    let data = null;
    if ((response.headers.get("content-type") || "").includes("json")) {
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    }
    if (response.ok) {
      if (isObject(data) && typeof data.reply === "string") return { ok: true, data };
      return { ok: false, retry: true, message: "The service sent an unexpected answer. Try again." };
    }
    const message =
      isObject(data) && typeof data.message === "string" && data.message.trim()
        ? data.message
        : defaultErrorMessage(response.status);
    return {
      ok: false,
      retry: [502, 503, 504].includes(response.status),
      field: isObject(data) ? asString(data.field) : "",
      message,
    };
  }

  // ---------------------------------------------------------------- sending

  function setBusy(value) {
    busy = value;
    ui.send.disabled = value;
    ui.message.disabled = value;
    ui.typing.hidden = !value;
    ui.transcript.setAttribute("aria-busy", value ? "true" : "false");
    for (const button of ui.transcript.querySelectorAll(".actions button")) button.disabled = value;
    for (const button of ui.errorActions.querySelectorAll("button")) button.disabled = value;
    updateChrome();
  }

  async function send(rawText, options) {
    if (busy) return;
    const message = typeof rawText === "string" ? rawText.trim() : "";
    if (!message) {
      ui.message.focus();
      return;
    }
    const confirmAction =
      options && typeof options.confirmAction === "string" && ACTION_ID.test(options.confirmAction)
        ? options.confirmAction
        : null;
    const history = buildHistory(message);
    hideError();
    const pending = el("div", { class: "turn turn-user pending" }, [
      el("span", { class: "sr-only", text: "You said:" }),
      el("div", { class: "msg user" }, [el("p", { class: "text", text: message })]),
    ]);
    ui.transcript.append(pending);
    const typed = ui.message.value;
    if (typed.trim() === message) ui.message.value = "";
    setBusy(true);
    scrollToEnd();

    const body = { message, history };
    if (confirmAction) body.confirm_action = confirmAction;
    const result = await postChat(body);

    setBusy(false);
    if (result.ok) {
      pending.remove();
      const data = result.data;
      state.model = asString(data.model) || state.model;
      state.connect = null;
      leftAfterConnect = false;
      const reply = cleanEntry({
        role: "assistant",
        text: data.reply,
        model: data.model,
        tool_calls: data.tool_calls,
        authorization_required: data.authorization_required,
        approval_required: data.approval_required,
        action_result: data.action_result,
      });
      appendEntries([{ role: "user", text: message, confirm_action: confirmAction }, reply]);
      scrollToEnd();
      ui.message.focus();
      return;
    }

    // Failure: the message leaves the transcript and nothing typed is lost.
    pending.remove();
    if (!ui.message.value.trim() && typed.trim()) ui.message.value = typed;
    showError(result.message, {
      retryText: result.retry ? message : undefined,
      retryAction: confirmAction,
      reload: result.reload,
    });
    updateChrome();
    if (!(options && options.retry)) ui.message.focus();
  }

  function retryLastUserMessage() {
    for (let i = state.entries.length - 1; i >= 0; i--) {
      if (state.entries[i].role === "user") {
        send(state.entries[i].text, { retry: true, confirmAction: state.entries[i].confirm_action });
        return;
      }
    }
  }

  function openConnection(authorization) {
    const url = safeAuthorizationUrl(authorization.authorization_url);
    if (!url) {
      showError(
        `The link to connect ${providerName(authorization.provider)} does not point to this site, ` +
          "so it was not opened."
      );
      return;
    }
    window.open(url, "_blank", "noopener");
    state.connect = { provider: authorization.provider };
    leftAfterConnect = false;
    save();
    refreshRetry();
  }

  // ---------------------------------------------------------------- events

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(ui.message.value);
  });

  ui.message.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.altKey) return;
    if (event.isComposing || event.keyCode === 229) return; // IME composition
    event.preventDefault();
    send(ui.message.value);
  });

  ui.clear.addEventListener("click", () => {
    if (busy) return;
    state = { ...emptyState(), model: state.model };
    leftAfterConnect = false;
    save();
    hideError();
    renderAll();
    ui.message.focus();
  });

  ui.errorDismiss.addEventListener("click", () => {
    hideError();
    ui.message.focus();
  });

  // Coming back from the provider's consent page (opened in another tab).
  const markAway = () => {
    if (state.connect) leftAfterConnect = true;
  };
  const onReturn = () => {
    if (document.visibilityState !== "visible" || !leftAfterConnect || !state.connect) return;
    leftAfterConnect = false;
    showReturnNotice();
  };
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") markAway();
    else onReturn();
  });
  window.addEventListener("blur", markAway);
  window.addEventListener("focus", onReturn);

  // ---------------------------------------------------------------- start

  renderAll();
  loadProviders();
  if (state.connect) showReturnNotice(); // reloaded after a Connect click
  if (state.entries.length) ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.message.focus();
})();
