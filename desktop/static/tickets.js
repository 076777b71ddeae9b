/* callflow agent desktop: tickets (issue 19) and the repeat-caller view (STD-073).
 *
 * The form shows during a call and in after-call work: the agent opens a ticket from the
 * current call (POST /api/v1/tickets with its call id: the server links the call, the
 * caller, the agent and the recording) and sees its number and its deadline, the
 * server's, shown in the centre's time zone (GET /api/v1/tickets/form names it). The
 * list holds the agent's own open tickets; a change sends the version it read, and a 409
 * (someone else changed the ticket) says so and keeps what the agent typed.
 *
 * When a call rings, the repeat-caller view (GET /api/v1/tickets/caller/<call id>) shows
 * the caller's open tickets and recent calls, as the server chose and bounded them for
 * this login's role. Every text from the server is shown with textContent (a description
 * with HTML stays text). Labels: api/i18n packs (desktop.tickets.*, desktop.repeat.*).
 * Hooks: window.callflowDesk only.
 */
(function () {
  "use strict";

  const desk = window.callflowDesk;
  const I18N = window.callflowI18n;
  const t = I18N.t;
  const $ = (id) => document.getElementById(id);
  const FORM_STATES = ["on_call", "on_hold", "acw"];
  const st = {form: null, viewed: "", loading: false, mine: []};

  // a label from the pack, or the code itself when the pack has none
  function named(prefix, code) {
    const key = prefix + code;
    const text = t(key);
    return text === key ? code : text;
  }

  function when(iso) {
    if (!iso) return t("desktop.tickets.no_due");
    const options = {dateStyle: "short", timeStyle: "short"};
    if (st.form && st.form.timezone) options.timeZone = st.form.timezone;
    try {
      return new Date(iso).toLocaleString(document.documentElement.lang || "en", options);
    } catch (e) {
      return new Date(iso).toLocaleString();
    }
  }

  async function request(method, path, body) {
    const init = {method, headers: {Authorization: "Bearer " + desk.token()}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let reply = null;
    try { reply = await res.json(); } catch (e) { reply = null; }
    return {status: res.status, reply};
  }

  function refusal(reply) {
    const d = reply && reply.detail;
    if (d && typeof d === "object") return (d.error || "") + (d.message ? ": " + d.message : "");
    return typeof d === "string" ? d : "?";
  }

  function fill(select, values, prefix) {
    select.textContent = "";
    for (const v of values) {
      const option = document.createElement("option");
      option.value = v;
      option.textContent = named(prefix, v);
      select.appendChild(option);
    }
  }

  async function loadForm() {
    if (st.form || st.loading || !desk.token()) return;
    st.loading = true;
    try {
      const got = await request("GET", "/api/v1/tickets/form");
      if (got.status !== 200) return;
      st.form = got.reply;
      fill($("ticket-type"), st.form.types, "desktop.tickets.type.");
      fill($("ticket-priority"), st.form.priorities, "desktop.tickets.priority.");
      $("ticket-priority").value = "normal";
      fill($("ticket-owner"), st.form.owner_kinds, "desktop.tickets.owner.");
      $("ticket-description").maxLength = st.form.text_max_chars;
      $("tickets-zone").textContent = t("desktop.tickets.zone", {zone: st.form.timezone});
      await loadMine();
    } finally {
      st.loading = false;
    }
  }

  function recordingLink(id) {
    // only the roles that may play recordings get the link; playing is the recordings
    // page's audited path (GET /api/v1/recordings/<id>/audio)
    const a = document.createElement("a");
    a.href = "/recordings#recording=" + encodeURIComponent(String(id));  // opens it there
    a.target = "_blank";
    a.className = "recording-link";
    a.textContent = t("desktop.tickets.recording", {id: String(id)});
    return a;
  }

  // --- my open tickets -------------------------------------------------------------
  async function loadMine() {
    const got = await request("GET", "/api/v1/tickets?limit=50");
    if (got.status !== 200) return;
    st.mine = got.reply.tickets.filter((x) => x.status !== "closed");
    renderMine();
  }

  function renderMine() {
    const list = $("tickets-mine");
    list.textContent = "";
    if (!st.mine.length) {
      const li = document.createElement("li");
      li.textContent = t("desktop.tickets.none");
      list.appendChild(li);
    }
    for (const ticket of st.mine) list.appendChild(ticketItem(ticket));
  }

  function ticketItem(ticket) {
    const li = document.createElement("li");
    li.className = "ticket";
    li.dataset.ticketId = String(ticket.id);
    const head = document.createElement("div");
    head.className = "ticket-head";
    head.textContent = ticket.number + " — " + named("desktop.tickets.type.", ticket.type) +
      " — " + named("desktop.tickets.status.", ticket.status) + " — " +
      t("desktop.tickets.due") + " " + when(ticket.next_due) +
      (ticket.overdue && ticket.overdue.length ? " — " + t("desktop.tickets.overdue") : "");
    li.appendChild(head);
    const text = document.createElement("div");
    text.className = "ticket-description";
    text.textContent = ticket.description;  // HTML in a description stays text
    li.appendChild(text);
    if (ticket.recording_id && st.form && st.form.may_play_recordings) {
      li.appendChild(recordingLink(ticket.recording_id));
    }
    const status = document.createElement("select");
    status.className = "ticket-status";
    const keep = document.createElement("option");
    keep.value = "";
    keep.textContent = named("desktop.tickets.status.", ticket.status);
    status.appendChild(keep);
    for (const s of st.form.statuses) {
      if (s === ticket.status || s === "closed" || s === "awaiting_confirmation") continue;
      const option = document.createElement("option");
      option.value = s;
      option.textContent = named("desktop.tickets.status.", s);
      status.appendChild(option);
    }
    status.setAttribute("aria-label", t("desktop.tickets.status"));
    const note = document.createElement("input");
    note.className = "ticket-note";
    note.maxLength = st.form.text_max_chars;
    note.placeholder = t("desktop.tickets.note");
    const save = document.createElement("button");
    save.type = "button";
    save.className = "ticket-save";
    save.textContent = t("desktop.tickets.save");
    const result = document.createElement("span");
    result.className = "ticket-result";
    result.setAttribute("role", "status");
    save.addEventListener("click", () => saveTicket(ticket, status, note, result, head));
    li.append(status, note, save, result);
    return li;
  }

  async function saveTicket(ticket, status, note, result, head) {
    const body = {version: ticket.version};
    if (status.value) body.status = status.value;
    if (note.value) body.note = note.value;
    const got = await request("PATCH", "/api/v1/tickets/" + ticket.id, body);
    if (got.status === 200) {
      Object.assign(ticket, got.reply.ticket);
      result.textContent = t("desktop.tickets.saved");
      note.value = "";
      head.textContent = ticket.number + " — " + named("desktop.tickets.type.", ticket.type) +
        " — " + named("desktop.tickets.status.", ticket.status) + " — " +
        t("desktop.tickets.due") + " " + when(ticket.next_due);
      return;
    }
    if (got.status === 409) {
      // someone else changed it: read the new version, keep what was typed
      const fresh = await request("GET", "/api/v1/tickets/" + ticket.id);
      if (fresh.status === 200) ticket.version = fresh.reply.ticket.version;
      result.textContent = t("desktop.tickets.conflict", {version: String(ticket.version)});
      result.dataset.conflict = "1";
      return;
    }
    result.textContent = t("desktop.tickets.refused") + refusal(got.reply);
  }

  // --- the form ------------------------------------------------------------------------
  $("ticket-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const callId = desk.callId();
    if (!callId || !st.form) return;
    const kind = $("ticket-owner").value;
    const body = {type: $("ticket-type").value, priority: $("ticket-priority").value,
                  description: $("ticket-description").value, call_id: callId,
                  owner_kind: kind};
    if (kind === "team" && st.form.team) body.owner_id = st.form.team;
    if (kind === "back_office") body.owner_id = "back_office";
    const button = $("btn-ticket-create");
    button.disabled = true;
    try {
      const got = await request("POST", "/api/v1/tickets", body);
      const out = $("ticket-created");
      if (got.status === 201) {
        const made = got.reply.ticket;
        out.textContent = t("desktop.tickets.created", {number: made.number,
                                                         due: when(made.next_due)});
        out.dataset.ticketId = String(made.id);
        $("ticket-description").value = "";
        await loadMine();
      } else {
        out.textContent = t("desktop.tickets.refused") + refusal(got.reply);  // typed text kept
      }
    } finally {
      button.disabled = false;
    }
  });
  $("btn-tickets-refresh").addEventListener("click", () => loadMine());

  // --- the repeat-caller view (STD-073) ---------------------------------------------------
  async function loadRepeat(callId) {
    const got = await request("GET", "/api/v1/tickets/caller/" + encodeURIComponent(callId));
    if (got.status !== 200 || desk.callId() !== callId) return;
    const view = got.reply;
    const tickets = $("repeat-tickets"), calls = $("repeat-calls");
    tickets.textContent = "";
    calls.textContent = "";
    for (const x of view.tickets) {
      const li = document.createElement("li");
      li.dataset.ticketId = String(x.id);
      li.textContent = x.number + " — " + named("desktop.tickets.type.", x.type) + " — " +
        named("desktop.tickets.status.", x.status) + " — " + t("desktop.tickets.due") + " " +
        when(x.due_at) + (x.overdue ? " — " + t("desktop.tickets.overdue") : "");
      if (x.recording_id) li.append(" ", recordingLink(x.recording_id));
      tickets.appendChild(li);
    }
    for (const c of view.calls) {
      const li = document.createElement("li");
      li.dataset.callId = c.call_id;
      li.textContent = t("desktop.repeat.call", {
        when: when(c.entered_at), agent: c.agent_id || "-",
        outcome: c.outcome ? named("outcome.", c.outcome) : "-",
        disposition: c.disposition || "-"});
      if (c.recording_id) li.append(" ", recordingLink(c.recording_id));
      calls.appendChild(li);
    }
    for (const [list, more] of [[tickets, view.more_tickets], [calls, view.more_calls]]) {
      if (more > 0) {
        const li = document.createElement("li");
        li.textContent = t("desktop.repeat.more", {count: String(more)});
        list.appendChild(li);
      }
    }
    if (!view.tickets.length && !view.calls.length) {
      const li = document.createElement("li");
      li.textContent = t("desktop.repeat.first");
      tickets.appendChild(li);
    }
    $("repeat-view").hidden = false;
  }

  function show() {
    const agent = desk.agent();
    const panel = $("tickets-panel");
    panel.hidden = !agent;
    if (!agent) return;
    const callId = desk.callId();
    const inCall = ["ringing", ...FORM_STATES].includes(agent.state) && !!callId;
    $("ticket-form").hidden = !(st.form && FORM_STATES.includes(agent.state) && callId);
    if (inCall && st.viewed !== callId) {
      st.viewed = callId;
      loadRepeat(callId);
    }
    if (!inCall && agent.state !== "acw") $("repeat-view").hidden = true;
  }

  desk.onRender(() => {
    show();
    if (!st.form && desk.agent()) loadForm().then(show);
  });
})();
