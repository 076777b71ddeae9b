/* callflow recordings: search, play, review and sample recordings (supervisors, QA, admins).
 *
 * Log in with POST /api/v1/session; the token stays in sessionStorage and goes in an
 * Authorization header, never in a URL: the audio is fetched with it and handed to the
 * <audio> element as a blob: URL. The server audits every access (list, view, play,
 * review, sample); the access log shown is the server's. An agent's login gets 403 from
 * the recordings API: the page says it has no access.
 *
 * Deep link: /recordings#recording=<id> (the desktop's ticket and repeat-caller links)
 * opens that recording's detail and player once logged in, through the same audited
 * API; an id that is no number, or that the API refuses, gets one error line and no
 * detail pane. The id is in the fragment, so it never reaches a server log as a URL.
 */
(function () {
  "use strict";

  const TOKEN_KEY = "callflow.recordings.token";
  const WHO_KEY = "callflow.recordings.who";
  const MAX_ROWS = 500;  // the API's most
  const PREFIX = /^recording\./;  // audit actions are "recording.play" etc.: shown as "play"
  // every label from the language pack of the page's language (api/language.py)
  const I18N = window.callflowI18n;
  const t = I18N.t;
  const known = (key, fallback) => (t(key) === key ? fallback : t(key));
  const $ = (id) => document.getElementById(id);

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    who: "",             // "name (role)" in the page's language, from WHO_KEY's "name role"
    sheet: null,         // {criteria: [{code, label, max}], penalties: [{code, label, points}]}
    rows: new Map(),     // id -> list item
    selected: null,      // id of the recording in the detail pane
    item: null,          // that recording as last shown
    audioUrl: null,      // the current blob: URL (revoked when replaced)
    audioAbort: null,    // AbortController of the audio download in flight
    listSeq: 0,          // newer list requests win over older ones
  };

  // --- formatting -----------------------------------------------------------------------
  function dur(s) {
    if (s == null || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(x).padStart(2, "0");
  }
  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString(I18N.lang, {hour12: false});
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      e.setAttribute(k, v === true ? "" : String(v));
    }
    if (text != null) e.textContent = String(text);
    return e;
  }
  function thisMonth() {
    const d = new Date();
    return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0");
  }

  // --- HTTP -----------------------------------------------------------------------------
  function reason(data, res) {
    const d = data && data.detail;  // every error: {"error": code, "message": words}
    if (d && typeof d === "object" && (d.message || d.error)) {
      return d.message && d.error ? d.message + " (" + d.error + ")" : d.message || d.error;
    }
    return res.statusText || "HTTP " + res.status;
  }

  async function request(method, path, body, signal) {
    const headers = body === undefined ? {} : {"Content-Type": "application/json"};
    if (st.token) headers.Authorization = "Bearer " + st.token;
    let res;
    try {
      res = await fetch(path, {method, headers, signal,
        body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (e) {
      if (e.name === "AbortError") throw e;
      const err = new Error(t("recordings.error.unreachable"));
      err.status = 0;
      throw err;
    }
    if (res.status === 401 && st.token && path !== "/api/v1/session") {
      showLogin(t("common.error.session_ended"));
    }
    return res;
  }

  async function api(method, path, body) {
    const res = await request(method, path, body);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error(reason(data, res));
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function showError(e) {
    $("error").textContent = e ? (e.message || String(e)) : "";
  }

  // --- views ----------------------------------------------------------------------------
  function show(view) {
    for (const id of ["login-view", "forbidden-view", "recordings-view"]) {
      $(id).hidden = id !== view;
    }
    $("logout").hidden = view === "login-view";
    $("who").textContent = view === "login-view" ? "" : st.who;
  }

  function showLogin(message) {
    st.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(WHO_KEY);
    clearDetail();
    show("login-view");
    $("login-error").textContent = message || "";
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const f = ev.target;
    $("login-error").textContent = "";
    let reply;
    try {
      reply = await api("POST", "/api/v1/session",
        {username: f.username.value.trim(), password: f.password.value});
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? t("common.error.wrong_credentials")
                                                      : e.message;
      return;
    }
    st.token = reply.token;
    st.who = whoText(reply.username + " " + reply.role);
    sessionStorage.setItem(TOKEN_KEY, st.token);
    sessionStorage.setItem(WHO_KEY, reply.username + " " + reply.role);
    f.password.value = "";
    if (reply.language_set && I18N.adopt(reply.language)) return;  // reloads in it
    await enter();
  }

  /** Open the page for the session: the scoring sheet doubles as the access check. */
  async function enter() {
    try {
      st.sheet = await api("GET", "/api/v1/recordings/scoring-sheet");
    } catch (e) {
      if (e.status === 403) {
        $("forbidden-text").textContent = t("recordings.forbidden.detail",
                                            {who: st.who, why: e.message});
        show("forbidden-view");
        return;
      }
      if (e.status === 401) { showLogin(st.token ? "" : e.message); return; }
      show("recordings-view");
      showError(e);
      return;
    }
    buildReviewForm(st.sheet);
    show("recordings-view");
    await loadList();
    await openLinked();
  }

  // --- the deep link --------------------------------------------------------------------
  const LINK = /^#recording=(.*)$/;
  const LINK_ID = /^[0-9]{1,12}$/;  // the API's own bound on a recording id

  /** The recording named by the page's fragment: open it (after the list, so its row is
   * marked when listed). Nothing is requested for a malformed id. */
  async function openLinked() {
    const m = LINK.exec(location.hash || "");
    if (!m || $("recordings-view").hidden) return;
    let raw = m[1];
    try { raw = decodeURIComponent(raw); } catch (e) { /* shown as it came */ }
    if (!LINK_ID.test(raw)) {
      clearDetail();
      showError(new Error(t("recordings.deeplink.bad", {id: raw.slice(0, 20)})));
      return;
    }
    const id = String(Number(raw));  // "007" is recording 7, as the rows are keyed
    for (const other of $("recordings").querySelectorAll("tr.chosen")) {
      other.classList.remove("chosen");
    }
    const tr = $("recordings").querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    if (tr) { tr.classList.add("chosen"); tr.scrollIntoView({block: "nearest"}); }
    showError(null);
    await openDetail(id, true);
  }

  // --- the list -------------------------------------------------------------------------
  function query() {
    const f = $("filters");
    const q = new URLSearchParams();
    for (const name of ["agent_id", "number", "since", "until"]) {
      const v = f.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    q.set("qa", f.elements.qa.value || "all");
    q.set("limit", String(MAX_ROWS));
    return q;
  }

  async function loadList() {
    const seq = ++st.listSeq;
    let data;
    try {
      data = await api("GET", "/api/v1/recordings?" + query().toString());
    } catch (e) {
      if (seq === st.listSeq) showError(e);
      return;
    }
    if (seq !== st.listSeq) return;
    showError(null);
    renderList(data.recordings || []);
  }

  function qaText(r) {
    if (!r.qa_selected) return "–";
    return r.qa_reason ? t("recordings.qa.selected_why", {why: r.qa_reason})
                       : t("recordings.qa.selected");
  }

  const yesNo = (v) => t(v ? "common.yes" : "common.no");

  function renderList(items) {
    const body = $("recordings").tBodies[0];
    const rows = [];
    st.rows.clear();
    for (const r of items) {
      st.rows.set(String(r.id), r);
      const tr = el("tr", {"data-id": r.id, tabindex: 0,
                           class: String(r.id) === st.selected ? "chosen" : null});
      tr.append(
        el("td", {}, when(r.started_at)),
        el("td", {}, r.direction ? known("recordings.direction." + r.direction, r.direction)
                                 : "–"),
        el("td", {}, r.agent_id || "–"),
        el("td", {}, r.number || "–"),
        el("td", {class: "num"}, dur(r.duration_s)),
        el("td", {class: r.qa_selected ? "qa" : null}, qaText(r)),
        el("td", {}, yesNo(r.reviewed)),
        el("td", {}, r.outcome ? known("outcome." + r.outcome, r.outcome) : "–"));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("empty").hidden = items.length > 0;
  }

  function onRowPick(ev) {
    if (ev.type === "keydown" && ev.key !== "Enter") return;
    const tr = ev.target.closest("tr[data-id]");
    if (!tr) return;
    for (const other of $("recordings").querySelectorAll("tr.chosen")) {
      other.classList.remove("chosen");
    }
    tr.classList.add("chosen");
    openDetail(tr.dataset.id);
  }

  async function onSample() {
    const button = $("btn-sample");
    button.disabled = true;
    $("sample-result").textContent = "";
    try {
      const month = thisMonth();
      const r = await api("POST", "/api/v1/recordings/sample?month=" + month);
      const n = (r.selected || []).length;
      $("sample-result").textContent = t("recordings.sample.result", {n, month});
      showError(null);
      await loadList();
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  }

  // --- the detail pane ------------------------------------------------------------------
  function clearDetail() {
    st.selected = null;
    st.item = null;
    if (st.audioAbort) st.audioAbort.abort();
    st.audioAbort = null;
    const player = $("player");
    player.pause();
    player.removeAttribute("src");
    player.load();
    if (st.audioUrl) URL.revokeObjectURL(st.audioUrl);
    st.audioUrl = null;
    $("detail").hidden = true;
  }

  async function openDetail(id, fromLink) {
    clearDetail();
    st.selected = id;
    $("detail").hidden = false;
    $("detail-id").textContent = "#" + id;
    const known = st.rows.get(id);
    if (known) renderMeta(st.item = Object.assign({}, known));
    $("access").replaceChildren();
    $("reviews").replaceChildren();
    $("review-total").textContent = "";
    $("review-total").className = "";
    $("review-form").reset();
    // the audio first: the access log read afterwards then shows this play too
    await loadAudio(id);
    if (st.selected !== id) return;
    let item;
    try {
      item = await api("GET", "/api/v1/recordings/" + encodeURIComponent(id));
    } catch (e) {
      if (st.selected !== id) return;
      if (fromLink) {  // a link to a recording this login may not see: no pane, one error
        clearDetail();
        showError(new Error(t("recordings.deeplink.error", {id, why: e.message})));
      } else {
        showError(e);
      }
      return;
    }
    if (st.selected !== id) return;
    renderMeta(st.item = item);
    renderAccess(item.access || []);
    renderReviews(item.reviews || []);
  }

  async function loadAudio(id) {
    const status = $("audio-status");
    status.textContent = t("recordings.audio.loading");
    const abort = new AbortController();
    st.audioAbort = abort;
    let res;
    try {
      res = await request("GET", "/api/v1/recordings/" + encodeURIComponent(id) + "/audio",
                          undefined, abort.signal);
      if (!res.ok) {
        let data = null;
        try { data = await res.json(); } catch (e) { data = null; }
        status.textContent = t(res.status === 410 ? "recordings.audio.purged"
                                                  : "recordings.audio.none",
                               {why: reason(data, res)});
        return;
      }
      const blob = await res.blob();
      if (st.selected !== id) return;
      st.audioUrl = URL.createObjectURL(blob);
      $("player").src = st.audioUrl;
      status.textContent = "";
    } catch (e) {
      if (e.name !== "AbortError") {
        status.textContent = t("recordings.audio.none", {why: e.message});
      }
    } finally {
      if (st.audioAbort === abort) st.audioAbort = null;
    }
  }

  function renderMeta(r) {
    const pairs = [
      ["recordings.col.call", r.call_id], ["recordings.col.started", when(r.started_at)],
      ["recordings.col.direction", r.direction ?
        known("recordings.direction." + r.direction, r.direction) : null],
      ["recordings.f.agent", r.agent_id], ["recordings.f.number", r.number],
      ["recordings.col.duration", dur(r.duration_s)], ["recordings.col.outcome",
                                                          r.outcome && known("outcome." + r.outcome, r.outcome)],
      ["recordings.f.qa", qaText(r)], ["recordings.col.reviewed", yesNo(r.reviewed)],
    ];
    const items = [];
    for (const [k, v] of pairs) items.push(el("dt", {}, t(k)), el("dd", {}, v == null ? "–" : v));
    $("detail-meta").replaceChildren(...items);
  }

  function actionLabel(action) {
    const code = String(action || "").replace(PREFIX, "");
    return known("recordings.action." + code, code);
  }

  function renderAccess(entries) {
    $("access").replaceChildren(...entries.map((a) => {
      const li = el("li", {"data-action": a.action});
      li.append(el("span", {class: "at"}, when(a.at)), " ",
                el("span", {class: "actor"}, a.actor), " ",
                el("span", {class: "action"}, actionLabel(a.action)));
      return li;
    }));
  }

  function reviewItem(r) {
    const li = el("li");
    const head = el("div", {class: "review-head"});
    head.append(el("strong", {}, t("recordings.total", {total: r.total == null ? "–" : r.total})));
    if (r.unqualified) head.append(" ", el("span", {class: "bad"}, t("recordings.unqualified")));
    const by = r.reviewer || r.actor || r.by;
    const at = r.at || r.reviewed_at || r.created_at;
    if (by || at) head.append(" ", el("span", {class: "mute"},
      [by, at ? when(at) : null].filter(Boolean).join(", ")));
    li.append(head);
    const parts = [];
    const labels = Object.fromEntries(((st.sheet && st.sheet.criteria) || [])
      .map((c) => [c.code, criterionLabel(c)]));
    for (const [code, v] of Object.entries(r.scores || {})) {
      parts.push((labels[code] || code) + " " + v);
    }
    for (const p of r.penalties || []) {
      if (p.count) {
        parts.push(t("recordings.penalty", {code: known("qa.penalty." + p.code, p.code),
                                            count: p.count}));
      }
    }
    if (parts.length) li.append(el("div", {class: "scores"}, parts.join(" · ")));
    if (r.notes) li.append(el("div", {class: "notes"}, r.notes));
    return li;
  }

  function renderReviews(reviews) {
    $("reviews").replaceChildren(...reviews.map(reviewItem));
  }

  // --- the review form ------------------------------------------------------------------
  // the sheet's words are the Policy's (English): the pack has them in every language
  const criterionLabel = (c) => known("qa.criterion." + c.code, c.label);

  function buildReviewForm(sheet) {
    const crit = $("criteria"), pen = $("penalties");
    crit.replaceChildren(el("legend", {}, t("recordings.scores")));
    pen.replaceChildren(el("legend", {}, t("recordings.penalties")));
    for (const c of sheet.criteria || []) {
      const label = el("label", {}, criterionLabel(c) + " ");
      label.append(el("input", {type: "number", name: c.code, min: 0, max: c.max, step: 1,
                                value: c.max, required: true, "data-criterion": c.code}),
                   el("span", {class: "mute"}, " / " + c.max));
      crit.append(label);
    }
    for (const p of sheet.penalties || []) {
      const label = el("label", {}, known("qa.penalty." + p.code, p.label) + " ");
      label.append(el("input", {type: "number", name: "penalty-" + p.code, min: 0, step: 1,
                                value: 0, "data-penalty": p.code}),
                   el("span", {class: "mute"}, " × −" + p.points));
      pen.append(label);
    }
    pen.hidden = !(sheet.penalties || []).length;
  }

  async function onReview(ev) {
    ev.preventDefault();
    const id = st.selected;
    if (id == null) return;
    const form = ev.target;
    const scores = {};
    for (const input of form.querySelectorAll("input[data-criterion]")) {
      scores[input.dataset.criterion] = parseInt(input.value, 10) || 0;
    }
    const penalties = [];
    for (const input of form.querySelectorAll("input[data-penalty]")) {
      const count = parseInt(input.value, 10) || 0;
      if (count > 0) penalties.push({code: input.dataset.penalty, count});
    }
    const total = $("review-total");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    total.textContent = "";
    total.className = "";
    try {
      const r = await api("POST", "/api/v1/recordings/" + encodeURIComponent(id) + "/review",
                          {scores, penalties, notes: form.elements.notes.value});
      total.textContent = t("recordings.total", {total: r.total}) +
        (r.unqualified ? " — " + t("recordings.unqualified") : "");
      total.className = r.unqualified ? "bad" : "ok";
      showError(null);
      if (st.selected === id) {
        $("reviews").append(reviewItem(r));
        if (st.item) renderMeta(Object.assign(st.item, {reviewed: true}));
      }
      const row = st.rows.get(id);
      if (row) {
        row.reviewed = true;
        const tr = $("recordings").querySelector(`tr[data-id="${CSS.escape(id)}"]`);
        if (tr) tr.children[6].textContent = yesNo(true);
      }
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  }

  // --- start ----------------------------------------------------------------------------
  // the login is kept as "name role" so a reload in another language words the role anew
  function whoText(stored) {
    const text = String(stored || ""), cut = text.lastIndexOf(" ");
    if (cut < 1) return "";
    const role = text.slice(cut + 1);
    return text.slice(0, cut) + " (" + known("role." + role, role) + ")";
  }
  st.who = whoText(sessionStorage.getItem(WHO_KEY));
  I18N.apply(document);
  I18N.session = () => st.token;
  $("login-form").addEventListener("submit", onLogin);
  function logOut() {
    if (st.token) {  // the session ends on the server too
      request("DELETE", "/api/v1/session").catch(() => {});
    }
    showLogin("");
  }
  $("logout").addEventListener("click", logOut);
  $("forbidden-logout").addEventListener("click", logOut);
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadList(); });
  $("filters").elements.qa.addEventListener("change", loadList);
  $("btn-sample").addEventListener("click", onSample);
  $("recordings").addEventListener("click", onRowPick);
  $("recordings").addEventListener("keydown", onRowPick);
  $("review-form").addEventListener("submit", onReview);
  window.addEventListener("hashchange", () => { if (st.token && st.sheet) openLinked(); });
  if (st.token) enter(); else show("login-view");
})();
