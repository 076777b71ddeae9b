/* The ticket backlog on the supervisor board (issue 19, STD-145, STD-147).
 *
 * Its own file so the board's other panels stay untouched: it reads the board's session
 * token (sessionStorage, as board.js keeps it) and asks GET /api/v1/tickets/backlog every
 * REFRESH_MS while the board is shown. Escalations reach the board as alarms on the live
 * stream (the alarms card); this panel is the list to chase: open tickets by type and
 * priority, overdue first. Every value from the server is shown with textContent, never
 * as markup (a description may hold HTML; it stays text).
 */
(function () {
  "use strict";
  const TOKEN_KEY = "callflow.board.token";
  const REFRESH_MS = 10000;
  const LABELS = {
    "zh-CN": {title: "工单积压", open: "未结", overdue: "超时", number: "工单号", type: "类型",
              priority: "优先级", summary: "摘要", status: "状态", owner: "负责人", due: "到期",
              level: "升级", late: "超时项", none: "没有未结工单",
              types: {enquiry: "咨询", back_office: "后台处理", complaint_simple: "简单投诉",
                      complaint_complex: "复杂投诉", suggestion: "建议", fault: "故障"},
              levels: ["坐席", "值班长", "部门经理"]},
    "en": {title: "Ticket backlog", open: "open", overdue: "overdue", number: "ticket",
           summary: "summary",
           type: "type", priority: "priority", status: "status", owner: "owner", due: "due",
           level: "escalated", late: "late clocks", none: "no open tickets",
           types: {enquiry: "enquiry", back_office: "back office",
                   complaint_simple: "simple complaint", complaint_complex: "complex complaint",
                   suggestion: "suggestion", fault: "fault"},
           levels: ["owner", "shift lead", "manager"]},
  };
  const lang = document.documentElement.lang === "zh-CN" ? "zh-CN" : "en";
  const L = LABELS[lang];

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleString(lang);
  }

  let last = null;
  // the per-team view (teams.js): one team's tickets, its own open and overdue counts
  function forTeam(backlog) {
    const team = window.callflowBoard && window.callflowBoard.team();
    if (!team) return backlog;
    const mine = (backlog.by_team || {})[team] || {open: 0, overdue: 0};
    const items = (backlog.items || []).filter((t) => t.team === team);
    const byType = {};
    for (const t of items) byType[t.type] = (byType[t.type] || 0) + 1;
    return {...backlog, open: mine.open, overdue: mine.overdue, items, by_type: byType};
  }

  function paint(whole) {
    const panel = document.getElementById("tickets-panel");
    if (!panel) return;
    last = whole;
    const backlog = forTeam(whole);
    panel.hidden = false;
    document.getElementById("tickets-title").textContent = L.title;
    document.getElementById("tickets-open").textContent = L.open + " " + (backlog.open || 0);
    const overdue = document.getElementById("tickets-overdue");
    overdue.textContent = L.overdue + " " + (backlog.overdue || 0);
    overdue.classList.toggle("alert", (backlog.overdue || 0) > 0);
    const summary = document.getElementById("tickets-by-type");
    summary.replaceChildren(...Object.entries(backlog.by_type || {}).map(
      ([type, n]) => el("span", (L.types[type] || type) + " " + n, "chip")));
    const list = document.getElementById("tickets-list");
    const head = el("div", null, ["row", "head"].join(" "));
    for (const key of ["number", "type", "priority", "status", "owner", "due", "level", "late",
                       "summary"]) {
      head.append(el("span", L[key]));
    }
    const rows = (backlog.items || []).map((t) => {
      const row = el("div", null, "row" + (t.overdue && t.overdue.length ? " overdue" : ""));
      row.dataset.ticket = String(t.id);
      row.append(el("span", t.number), el("span", L.types[t.type] || t.type),
                 el("span", t.priority), el("span", t.status), el("span", t.owner),
                 el("span", when(t.due_at)),
                 el("span", L.levels[t.escalation_level] || String(t.escalation_level)),
                 el("span", (t.overdue || []).join(", ")), el("span", t.summary, "summary"));
      return row;
    });
    list.replaceChildren(head, ...(rows.length ? rows : [el("div", L.none, ["row", "empty"].join(" "))]));
  }

  async function refresh() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const board = document.getElementById("board-view");
    if (!token || !board || board.hidden) return;
    try {
      const res = await fetch("/api/v1/tickets/backlog",
                              {headers: {"Authorization": "Bearer " + token}});
      if (res.ok) paint(await res.json());
    } catch (err) { /* the next round tries again */ }
  }

  window.callflowTickets = {paint, refresh, repaint: () => { if (last) paint(last); },
                           backlog: () => last};
  // the board is shown after its log-in: fetch at once then, not at the next round
  const boardView = document.getElementById("board-view");
  if (boardView) {
    new MutationObserver(refresh).observe(boardView, {attributes: true,
                                                      attributeFilter: ["hidden"]});
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
