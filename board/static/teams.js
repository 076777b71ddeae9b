/* The board's per-team view (issue 19, STD-145: how busy each team is, so the shift lead
 * can redeploy seats).
 *
 * A team selector over the roster's teams (agents.toml `team`): choosing one shows only
 * that team's agents (board.js filters its rows), the queues its agents serve with their
 * waiting calls, the team's ticket backlog (tickets.js) and the team's figures: agents
 * logged in, ready, on a call, calls waiting in its queues, calls answered today, open and
 * overdue tickets. A shift lead's board opens on their own team (whoami `team`); anyone
 * may switch to another team or to every team. Labels come from the language packs.
 *
 * Each team's service level, answered and abandoned calls and average answer time come
 * from the server (`team_kpis` in the snapshot and pushed on change: board/live_view.py;
 * a call counts for one team, engine/team_kpi.py, docs/kpi.md "Teams"): chips for the
 * chosen team (every team: their sum, which is the centre's) and one row per team.
 */
(function () {
  "use strict";
  const board = window.callflowBoard;
  const t = window.callflowI18n.t;
  const $ = (id) => document.getElementById(id);
  const TALKING = new Set(["ringing", "on_call", "on_hold"]);
  let teams = [];
  let defaulted = false;
  const views = new Map();  // team -> team view (engine/team_kpi.py team_view)
  const UNASSIGNED = "(unassigned)";
  const SUMMED = ["offered", "answered", "abandoned", "callbacks", "in_service_level",
                  "wait_sum_s"];

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function fill(roster) {
    const names = [...new Set(roster.map((r) => r.team).filter(Boolean))].sort();
    if (names.join("\n") === teams.join("\n") && defaulted) return;
    teams = names;
    const sel = $("team-filter");
    const keep = sel.value;
    sel.replaceChildren(option("", t("board.teams.all")), ...names.map((n) => option(n, n)));
    $("teams-panel").hidden = names.length === 0;
    let want = keep;
    const who = board.who();
    if (!defaulted && who && who.team && names.includes(who.team)) want = who.team;
    defaulted = true;
    sel.value = names.includes(want) ? want : "";
    choose(sel.value);
  }

  function choose(team) {
    board.setTeam(team);
    paint();
    if (window.callflowTickets) window.callflowTickets.repaint();
  }

  /** The chosen team's view, or every team's counts summed (rates from the sums). */
  function teamFigures(team) {
    if (team) return views.get(team) || null;
    if (views.size === 0) return null;
    const sum = {};
    for (const key of SUMMED) sum[key] = 0;
    for (const v of views.values()) for (const key of SUMMED) sum[key] += v[key] || 0;
    const decided = sum.answered + sum.abandoned + sum.callbacks;
    sum.service_level = decided ? sum.in_service_level / decided : null;
    sum.asa_s = sum.answered ? sum.wait_sum_s / sum.answered : null;
    const any = views.values().next().value;
    sum.service_level_target_pct = any.service_level_target_pct;
    return sum;
  }

  const pct = (r) => (r == null ? "–" : (r * 100).toFixed(1) + "%");
  const secs = (s) => (s == null ? "–" : Number(s).toFixed(1) + " s");
  const below = (v) => v && v.service_level != null
    && v.service_level * 100 < v.service_level_target_pct;

  function cell(tag, text, kpi) {
    const c = document.createElement(tag);
    c.textContent = text;
    if (kpi) c.dataset.kpi = kpi;
    return c;
  }

  function paintTable(team) {
    const table = $("team-sl");
    const head = table.tHead;
    if (!head.rows.length) {
      const tr = head.insertRow();
      for (const key of ["team", "offered", "answered", "abandoned", "service_level", "asa"]) {
        tr.appendChild(cell("th", t("board.teams." + key)));
      }
    }
    const names = [...views.keys()].sort((a, b) =>
      (a === UNASSIGNED) - (b === UNASSIGNED) || a.localeCompare(b));
    table.tBodies[0].replaceChildren(...names.map((name) => {
      const v = views.get(name);
      const tr = document.createElement("tr");
      tr.dataset.team = name;
      tr.className = (name === team ? "selected" : "") + (below(v) ? " below" : "");
      tr.append(cell("td", name === UNASSIGNED ? t("board.teams.unassigned") : name),
                cell("td", v.offered, "offered"), cell("td", v.answered, "answered"),
                cell("td", v.abandoned, "abandoned"),
                cell("td", pct(v.service_level), "service_level"),
                cell("td", secs(v.asa_s), "asa"));
      return tr;
    }));
    table.hidden = names.length === 0;
  }

  function paint() {
    const team = board.team();
    const agents = board.agents().filter((a) => !team || a.team === team);
    const served = new Set(agents.flatMap((a) => a.queues));
    let waiting = 0;
    for (const [queue, n] of board.waiting()) {
      const row = document.querySelector('#queues .row[data-queue="' + CSS.escape(queue) + '"]');
      const mine = !team || served.has(queue);
      if (row) row.hidden = !mine;
      if (mine) waiting += n || 0;
    }
    const backlog = window.callflowTickets && window.callflowTickets.backlog();
    const tickets = backlog ? (team ? (backlog.by_team || {})[team] || {open: 0, overdue: 0}
                                    : {open: backlog.open || 0, overdue: backlog.overdue || 0})
                            : {open: 0, overdue: 0};
    const sl = teamFigures(team);
    const figures = [
      ["logged_in", agents.filter((a) => a.state !== "logged_out").length + " / " + agents.length],
      ["ready", agents.filter((a) => a.state === "ready").length],
      ["on_call", agents.filter((a) => TALKING.has(a.state)).length],
      ["waiting", waiting],
      ["answered", sl ? sl.answered : agents.reduce((n, a) => n + a.calls, 0)],
      ["tickets_open", tickets.open],
      ["tickets_overdue", tickets.overdue],
      ["service_level", pct(sl && sl.service_level)],
      ["abandoned", sl ? sl.abandoned : 0],
      ["asa", secs(sl && sl.asa_s)],
    ];
    $("team-kpis").replaceChildren(...figures.map(([key, value]) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.dataset.kpi = key;
      chip.textContent = t("board.teams." + key) + " " + value;
      if (key === "service_level" && below(sl)) chip.classList.add("below");
      return chip;
    }));
    paintTable(team);
  }

  function take(list) {
    for (const v of list || []) if (v && typeof v.team === "string") views.set(v.team, v);
  }

  board.on("snapshot", (state) => {
    views.clear();
    take((state.board || {}).team_kpis);
    fill(((state.board || {}).roster) || []);
  });
  board.on("teamKpis", (list) => { take(list); if (!$("teams-panel").hidden) paint(); });
  $("team-filter").addEventListener("change", (ev) => choose(ev.target.value));
  setInterval(() => { if (!$("teams-panel").hidden) paint(); }, 1000);
})();
