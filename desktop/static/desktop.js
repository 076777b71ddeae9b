/* callflow agent desktop: protocol v1 on /ws/desktop (docs/agent-protocol.md), no polling.
 *
 * Log in: work number + password (POST /api/v1/session), then the websocket (the token
 * goes in its first frame, {"type": "auth"}, never in the URL), then a "login" request
 * with the extension the agent sits at. The server pushes the agent's
 * own state, the current call (caller, earlier contacts, which greeting to say) and
 * reminders; the page sends state requests and shows the server's refusal reasons.
 * Timers tick here on the server's clock (hello.server_time) from since_epoch and
 * acw_deadline_epoch. On a dropped connection it resumes with since=<last seq>.
 *
 * Call actions (while on_call or on_hold): REST calls on the current call,
 * POST /api/v1/calls/<call id>/{hold,retrieve,callback,closing,special,nuisance} with the
 * same session token (Authorization: Bearer); a refusal's reason goes to #error.
 */
(function () {
  "use strict";

  const TOKEN_KEY = "callflow.desktop.token";
  const EXT_KEY = "callflow.desktop.extension";
  const WANT_KEY = "callflow.desktop.login";  // log in at the extension after a reload
  const MAX_REMINDERS = 50;
  const IN_CALL = ["ringing", "on_call", "on_hold"];
  const ACTIVE_CALL = ["on_call", "on_hold"];  // states in which the call actions show
  // every label from the language pack of the page's language (api/language.py)
  const I18N = window.callflowI18n;
  const t = I18N.t;
  const scriptLabel = (code) => t("desktop.script." + code) === "desktop.script." + code ?
    code : t("desktop.script." + code);
  const $ = (id) => document.getElementById(id);
  I18N.apply(document);
  I18N.session = () => st.token;

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    extension: sessionStorage.getItem(EXT_KEY) || "",
    wantLogin: false,
    hello: null, agent: null, call: null,
    ws: null, seq: null, retry: 0, skew: 0, nextId: 0, closing: false,
    inFlight: new Set(),  // ids of call-action buttons whose request is under way
    actionCall: "",  // the call the last action result is about
  };

  // --- formatting -------------------------------------------------------------------
  const now = () => Date.now() / 1000 + st.skew;
  function dur(s) {
    if (s == null || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(x).padStart(2, "0");
  }
  // the server sends both labels (Policy, C-3); the page shows the one of its language
  function stateLabel(state) {
    const labels = st.hello && st.hello.labels[state];
    return labels ? I18N.label(labels) || state : state;
  }
  function reasonLabel(state, code) {
    if (!code) return "";
    const list = st.hello ? st.hello.reasons[state === "busy" ? "busy" : "not_ready"] || [] : [];
    const found = list.find((r) => r.code === code);
    if (found) return I18N.label(found);
    const key = "reason." + code;
    return t(key) === key ? code : t(key);
  }
  function toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
  }

  // --- log-in ---------------------------------------------------------------------------
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    $("login-error").textContent = "";
    let reply;
    try {
      const res = await fetch("/api/v1/session", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({username: form.username.value.trim(),
                              password: form.password.value}),
      });
      reply = await res.json().catch(() => ({}));
      if (!res.ok) {
        throw new Error(res.status === 401 ? t("common.error.wrong_credentials") :
                        reply.detail && reply.detail.message || res.statusText);
      }
    } catch (err) {
      $("login-error").textContent = err.message;
      return;
    }
    if (reply.role !== "agent" || !reply.agent_id) {
      $("login-error").textContent = t("desktop.error.not_agent");
      return;
    }
    st.token = reply.token;
    st.extension = form.extension.value.trim();
    sessionStorage.setItem(TOKEN_KEY, st.token);
    sessionStorage.setItem(EXT_KEY, st.extension);
    form.password.value = "";
    // the user's own language: the page reloads in it and logs in at the extension then
    if (reply.language_set) {
      sessionStorage.setItem(WANT_KEY, "1");
      if (I18N.adopt(reply.language)) return;
      sessionStorage.removeItem(WANT_KEY);
    }
    st.wantLogin = true;
    st.seq = null;
    connect();
  });

  function showLogin(message) {
    st.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    st.agent = st.call = st.hello = null;
    st.seq = null;
    $("desk-view").hidden = true;
    $("btn-logout").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
  }

  // --- the websocket ----------------------------------------------------------------------
  function connect() {
    if (st.ws) { st.closing = true; st.ws.close(); }
    st.closing = false;
    const q = new URLSearchParams();
    if (st.seq != null) q.set("since", String(st.seq));
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/desktop?" + q.toString());
    st.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "auth", token: st.token}));
      st.retry = 0;
      link(true);
    };
    ws.onmessage = (m) => {
      let frame;
      try { frame = JSON.parse(m.data); } catch (e) { return; }
      handle(frame);
    };
    ws.onclose = (ev) => {
      if (st.ws !== ws) return;
      st.ws = null;
      link(false);
      if (ev.code === 1008) {
        showLogin(ev.reason === "unauthorized" || ev.reason === "session ended" ?
                  t("common.error.session_ended") : ev.reason);
        return;
      }
      if (st.closing || !st.token) return;
      st.retry = Math.min(st.retry + 1, 6);
      setTimeout(() => { if (!st.ws && st.token) connect(); }, 250 * 2 ** (st.retry - 1));
    };
  }
  function link(up) {
    const el = $("link");
    el.textContent = up ? t("common.online") : t("common.offline");
    el.className = "pill " + (up ? "up" : "down");
  }
  function send(frame) {
    if (!st.ws || st.ws.readyState !== WebSocket.OPEN) {
      showError(t("desktop.error.not_connected"));
      return;
    }
    st.nextId += 1;
    st.ws.send(JSON.stringify(Object.assign({id: st.nextId}, frame)));
  }

  // The one hook API for the panels in their own files (scripts.js, transfer.js,
  // identity.js, supervise.js, warm.js...). A panel registers what it follows; desktop.js
  // calls it. One mechanism, so a reader finds every listener by grepping callflowDesk.
  const hooks = {frame: [], payload: [], render: []};
  function call(kind, arg) {
    for (const fn of hooks[kind]) { try { fn(arg); } catch (e) { console.error(e); } }
  }
  window.callflowDesk = {
    send: (frame) => send(frame),
    /** every server frame, before the desktop handles it */
    onFrame: (fn) => hooks.frame.push(fn),
    /** every domain message: hello, each agent of a snapshot, each event's payload */
    onPayload: (fn) => hooks.payload.push(fn),
    /** after each render: {agent, call, hello} */
    onRender: (fn) => hooks.render.push(fn),
    agent: () => st.agent,
    hello: () => st.hello,
    token: () => st.token,
    callId: () => currentCallId(),
  };
  function tell(p) { call("payload", p); }

  function handle(f) {
    call("frame", f);
    if (f.type === "hello") tell(f);
    if (f.type === "snapshot" && f.state && f.state.agents) {
      for (const a of f.state.agents) tell(Object.assign({type: "agent_state"}, a));
    }
    if (f.type === "event" && f.payload) tell(f.payload);
    switch (f.type) {
      case "hello": return onHello(f);
      case "snapshot": return onSnapshot(f);
      case "event":
        st.seq = f.seq;
        return onPayload(f.payload);
      case "ack":
        showError("");
        return undefined;
      case "error":
        return showError(refusal(f.error, f.detail));
      default:
        return undefined;
    }
  }

  function onHello(h) {
    st.hello = h;
    st.skew = h.server_time - Date.now() / 1000;
    $("who").textContent = h.agent_name + " (" + h.agent_id + ")";
    fillReasons("busy-reason", h.reasons.busy);
    fillReasons("not-ready-reason", h.reasons.not_ready);
    $("login-view").hidden = true;
    $("desk-view").hidden = false;
    $("btn-logout").hidden = false;
  }
  function fillReasons(id, reasons) {
    const select = $(id);
    const keep = select.value;
    select.textContent = "";
    for (const r of reasons) {
      const o = document.createElement("option");
      o.value = r.code;
      o.textContent = I18N.label(r);
      select.appendChild(o);
    }
    if (keep) select.value = keep;
  }

  function onSnapshot(s) {
    st.seq = s.seq;
    st.agent = s.state.agents[0] || null;
    const desk = st.agent && s.state.desks ? s.state.desks[st.agent.agent_id] : null;
    st.call = desk ? desk.call : null;
    if (st.wantLogin && st.agent && st.agent.state === "logged_out") {
      send({type: "login", extension: st.extension});
    }
    st.wantLogin = false;
    render();
  }

  function onPayload(p) {
    switch (p.type) {
      case "agent_state":
        st.agent = p;
        if (!IN_CALL.includes(p.state) && p.state !== "acw") st.call = null;
        return render();
      case "call":
        if (st.agent && (p.call.uniqueid === st.agent.call_id || st.agent.state === "ringing")) {
          st.call = p.call;
        }
        return render();
      case "hold_reminder":
        return remind(t("desktop.remind.hold_reminder", {held: dur(p.held_s)}), false);
      case "hold_limit":
        return remind(t("desktop.remind.hold_limit", {limit: dur(p.limit_s)}), true);
      case "hold_max_wait":
        return remind(t(p.offered ? "desktop.remind.hold_max_wait_offered"
                                  : "desktop.remind.hold_max_wait"), true);
      case "hold_choice":
        return remind(t(p.choice === "callback" ? "desktop.remind.choice_callback"
                        : p.choice === "keep_waiting" ? "desktop.remind.choice_keep_waiting"
                        : "desktop.remind.choice_none"), p.choice !== "callback");
      case "hold_choice_failed":
        return remind(t("desktop.remind.choice_failed"), true);
      case "alert":
        return remind(t("desktop.remind.alert", {reason: reasonLabel(p.state, p.reason)}), true);
      case "task":
        return remind(t("desktop.remind.task", {number: p.task.number || ""}), false);
      case "hold_retrieve":
        return remind(t("desktop.remind.hold_retrieve"), true);
      case "special_started":
        return remind(t("desktop.remind.special_started", {script: scriptLabel(p.procedure)}),
                      false);
      case "special_cancelled":
        return remind(t("desktop.remind.special_cancelled"), false);
      case "nuisance_warning":
        return remind(t("desktop.remind.nuisance_warning", {warning: p.warning, of: p.of}), false);
      case "closing":
        return remind(t("desktop.remind.closing"), false);
      case "release_violation":
        return remind(t("desktop.remind.release_violation"), true);
      default:
        return undefined;
    }
  }

  function remind(text, urgent) {
    const list = $("reminders");
    const li = document.createElement("li");
    li.textContent = new Date(now() * 1000).toLocaleTimeString() + " " + text;
    if (urgent) li.className = "limit";
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_REMINDERS) list.removeChild(list.lastChild);
    toast(text);
  }
  function showError(text) { $("error").textContent = text; }
  // a refusal: its stable code first, then its words in the page's language when the pack
  // has them (else the server's detail)
  function refusal(code, detail) {
    const key = "error." + code;
    const words = t(key);
    return code + ": " + (words === key ? detail || "" : words);
  }

  // --- rendering ----------------------------------------------------------------------------
  function render() {
    const a = st.agent;
    if (!a) return;
    const state = $("state");
    state.textContent = stateLabel(a.state);
    state.className = "state " + a.state;
    state.dataset.state = a.state;
    $("reason").textContent = reasonLabel(a.state, a.reason);
    const phone = $("softphone");
    phone.textContent = t(a.softphone_reachable ? "desktop.softphone.ok"
                                                : "desktop.softphone.offline");
    phone.className = "pill " + (a.softphone_reachable ? "reachable" : "unreachable");
    const inCall = IN_CALL.includes(a.state);
    $("btn-ready").textContent = a.state === "logged_out" ?
      t("desktop.btn.login_at", {extension: st.extension}) : t("desktop.btn.ready");
    $("btn-ready").disabled = inCall || a.state === "ready";
    const away = ["ready", "busy", "not_ready", "acw"].includes(a.state);
    $("btn-busy").disabled = !away;
    $("btn-not-ready").disabled = !away;
    $("btn-end-acw").disabled = a.state !== "acw";
    $("btn-logout").disabled = inCall;
    renderWrapup();
    renderCall();
    renderCallActions();
    call("render", {agent: a, call: st.call, hello: st.hello});
    tick();
  }

  // STD-092: the form of the last call is owed; ready is refused until it is submitted
  function renderWrapup() {
    const a = st.agent, owed = !!(a && a.wrapup_call);
    $("wrapup-card").hidden = !owed;
    // a form that only flags its call when missing (issue 18) does not hold ready back
    if (a && owed && a.wrapup_holds !== false) $("btn-ready").disabled = true;
    if (!owed || !st.hello || !st.hello.wrapup) return;
    $("wrapup-call").textContent = t("desktop.wrapup.call", {call: a.wrapup_call});
    const select = $("wrapup-disposition");
    if (select.options.length === 0) {
      for (const d of st.hello.wrapup.dispositions) {
        const option = document.createElement("option");
        option.value = d.code;
        option.textContent = I18N.label(d);
        select.appendChild(option);
      }
    }
    $("wrapup-notes").maxLength = st.hello.wrapup.max_notes;
  }

  function renderCall() {
    const a = st.agent, c = st.call;
    const show = !!(a && c && (IN_CALL.includes(a.state) || a.state === "acw"));
    $("call-card").hidden = !show;
    if (!show) return;
    $("call-title").textContent = t(a.state === "ringing" ? "desktop.call.incoming" :
      a.state === "acw" ? "desktop.call.ended" : "desktop.call.current");
    $("call-caller").textContent = c.caller_number || t("desktop.call.withheld");
    const scripts = st.hello.scripts;
    const kind = c.greeting || "normal";
    const g = $("call-greeting");
    g.dataset.kind = kind;
    g.className = "script " + kind;
    if (kind === "apology") {
      g.textContent = t("desktop.call.say_apology", {text: scripts.apology});
    } else {
      const opening = kind === "holiday" && scripts.holiday ? scripts.holiday : scripts.normal;
      g.textContent = t("desktop.call.caller_hears", {text: opening});
    }
    const list = $("call-history");
    list.textContent = "";
    const history = c.history || [];
    if (!history.length) {
      const li = document.createElement("li");
      li.textContent = t("desktop.call.first_contact");
      list.appendChild(li);
    }
    for (const h of history) {
      const li = document.createElement("li");
      const when = h.entered_at ? new Date(h.entered_at).toLocaleString() : "?";
      const outcome = h.outcome ? t("outcome." + h.outcome) : t("desktop.call.open");
      li.textContent = when + " — " + (outcome.startsWith("outcome.") ? h.outcome : outcome) +
        (h.agent_id ? " " + t("desktop.call.by_agent", {agent: h.agent_id}) : "");
      list.appendChild(li);
    }
  }

  // --- call actions (REST on the current call) ----------------------------------------------
  function currentCallId() {
    const a = st.agent;
    return (a && a.call_id) || (st.call && st.call.uniqueid) || "";
  }

  function renderCallActions() {
    const a = st.agent;
    const callId = currentCallId();
    const show = !!(a && ACTIVE_CALL.includes(a.state) && callId);
    $("call-actions").hidden = !show;
    if (callId !== st.actionCall) {  // another call (or none): the last result is stale
      st.actionCall = callId;
      $("call-action-result").textContent = "";
    }
    if (!show) return;
    $("btn-hold").hidden = a.state !== "on_call";
    $("btn-retrieve").hidden = a.state !== "on_hold";
    for (const id of ["btn-hold", "btn-retrieve", "btn-callback", "btn-closing", "btn-script",
                      "btn-nuisance-again"]) {
      $(id).disabled = st.inFlight.has(id);
    }
  }

  function errorText(res, reply) {
    const d = reply && reply.detail;
    if (d && typeof d === "object" && d.error) {
      return refusal(d.error, d.message && d.message !== d.error ? d.message : "");
    }
    if (typeof d === "string") return d;
    return "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
  }

  async function callAction(buttonId, action, body, success) {
    const callId = currentCallId();
    if (!callId) { showError(t("desktop.error.no_call")); return; }
    if (st.inFlight.has(buttonId)) return;
    st.inFlight.add(buttonId);
    $(buttonId).disabled = true;
    $("call-action-result").textContent = "";
    const init = {method: "POST", headers: {Authorization: "Bearer " + st.token}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      const res = await fetch("/api/v1/calls/" + encodeURIComponent(callId) + "/" + action,
                              init);
      const reply = await res.json().catch(() => ({}));
      if (!res.ok) {
        showError(errorText(res, reply));
        return;
      }
      showError("");
      st.actionCall = callId;
      $("call-action-result").textContent = success(reply || {});
    } catch (err) {
      showError(t("desktop.error.action_failed", {action, why: err.message}));
    } finally {
      st.inFlight.delete(buttonId);
      $(buttonId).disabled = false;
      if (st.agent) renderCallActions();
    }
  }

  // a time as the API sends it: epoch seconds or an ISO 8601 string
  const dateOf = (v) => new Date(typeof v === "number" ? v * 1000 : v);

  function warned(view) {
    return t("desktop.result.nuisance_warned", {warnings: view.warnings || "?"});
  }

  function tick() {
    const a = st.agent;
    if (!a) return;
    $("in-state").textContent = dur(now() - a.since_epoch);
    const timer = $("timer");
    if (a.state === "acw" && a.acw_deadline_epoch) {
      const left = a.acw_deadline_epoch - now();
      timer.hidden = false;
      timer.textContent = t("desktop.timer.acw", {left: dur(left)});
      timer.className = "timer" + (left <= 10 ? " due" : "");
    } else if (a.state === "on_hold") {
      const held = now() - a.since_epoch;
      timer.hidden = false;
      timer.textContent = t("desktop.timer.hold", {held: dur(held)});
      timer.className = "timer" + (st.hello && held >= st.hello.timers.hold_limit_s ? " due" : "");
    } else {
      timer.hidden = true;
    }
    const c = st.call;
    if (c && !$("call-card").hidden) {
      const waited = c.total_wait_s != null ? c.total_wait_s :
        c.entered_at ? now() - Date.parse(c.entered_at) / 1000 : null;
      $("call-waited").textContent = dur(waited);
    }
  }
  setInterval(tick, 250);

  // --- buttons ------------------------------------------------------------------------------
  $("btn-ready").addEventListener("click", () => {
    if (st.agent && st.agent.state === "logged_out") {
      send({type: "login", extension: st.extension});
    } else {
      send({type: "ready"});
    }
  });
  $("btn-busy").addEventListener("click",
    () => send({type: "busy", reason: $("busy-reason").value}));
  $("btn-not-ready").addEventListener("click",
    () => send({type: "not_ready", reason: $("not-ready-reason").value}));
  $("btn-end-acw").addEventListener("click", () => send({type: "end_acw"}));
  $("wrapup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!st.agent || !st.agent.wrapup_call) return;
    send({type: "wrapup", call_id: st.agent.wrapup_call,
          disposition: $("wrapup-disposition").value, notes: $("wrapup-notes").value});
    $("wrapup-notes").value = "";
  });
  $("btn-hold").addEventListener("click", () =>
    callAction("btn-hold", "hold", undefined, () => t("desktop.result.held")));
  $("btn-retrieve").addEventListener("click", () =>
    callAction("btn-retrieve", "retrieve", undefined, () => t("desktop.result.retrieved")));
  $("btn-callback").addEventListener("click", () =>
    callAction("btn-callback", "callback", {note: $("callback-note").value.trim()}, (r) => {
      $("callback-note").value = "";
      const task = r.task || {};
      return t("desktop.result.callback") +
        (task.number ? " " + t("desktop.result.callback_for", {number: task.number}) : "") +
        (task.due_at ? " " + t("desktop.result.callback_due",
                                {due: dateOf(task.due_at).toLocaleString()}) : "");
    }));
  $("btn-closing").addEventListener("click", () =>
    callAction("btn-closing", "closing", undefined,
               () => t("desktop.result.closing")));
  $("btn-script").addEventListener("click", () => {
    const procedure = $("script").value;
    callAction("btn-script", "special", {procedure}, (view) => procedure === "nuisance" ?
      warned(view) : t("desktop.result.script_started", {script: scriptLabel(procedure)}));
  });
  $("btn-nuisance-again").addEventListener("click", () =>
    callAction("btn-nuisance-again", "nuisance", undefined, warned));
  $("btn-logout").addEventListener("click", () => {
    if (st.agent && st.agent.state !== "logged_out") send({type: "logout"});
    st.closing = true;
    if (st.ws) st.ws.close(1000);
    // the session ends on the server too (after the logout frame went out)
    fetch("/api/v1/session", {method: "DELETE", headers: {Authorization: "Bearer " + st.token}})
      .catch(() => {});
    showLogin("");
  });

  if (st.token) {
    st.wantLogin = sessionStorage.getItem(WANT_KEY) === "1";
    sessionStorage.removeItem(WANT_KEY);
    $("login-view").hidden = true;
    connect();
  }
}());
