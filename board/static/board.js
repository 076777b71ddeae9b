/* callflow supervisor board: follows /ws/events (topics board, alarms), no polling.
 *
 * The session token stays in sessionStorage and goes in an Authorization header (REST)
 * or the websocket's first frame ({"type": "auth"}), never in a URL.
 *
 * The server sends a snapshot on connect, then events. This page keeps:
 *   agents (fixed roster, bounded), live calls (ended ones dropped), queue views,
 *   open alarms (bounded) — nothing that grows with time, so a board left open for days
 *   stays the same size. Rows are built once and their cells patched in place; a second
 *   timer only rewrites the "time in state" and "longest wait" texts that changed.
 */
(function () {
  "use strict";

  const MAX_ALARMS = 200;
  const MAX_AGENTS = 5000;
  const MAX_QUEUES = 200;
  const TOKEN_KEY = "callflow.board.token";
  const PHONE_KEY = "callflow.board.phone";
  const STATES = ["ready", "ringing", "on_call", "on_hold", "acw", "busy", "not_ready",
                  "logged_out"];
  // every label from the language pack of the page's language (api/language.py); alarm
  // titles are the pack's "alarm.<kind>", the kind itself when the pack has none
  const I18N = window.callflowI18n;
  const t = I18N.t;
  const known = (key, fallback) => (t(key) === key ? fallback : t(key));
  const $ = (id) => document.getElementById(id);
  // hooks for the slices' own scripts (e.g. supervise.js): agents, snapshots, alarms
  const hooks = {agent: [], snapshot: [], alarm: [], alarmGone: [], teamKpis: []};
  function tell(kind, ...args) {
    for (const fn of hooks[kind]) { try { fn(...args); } catch (e) { console.error(e); } }
  }
  window.callflowBoard = {
    api: (method, path, body) => api(method, path, body),
    who: () => st.who,
    phone: () => $("my-phone").value.trim(),
    toast: (text) => toast(text),
    on: (kind, fn) => hooks[kind].push(fn),
    // the per-team view (teams.js, STD-145): one team's agents, or "" for all
    team: () => st.team,
    setTeam: (name) => { st.team = name || ""; order(); },
    agents: () => [...st.agents.values()].map((a) => ({id: a.id, team: a.team, queues: a.queues,
      state: a.p ? a.p.state : "logged_out", calls: (a.k && a.k.calls) || 0})),
    waiting: () => new Map([...st.queues].map(([name, q]) => [name, q.waiting])),
  };

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    who: null,
    team: "",              // the per-team view's team ("" = every team)
    ws: null, seq: null, retry: 0, skew: 0,
    agents: new Map(),     // id -> {p: payload, k: kpi view, row, cells, name, queues}
    calls: new Map(),      // uniqueid -> record (live calls only)
    queues: new Map(),     // name -> {v: view, row, cells}
    alarms: new Map(),     // key -> {a, li}
    callbacks: {},
    reasons: {busy: [], not_ready: []},
    stateLabels: {},       // state -> {zh, en} (Policy, C-3)
    reasonLabels: {},      // reason code -> {zh, en}, system reasons included
    sort: {key: "id", asc: true},
    orderDirty: false,
    stats: {events: 0, lastRenderMs: 0, lastSnapshotMs: 0},
  };

  // --- formatting ---------------------------------------------------------------------
  function dur(s) {
    if (s == null || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(x).padStart(2, "0");
  }
  const pct = (r) => (r == null ? "–" : (r * 100).toFixed(1) + "%");
  const num = (v, d) => (v == null ? "–" : Number(v).toFixed(d == null ? 1 : d));
  const now = () => Date.now() / 1000 + st.skew;
  function timeOfDay(epoch) {
    try {
      return new Date(epoch * 1000).toLocaleTimeString(I18N.lang, {timeZone: st.zone || undefined,
                                                                    hour12: false});
    } catch (e) {
      return new Date(epoch * 1000).toLocaleTimeString(I18N.lang, {hour12: false});
    }
  }
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  function toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 3000);
  }

  // --- HTTP -----------------------------------------------------------------------------
  async function api(method, path, body) {
    const res = await fetch(path, {
      method, headers: Object.assign({"Content-Type": "application/json"},
        st.token ? {"Authorization": "Bearer " + st.token} : {}),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const d = data && data.detail;  // {"error": code, "message": words}
      const why = d && (d.message || d.error) || res.statusText;
      const err = new Error(why);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // --- views ----------------------------------------------------------------------------
  function show(view) {
    for (const id of ["login-view", "forbidden-view", "board-view"]) $(id).hidden = id !== view;
    $("logout").hidden = view === "login-view";
  }

  const stateLabel = (s) => I18N.label(st.stateLabels[s]) || s;
  const reasonLabel = (code) => I18N.label(st.reasonLabels[code]) || code;

  async function start() {
    I18N.apply(document);
    I18N.session = () => st.token;
    fillStateFilter();
    $("my-phone").value = localStorage.getItem(PHONE_KEY) || "";
    $("my-phone").addEventListener("change",
      () => localStorage.setItem(PHONE_KEY, $("my-phone").value.trim()));
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", logout);
    $("filter").addEventListener("input", scheduleOrder);
    $("state-filter").addEventListener("change", scheduleOrder);
    $("queue-filter").addEventListener("change", scheduleOrder);
    $("group").addEventListener("change", scheduleOrder);
    $("chart-queue").addEventListener("change", drawChart);
    $("agents-head").addEventListener("click", onSortClick);
    $("agents").addEventListener("change", onAction);
    $("agents").addEventListener("click", onOpenActions);
    $("alarms").addEventListener("click", onAck);
    setInterval(tick, 1000);
    if (!st.token) { show("login-view"); return; }
    await enter();
  }

  async function enter() {
    try {
      st.who = await api("GET", "/api/v1/board/whoami");
    } catch (e) {
      if (e.status === 403) {
        $("forbidden-text").textContent = t("board.forbidden.detail", {why: e.message});
        show("forbidden-view");
        return;
      }
      sessionStorage.removeItem(TOKEN_KEY);
      st.token = "";
      show("login-view");
      if (e.status !== 401) $("login-error").textContent = e.message;
      return;
    }
    $("who").textContent = st.who.name + " (" + known("role." + st.who.role, st.who.role) + ")";
    show("board-view");
    connect();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const f = ev.target;
    $("login-error").textContent = "";
    try {
      const r = await api("POST", "/api/v1/session",
        {username: f.username.value, password: f.password.value});
      st.token = r.token;
      sessionStorage.setItem(TOKEN_KEY, r.token);
      f.password.value = "";
      if (r.language_set && I18N.adopt(r.language)) return;  // reloads in the user's language
      await enter();
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? t("common.error.wrong_credentials")
                                                      : e.message;
    }
  }

  function logout() {
    if (st.token) {  // end the session on the server too; the page forgets it either way
      fetch("/api/v1/session", {method: "DELETE",
                                headers: {"Authorization": "Bearer " + st.token}}).catch(() => {});
    }
    sessionStorage.removeItem(TOKEN_KEY);
    st.token = "";
    if (st.ws) { st.ws.onclose = null; st.ws.close(); st.ws = null; }
    show("login-view");
  }

  // --- the event stream ---------------------------------------------------------------------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = proto + "//" + location.host + "/ws/events?topics=board,alarms";
    if (st.seq != null) url += "&since=" + st.seq;
    const ws = new WebSocket(url);
    st.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "auth", token: st.token}));
      st.retry = 0;
      link(true);
    };
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      onFrame(f);
    };
    ws.onclose = (ev) => {
      link(false);
      if (ev.code === 1008) {  // the session expired, was ended or was refused: log in again
        toast(t("board.stream_refused", {why: ev.reason}));
        if (ev.reason === "unauthorized" || ev.reason === "session ended") logout();
        return;
      }
      st.retry = Math.min(st.retry + 1, 5);
      setTimeout(connect, 500 * 2 ** st.retry);
    };
  }

  function link(up) {
    const el = $("link");
    el.textContent = up ? t("board.live") : t("common.offline");
    el.className = "link " + (up ? "up" : "down");
  }

  function onFrame(f) {
    if (f.type === "snapshot") {
      st.seq = f.seq;
      applySnapshot(f.state || {});
    } else if (f.type === "event") {
      st.seq = f.seq;
      applyEvent(f.topic, f.payload || {});
    } else if (f.type === "error") {
      toast(t("board.server_error", {error: f.error, detail: f.detail}));
    }
  }

  function applySnapshot(state) {
    const t0 = performance.now();
    tell("snapshot", state);
    const board = state.board || {};
    if (typeof board.now === "number") st.skew = board.now - Date.now() / 1000;
    $("day").textContent = board.day || "";
    st.zone = board.zone || "";
    $("clock-zone").textContent = st.zone ? t("board.clock.zone", {zone: st.zone}) : "";
    st.stateLabels = board.state_labels || {};
    st.reasonLabels = board.reason_labels || {};
    fillStateFilter();
    clock();
    $("ami").hidden = board.ami_up !== false;
    st.reasons.busy = board.busy_reasons || [];
    st.reasons.not_ready = board.not_ready_reasons || [];
    st.callbacks = board.callbacks || {};
    st.calls.clear();
    for (const c of state.calls || []) if (c.phase !== "ended") st.calls.set(c.uniqueid, c);
    buildAgents(board.roster || [], state.agents || [], board.agent_kpis || []);
    buildQueues(board.queues || []);
    st.alarms.clear();
    $("alarms").textContent = "";
    for (const a of board.alarms || []) addAlarm(a);
    paintCompliance(state.compliance || {});
    refreshQueueWaiting();
    drawChart();
    st.stats.lastSnapshotMs = performance.now() - t0;
  }

  function applyEvent(topic, p) {
    st.stats.events++;
    if (topic === "alarms") {
      if (p.type === "alarm_open") addAlarm(p.alarm);
      else if (p.type === "alarm_ack") removeAlarm(p.key);
      return;
    }
    switch (p.type) {
      case "agent_state": updateAgent(p); break;
      case "call": onCall(p.call); break;
      case "queue_kpis": for (const v of p.queues || []) updateQueue(v); drawChart(); break;
      case "agent_kpis":
        for (const v of p.agents || []) {
          const a = st.agents.get(v.agent_id);
          if (a) { a.k = v; paintKpis(a); }
        }
        if (["calls", "talk", "acw", "rona"].includes(st.sort.key)) scheduleOrder();
        break;
      case "callbacks": st.callbacks = p.pending || {}; for (const q of st.queues.values()) paintQueue(q); break;
      case "ami_link": $("ami").hidden = !!p.up; break;
      case "compliance": paintCompliance(p); break;
      case "team_kpis": tell("teamKpis", p.teams || []); break;  // teams.js, STD-145
      default: break;
    }
  }

  // --- compliance (board/compliance_view.py): one row per rule, today and the trend window ---

  function paintCompliance(view) {
    const box = $("compliance");
    for (const row of Array.from(box.querySelectorAll(".row:not(.head)"))) row.remove();
    const trend = new Map((view.trend || []).map((r) => [r.rule, r]));
    const pct = (v) => (v === null || v === undefined ? "–" : v.toFixed(1) + " %");
    for (const r of view.rules || []) {
      const t = trend.get(r.rule);
      const row = document.createElement("div");
      row.className = "row";
      row.dataset.rule = r.rule;
      if (t && t.pct !== null && t.pct < t.target_pct) row.classList.add("low");
      for (const text of [r.rule, String(r.passed), String(r.failed), pct(r.pct),
                          t ? pct(t.pct) : "–", t ? pct(t.target_pct) : "–"]) {
        const cell = document.createElement("span");
        cell.textContent = text;
        row.appendChild(cell);
      }
      box.appendChild(row);
    }
  }

  // --- agents -------------------------------------------------------------------------------
  const AGENT_CELLS = 9;

  function agentRowHtml() {
    let cells = "";
    for (let i = 0; i < AGENT_CELLS; i++) cells += i >= 4 && i <= 7 ? '<span class="num"></span>' : "<span></span>";
    return cells;
  }

  function newAgent(id, name, queues) {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.agent = id;
    row.innerHTML = agentRowHtml();
    return adopt(row, id, name, queues);
  }

  function adopt(row, id, name, queues) {
    const a = {id, name, queues, p: null, k: null, row, cells: row.children, since: null,
               sinceText: "", callQueue: null, actionsKey: null};
    a.cells[0].textContent = id + (name ? " " + name : "");
    a.cells[8].className = "actions";
    st.agents.set(id, a);
    return a;
  }

  // A snapshot patches the rows it already has (a reconnect or an overflow snapshot costs
  // no rebuild, and rows keep their place); only new agents get new rows.
  function buildAgents(roster, payloads, kpis) {
    const t0 = performance.now();
    const box = $("agents");
    const byId = new Map();
    for (const r of roster) byId.set(r.agent_id, {name: r.name, queues: r.queues || [], team: r.team || ""});
    for (const p of payloads) if (!byId.has(p.agent_id)) byId.set(p.agent_id, {name: "", queues: []});
    const ids = [...byId.keys()].slice(0, MAX_AGENTS);
    const keep = new Set(ids);
    for (const [id, a] of st.agents) if (!keep.has(id)) { a.row.remove(); st.agents.delete(id); }
    const fresh = [];
    for (const id of ids) {
      const info = byId.get(id);
      const a = st.agents.get(id);
      if (!a) fresh.push(id);
      else if (info.name || info.queues.length) { a.name = info.name; a.queues = info.queues; }
      if (a) a.team = info.team || "";
    }
    if (fresh.length) {  // one parse for all new rows
      const tmp = document.createElement("div");
      const cells = agentRowHtml();
      tmp.innerHTML = fresh.map((id) => '<div class="row" data-agent="' + esc(id) + '">' +
                                        cells + "</div>").join("");
      const rows = [...tmp.children];
      const frag = document.createDocumentFragment();
      rows.forEach((row, i) => {
        const info = byId.get(fresh[i]);
        const a = adopt(row, fresh[i], info.name, info.queues);
        a.team = info.team || "";
        frag.appendChild(a.row);
      });
      box.appendChild(frag);
    }
    for (const p of payloads) { const a = st.agents.get(p.agent_id); if (a) paintState(a, p); }
    for (const k of kpis) { const a = st.agents.get(k.agent_id); if (a) { a.k = k; paintKpis(a); } }
    fillQueueFilter();
    order();
    $("agent-count").textContent = String(st.agents.size);
    st.stats.lastRenderMs = performance.now() - t0;
  }

  function updateAgent(p) {
    let a = st.agents.get(p.agent_id);
    if (!a) {
      if (st.agents.size >= MAX_AGENTS) return;
      a = newAgent(p.agent_id, "", []);
      $("agents").appendChild(a.row);
      $("agent-count").textContent = String(st.agents.size);
    }
    const before = a.p ? a.p.state : null;
    paintState(a, p);
    if (before !== p.state && (st.sort.key === "state" || st.sort.key === "since" ||
        $("group").value === "state" || $("state-filter").value || $("filter").value)) {
      scheduleOrder();
    }
  }

  function paintState(a, p) {
    a.p = p;
    tell("agent", p);
    const c = a.cells;
    const label = stateLabel(p.state) + (p.reason ? " · " + reasonLabel(p.reason) : "") +
      (p.softphone_reachable === false ? " · " + t("board.phone_unreachable") : "") +
      (p.approval_pending ? " · " + t("board.awaiting_approval") : "");
    c[1].textContent = label;
    c[1].className = "state s-" + p.state;
    a.since = typeof p.since_epoch === "number" && p.since > 0 ? p.since_epoch : null;
    a.sinceText = "";
    paintSince(a, now());
    paintCall(a);
    paintActions(a);
  }

  function paintSince(a, t) {
    const text = a.since == null ? "–" : dur(t - a.since);
    if (text !== a.sinceText) { a.sinceText = text; a.cells[2].textContent = text; }
  }

  function paintCall(a) {
    const id = a.p && a.p.call_id;
    let text = "";
    if (id) {
      const call = st.calls.get(id);
      text = call ? (call.caller_number || "?") + " · " + call.queue : id;
    }
    if (a.cells[3].textContent !== text) a.cells[3].textContent = text;
    a.callQueue = id && st.calls.get(id) ? st.calls.get(id).queue : null;
  }

  function paintKpis(a) {
    const k = a.k || {};
    const c = a.cells;
    c[4].textContent = k.calls == null ? "0" : String(k.calls);
    c[5].textContent = dur(k.avg_talk_s);
    c[6].textContent = dur(k.avg_acw_s);
    c[7].textContent = String(k.rona || 0);
  }

  // The action menu is built when opened: 2,000 rows of ready-made <select>s would be tens
  // of thousands of nodes for a menu used a few times an hour.
  function actionOptions(a) {
    const s = a.p ? a.p.state : "logged_out";
    let o = "";
    if (st.who.may_act && s !== "logged_out" && !["ringing", "on_call", "on_hold"].includes(s)) {
      if (s !== "ready") o += option("state:ready:", stateLabel("ready"));
      for (const r of st.reasons.busy) {
        o += option("state:busy:" + r.code, stateLabel("busy") + " · " + I18N.label(r));
      }
      for (const r of st.reasons.not_ready) {
        o += option("state:not_ready:" + r.code, stateLabel("not_ready") + " · " + I18N.label(r));
      }
      o += option("logout", t("common.logout"));
    }
    if (s === "on_call" || s === "on_hold") {
      o += option("monitor:listen", t("board.monitor.listen"));
      if (st.who.may_act) {
        o += option("monitor:whisper", t("board.monitor.whisper")) +
          option("monitor:barge", t("board.monitor.barge"));
      }
    }
    return o;
  }

  function option(value, text) {
    return '<option value="' + esc(value) + '">' + esc(text) + "</option>";
  }

  function paintActions(a) {
    const s = a.p ? a.p.state : "logged_out";
    const may = !!st.who && (st.who.may_act ? s !== "logged_out" && s !== "ringing"
                                            : st.who.role === "qa" && (s === "on_call" || s === "on_hold"));
    const key = s + "|" + may;
    if (a.actionsKey === key) return;
    a.actionsKey = key;
    a.cells[8].innerHTML = may ? '<button type="button" class="act">' +
      esc(t("board.actions.open")) + "</button>" : "";
  }

  function onOpenActions(ev) {
    const btn = ev.target;
    if (btn.tagName !== "BUTTON" || !btn.classList.contains("act")) return;
    const a = st.agents.get(btn.closest(".row").dataset.agent);
    if (!a) return;
    const cell = a.cells[8];
    cell.innerHTML = '<select aria-label="' + esc(t("board.actions.label", {agent: a.id})) +
      '">' + option("", t("board.actions.choose")) + actionOptions(a) + "</select>";
    const sel = cell.firstChild;
    sel.addEventListener("blur", () => { a.actionsKey = null; paintActions(a); });
    sel.focus();
  }

  async function onAction(ev) {
    const sel = ev.target;
    if (sel.tagName !== "SELECT" || !sel.closest(".actions")) return;
    const id = sel.closest(".row").dataset.agent;
    const [kind, a, b] = sel.value.split(":");
    sel.blur();
    if (!kind) return;
    const base = "/api/v1/board/agents/" + encodeURIComponent(id);
    try {
      if (kind === "state") {
        await api("POST", base + "/state", {state: a, reason: b || ""});
        toast(id + ": " + stateLabel(a) + (b ? " (" + reasonLabel(b) + ")" : ""));
      } else if (kind === "logout") {
        await api("POST", base + "/logout");
        toast(t("board.toast.logged_out", {agent: id}));
      } else if (kind === "monitor") {
        const phone = $("my-phone").value.trim();
        if (!phone) { toast(t("board.toast.no_phone")); return; }
        await api("POST", base + "/monitor", {mode: a, phone});
        toast(t("board.toast.monitor", {mode: t("board.monitor." + a), agent: id}));
      }
    } catch (e) {
      toast(id + ": " + e.message);
    }
  }

  // --- ordering, filtering, grouping ------------------------------------------------------------
  function scheduleOrder() {
    if (st.orderDirty) return;
    st.orderDirty = true;
    setTimeout(() => { st.orderDirty = false; order(); }, 150);
  }

  function onSortClick(ev) {
    const key = ev.target.dataset && ev.target.dataset.sort;
    if (!key) return;
    st.sort = {key, asc: st.sort.key === key ? !st.sort.asc : true};
    for (const s of $("agents-head").children) {
      s.classList.toggle("sorted", s.dataset.sort === key);
      s.classList.toggle("asc", s.dataset.sort === key && st.sort.asc);
    }
    order();
  }

  function agentQueue(a) { return a.callQueue || (a.k && a.k.last_queue) || a.queues[0] || "—"; }

  function sortValue(a, key) {
    const k = a.k || {};
    switch (key) {
      case "state": return a.p ? a.p.state : "~";
      case "since": return a.since == null ? Infinity : a.since;
      case "call": return a.cells[3].textContent;
      case "calls": return k.calls || 0;
      case "talk": return k.avg_talk_s || 0;
      case "acw": return k.avg_acw_s || 0;
      case "rona": return k.rona || 0;
      default: return a.id;
    }
  }

  function order() {
    const text = $("filter").value.trim().toLowerCase();
    const state = $("state-filter").value;
    const queue = $("queue-filter").value;
    const group = $("group").value;
    const key = st.sort.key, dir = st.sort.asc ? 1 : -1;
    const shown = [];
    for (const a of st.agents.values()) {
      const s = a.p ? a.p.state : "logged_out";
      let ok = (!state || s === state) && (!queue || a.queues.includes(queue) || agentQueue(a) === queue) &&
        (!st.team || a.team === st.team);
      if (ok && text) {
        const reason = a.p && a.p.reason || "";
        const hay = (a.id + " " + a.name + " " + s + " " + stateLabel(s) + " " + reason + " " +
                     (reason ? reasonLabel(reason) : "") + " " + a.queues.join(" ")).toLowerCase();
        ok = hay.includes(text);
      }
      a.row.hidden = !ok;
      if (ok) shown.push(a);
    }
    shown.sort((x, y) => {
      if (group) {
        const gx = group === "queue" ? agentQueue(x) : (x.p ? x.p.state : "logged_out");
        const gy = group === "queue" ? agentQueue(y) : (y.p ? y.p.state : "logged_out");
        if (gx !== gy) return gx < gy ? -1 : 1;
      }
      const vx = sortValue(x, key), vy = sortValue(y, key);
      if (vx === vy) return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
      return (vx < vy ? -1 : 1) * dir;
    });
    const box = $("agents");
    for (const g of box.querySelectorAll(".group")) g.remove();
    const frag = document.createDocumentFragment();
    let last = null;
    for (const a of shown) {
      if (group) {
        const g = group === "queue" ? agentQueue(a) : (a.p ? a.p.state : "logged_out");
        if (g !== last) {
          const h = document.createElement("div");
          h.className = "group";
          h.textContent = t("board.grouped." + group) + ": " + (group === "state" ? stateLabel(g) : g);
          frag.appendChild(h);
          last = g;
        }
      }
      frag.appendChild(a.row);
    }
    box.appendChild(frag);
  }

  function fillQueueFilter() {
    const names = new Set(st.queues.keys());
    for (const a of st.agents.values()) for (const q of a.queues) names.add(q);
    const sel = $("queue-filter");
    const keep = sel.value;
    sel.innerHTML = option("", t("board.filter.all_queues")) +
      [...names].sort().map((q) => "<option>" + esc(q) + "</option>").join("");
    sel.value = keep;
  }

  // --- calls and queues ---------------------------------------------------------------------
  function onCall(c) {
    if (!c || !c.uniqueid) return;
    if (c.phase === "ended") st.calls.delete(c.uniqueid);
    else st.calls.set(c.uniqueid, c);
    if (c.queue && !st.queues.has(c.queue) && st.queues.size < MAX_QUEUES) {
      updateQueue({queue: c.queue, kpi: {}, series: [], targets: {}});
    }
    for (const id of [c.agent_id, ...(c.offers || []).map((o) => o.agent_id)]) {
      const a = id && st.agents.get(id);
      if (a) paintCall(a);
    }
    refreshQueueWaiting();
  }

  function buildQueues(views) {
    const box = $("queues");
    for (const q of st.queues.values()) q.row.remove();
    st.queues.clear();
    for (const v of views.slice(0, MAX_QUEUES)) updateQueue(v);
    const sel = $("chart-queue");
    const keep = sel.value;
    sel.innerHTML = [...st.queues.keys()].map((q) => "<option>" + esc(q) + "</option>").join("");
    if (keep && st.queues.has(keep)) sel.value = keep;
    box.hidden = false;
  }

  function updateQueue(v) {
    let q = st.queues.get(v.queue);
    if (!q) {
      if (st.queues.size >= MAX_QUEUES) return;
      const row = document.createElement("div");
      row.className = "row";
      row.dataset.queue = v.queue;
      row.innerHTML = "<span></span>".repeat(10);
      row.children[0].textContent = v.queue;
      row.children[1].id = "waiting-" + v.queue;
      q = {v, row, cells: row.children, waiting: 0, oldest: null, longestText: ""};
      st.queues.set(v.queue, q);
      $("queues").appendChild(row);
      const sel = $("chart-queue");
      if (![...sel.options].some((o) => o.value === v.queue)) {
        const o = document.createElement("option");
        o.textContent = v.queue;
        sel.appendChild(o);
      }
    }
    q.v = v;
    paintQueue(q);
  }

  function paintQueue(q) {
    const k = q.v.kpi || {}, t = q.v.targets || {};
    const c = q.cells;
    c[3].textContent = k.answered == null ? "0" : String(k.answered);
    c[4].textContent = k.abandoned == null ? "0" : String(k.abandoned);
    c[5].textContent = pct(k.service_level);
    c[5].className = k.service_level == null ? "" :
      (k.service_level * 100 < (t.service_level_pct || 0) ? "over" : "under");
    c[6].textContent = k.asa_s == null ? "–" : dur(k.asa_s);
    c[7].textContent = num(k.average_answer_ring, 2);
    c[7].className = k.average_answer_ring != null && t.average_ring != null &&
      k.average_answer_ring > t.average_ring ? "over" : "";
    c[8].textContent = pct(k.abandon_rate);
    c[9].textContent = String(st.callbacks[q.v.queue] || 0);
  }

  function refreshQueueWaiting() {
    const counts = new Map(), oldest = new Map();
    for (const c of st.calls.values()) {
      if (c.phase !== "routing" && c.phase !== "offering") continue;
      counts.set(c.queue, (counts.get(c.queue) || 0) + 1);
      const t = Date.parse(c.entered_at) / 1000;
      if (!oldest.has(c.queue) || t < oldest.get(c.queue)) oldest.set(c.queue, t);
    }
    const t = now();
    for (const [name, q] of st.queues) {
      q.waiting = counts.get(name) || 0;
      q.oldest = oldest.has(name) ? oldest.get(name) : null;
      q.cells[1].textContent = String(q.waiting);
      q.cells[1].className = q.waiting ? "over" : "";
      paintLongest(q, t);
    }
  }

  function paintLongest(q, t) {
    const text = q.oldest == null ? "–" : dur(t - q.oldest);
    if (text !== q.longestText) { q.longestText = text; q.cells[2].textContent = text; }
  }

  // --- alarms -------------------------------------------------------------------------------
  function alarmDetail(a) {
    const d = a.detail || {};
    const parts = [];
    for (const k of ["agent_id", "queue", "call_id", "caller", "duration_s", "count", "seconds",
                     "waited_s",
                     "service_level_pct", "target_pct", "average_ring", "reason", "number",
                     "to", "day", "overdue", "due_today", "unassigned"]) {
      if (d[k] != null && d[k] !== "") {
        const value = k === "reason" ? reasonLabel(d[k]) : d[k];
        parts.push(known("alarm.detail." + k, k) + " " + value);
      }
    }
    return parts.join(" · ");
  }

  function addAlarm(a) {
    if (!a || !a.key || st.alarms.has(a.key)) return;
    const li = document.createElement("li");
    li.dataset.key = a.key;
    li.dataset.kind = a.kind;
    const when = timeOfDay(a.raised_at);
    li.innerHTML = '<span class="what"></span><span class="detail"></span>' +
      (st.who && st.who.may_act ? '<button type="button">' + esc(t("board.alarm.ack")) +
       "</button>" : "");
    li.children[0].textContent = known("alarm." + a.kind, a.kind) +
      (a.std ? " (" + a.std + ")" : "") + " · " + when;
    li.children[1].textContent = alarmDetail(a);
    tell("alarm", a, li);
    $("alarms").prepend(li);
    st.alarms.set(a.key, {a, li});
    while (st.alarms.size > MAX_ALARMS) {
      const oldest = st.alarms.keys().next().value;
      removeAlarm(oldest);
    }
    $("alarm-count").textContent = String(st.alarms.size);
  }

  function removeAlarm(key) {
    const e = st.alarms.get(key);
    if (!e) return;
    e.li.remove();
    st.alarms.delete(key);
    tell("alarmGone", key);
    $("alarm-count").textContent = String(st.alarms.size);
  }

  async function onAck(ev) {
    if (ev.target.tagName !== "BUTTON" || ev.target.dataset.mode) return;  // mode: supervise.js
    const li = ev.target.closest("li");
    ev.target.disabled = true;
    try {
      await api("POST", "/api/v1/alarms/ack", {key: li.dataset.key});
      removeAlarm(li.dataset.key);
    } catch (e) {
      ev.target.disabled = false;
      toast(t("board.alarm.ack_failed", {why: e.message}));
    }
  }

  // --- the chart ----------------------------------------------------------------------------
  function drawChart() {
    const svg = $("chart");
    const name = $("chart-queue").value || [...st.queues.keys()][0];
    const q = name && st.queues.get(name);
    const series = (q && q.v.series) || [];
    const W = 720, H = 180, L = 30, R = 30, T = 8, B = 18;
    const perDay = Math.round(24 * 60 / ((q && q.v.targets && q.v.targets.interval_min) || 15));
    const slots = Math.max(perDay, series.length, 1);
    const x = (i) => L + (W - L - R) * i / slots;
    const y = (p) => T + (H - T - B) * (1 - p / 100);
    const maxWait = Math.max(1, ...series.map((p) => p.waiting || 0));
    const yw = (n) => T + (H - T - B) * (1 - n / maxWait);
    let out = '<line class="axis" x1="' + L + '" y1="' + y(0) + '" x2="' + (W - R) + '" y2="' + y(0) + '"/>';
    for (const p of [0, 50, 100]) out += '<text x="2" y="' + (y(p) + 3) + '">' + p + "%</text>";
    out += '<text x="' + (W - R + 4) + '" y="' + (T + 8) + '">' + maxWait + "</text>";
    for (let h = 0; h <= 24; h += 6) {
      out += '<text x="' + (x(h * slots / 24) - 6) + '" y="' + (H - 4) + '">' + String(h).padStart(2, "0") + ":00</text>";
    }
    const bw = Math.max(1, (W - L - R) / slots - 1);
    let line = "", dots = "";
    series.forEach((p, i) => {
      if (p.waiting) out += '<rect class="wait" x="' + x(i).toFixed(1) + '" y="' + yw(p.waiting).toFixed(1) + '" width="' + bw.toFixed(1) + '" height="' + (y(0) - yw(p.waiting)).toFixed(1) + '"/>';
      if (p.sl != null) {
        const cx = (x(i) + bw / 2).toFixed(1), cy = y(p.sl * 100).toFixed(1);
        line += (line ? " L" : "M") + cx + " " + cy;
        dots += '<circle class="sl-dot" cx="' + cx + '" cy="' + cy + '" r="2.5"/>';
      }
    });
    const target = q && q.v.targets && q.v.targets.service_level_pct;
    if (target != null) out += '<line class="target" x1="' + L + '" y1="' + y(target) + '" x2="' + (W - R) + '" y2="' + y(target) + '"/>';
    if (line) out += '<path class="sl" d="' + line + '"/>' + dots;
    svg.innerHTML = out;
  }

  // --- the clock ----------------------------------------------------------------------------
  function tick() {
    const at = now();
    for (const a of st.agents.values()) if (!a.row.hidden) paintSince(a, at);
    for (const q of st.queues.values()) paintLongest(q, at);
    if (st.sort.key === "since") scheduleOrder();
    clock();
  }

  // the server's time (skew from the snapshot) in the centre's zone, which is shown beside it
  function clock() {
    if (st.zone) $("clock-time").textContent = timeOfDay(now());
  }

  // the state filter offers the Policy's state labels in the page's language
  function fillStateFilter() {
    const sel = $("state-filter");
    const keep = sel.value;
    sel.innerHTML = option("", t("board.filter.all_states")) +
      STATES.map((s) => option(s, stateLabel(s))).join("");
    sel.value = keep;
  }

  function reset() {
    for (const a of st.agents.values()) a.row.remove();
    st.agents.clear();
    for (const q of st.queues.values()) q.row.remove();
    st.queues.clear();
    for (const e of st.alarms.values()) e.li.remove();
    st.alarms.clear();
    st.calls.clear();
  }

  window.board = {
    applySnapshot, applyEvent, reset,
    stats: () => ({agents: st.agents.size, calls: st.calls.size, alarms: st.alarms.size,
                   queues: st.queues.size, events: st.stats.events,
                   lastRenderMs: st.stats.lastRenderMs, lastSnapshotMs: st.stats.lastSnapshotMs,
                   nodes: document.getElementsByTagName("*").length, seq: st.seq}),
  };
  document.addEventListener("DOMContentLoaded", start);
})();
