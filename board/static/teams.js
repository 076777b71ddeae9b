/* The board's per-team view (issue 19, STD-145: how busy each team is, so the shift lead
 * can redeploy seats).
 *
 * A team selector over the roster's teams (agents.toml `team`): choosing one shows only
 * that team's agents (board.js filters its rows), the queues its agents serve with their
 * waiting calls, the team's ticket backlog (tickets.js) and the team's figures: agents
 * logged in, ready, on a call, calls waiting in its queues, calls answered today, open and
 * overdue tickets. A shift lead's board opens on their own team (whoami `team`); anyone
 * may switch to another team or to every team. Labels come from the language packs.
 */
(function () {
  "use strict";
  const board = window.callflowBoard;
  const t = window.callflowI18n.t;
  const $ = (id) => document.getElementById(id);
  const TALKING = new Set(["ringing", "on_call", "on_hold"]);
  let teams = [];
  let defaulted = false;

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
    const figures = [
      ["logged_in", agents.filter((a) => a.state !== "logged_out").length + " / " + agents.length],
      ["ready", agents.filter((a) => a.state === "ready").length],
      ["on_call", agents.filter((a) => TALKING.has(a.state)).length],
      ["waiting", waiting],
      ["answered", agents.reduce((n, a) => n + a.calls, 0)],
      ["tickets_open", tickets.open],
      ["tickets_overdue", tickets.overdue],
    ];
    $("team-kpis").replaceChildren(...figures.map(([key, value]) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.dataset.kpi = key;
      chip.textContent = t("board.teams." + key) + " " + value;
      return chip;
    }));
  }

  board.on("snapshot", (state) => fill(((state.board || {}).roster) || []));
  $("team-filter").addEventListener("change", (ev) => choose(ev.target.value));
  setInterval(() => { if (!$("teams-panel").hidden) paint(); }, 1000);
})();
