/* callflow desktop, the agent's side of the supervisor workflows (issue 18):
 *   - ask for more after-call work (acw_extend_request, STD-100) and see the answer;
 *   - escalate a live call to the board (escalate, STD-066);
 *   - the absence approval status (STD-106);
 *   - activity reports (STD-102): user input, throttled, and whether the page is visible
 *     (the "service page"); the engine logs out an agent idle off the service page.
 * Talks through the hooks desktop.js exports (window.callflowDesk). Labels per language:
 * document.documentElement.lang ("zh-CN" or "en").
 */
(function () {
  "use strict";

  const LABELS = {
    "zh-CN": {
      title: "主管协助", ask: "申请延长话后处理", escalate: "升级给主管",
      asked: "已申请延长,等待主管答复", granted: "主管已批准延长", refused: "主管未批准延长",
      escalated: "已通知主管(监听/插话可随时进行)",
      pending: "示忙原因需主管批准:等待批准中", approved: "主管已批准本次离开",
      absenceRefused: "主管未批准离开:", sentReady: "已回到就绪", sentBusy: "仍为示忙,已记录为未批准",
      loggedOutIdle: "长时间无操作且未停留在客户服务页面,系统已将您登出(STD-102)",
      reasonHint: "原因(可选)",
    },
    "en": {
      title: "Supervisor help", ask: "ask for more after-call work", escalate: "escalate to supervisor",
      asked: "asked for more time: waiting for a supervisor", granted: "more time granted",
      refused: "more time refused", escalated: "supervisor alerted (they may listen in or join)",
      pending: "this busy reason needs a supervisor's approval: waiting",
      approved: "absence approved by a supervisor", absenceRefused: "absence refused: ",
      sentReady: "you are ready again", sentBusy: "still busy, flagged unapproved",
      loggedOutIdle: "logged out: no input for too long and the desktop was not left on the " +
        "service page (STD-102)",
      reasonHint: "reason (optional)",
    },
  };
  const L = LABELS[document.documentElement.lang] || LABELS.en;
  const $ = (id) => document.getElementById(id);
  const desk = window.callflowDesk;
  if (!desk) return;

  $("sv-title").textContent = L.title;
  $("btn-acw-extend").textContent = L.ask;
  $("btn-escalate").textContent = L.escalate;
  $("sv-acw-reason").placeholder = L.reasonHint;
  $("sv-escalate-reason").placeholder = L.reasonHint;
  $("sv-acw-reason").setAttribute("aria-label", L.ask);
  $("sv-escalate-reason").setAttribute("aria-label", L.escalate);

  let refusedNote = "";
  let loggedOut = true;
  let escalatedCall = "";

  function render(a) {
    const inAcw = a.state === "acw";
    const live = a.state === "on_call" || a.state === "on_hold";
    $("sv-acw").hidden = !inAcw;
    $("sv-escalate").hidden = !live;
    const ask = a.acw_extend_request;
    $("btn-acw-extend").disabled = !inAcw || !!ask;
    $("sv-acw-status").textContent = !ask ? "" : ask.status === "open" ? L.asked :
      ask.status === "granted" ? L.granted : L.refused;
    $("sv-acw-status").dataset.status = ask ? ask.status : "";
    if (!live || a.call_id !== escalatedCall) $("sv-escalate-status").textContent = "";
    let approval = "";
    if (a.state === "busy" && a.approval_pending) approval = L.pending;
    else if (a.cause === "approved") approval = L.approved;
    else if (a.cause === "absence_refused") approval = refusedNote;
    else if (a.state === "logged_out" && a.reason === "inactivity") approval = L.loggedOutIdle;
    $("sv-approval").textContent = approval;
    $("sv-approval").dataset.status = a.approval_pending ? "pending" : a.cause || "";
  }

  desk.onPayload((p) => {
    if (p.type === "agent_state") {
      render(p);
      // logged in (or back): say at once whether the page is the service page
      if (p.state !== "logged_out" && loggedOut) setTimeout(() => report(true), 0);
      loggedOut = p.state === "logged_out";
    }
    else if (p.type === "alert" && p.kind === "absence_refused") {
      refusedNote = L.absenceRefused + (p.sent_to === "ready" ? L.sentReady : L.sentBusy);
      $("sv-approval").textContent = refusedNote;
    } else if (p.type === "hello") {
      limitMin = (p.timers && p.timers.inactivity_logout_min) || 0;
      setTimeout(() => report(true), 0);
    }
  });

  $("btn-acw-extend").addEventListener("click", () => {
    desk.send({type: "acw_extend_request", reason: $("sv-acw-reason").value.trim()});
    $("sv-acw-reason").value = "";
  });
  $("btn-escalate").addEventListener("click", () => {
    const a = desk.agent();
    desk.send({type: "escalate", reason: $("sv-escalate-reason").value.trim()});
    $("sv-escalate-reason").value = "";
    escalatedCall = a ? a.call_id : "";
    $("sv-escalate-status").textContent = L.escalated;
  });

  // --- activity (STD-102) -------------------------------------------------------------------
  let limitMin = 0;
  let lastSent = 0;
  function every() {  // at most one report per 30 s, and 4 within the limit
    return Math.min(30000, limitMin > 0 ? limitMin * 60000 / 4 : 30000);
  }
  function report(force) {
    const a = desk.agent();
    if (!a || a.state === "logged_out") return;
    const t = Date.now();
    if (!force && t - lastSent < every()) return;
    lastSent = t;
    desk.send({type: "activity", service_page: document.visibilityState === "visible"});
  }
  for (const kind of ["keydown", "pointerdown", "wheel", "touchstart"]) {
    document.addEventListener(kind, () => report(false), {passive: true, capture: true});
  }
  document.addEventListener("visibilitychange", () => report(true));
}());
