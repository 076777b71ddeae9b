/* callflow board, supervisor workflows (issue 18): what agents ask of a supervisor.
 *   - absences awaiting approval (STD-106): agent, reason, since; approve or refuse;
 *   - requests for more after-call work (STD-100): agent, reason, ACW left; grant or refuse;
 *   - escalation alarms (STD-066): the live call, with listen / whisper / barge (STD-146)
 *     on the agent's call from the alarm itself (the board's monitor action).
 * Fed by the hooks board.js exports (window.callflowBoard); no polling: the agents'
 * states come on the board topic. Labels per language: document.documentElement.lang.
 */
(function () {
  "use strict";

  const LABELS = {
    "zh-CN": {
      title: "坐席请求", approvals: "待批准的离开", acw: "申请延长话后处理",
      approve: "批准", refuse: "不批准", grant: "批准延长", listen: "监听", whisper: "密语",
      barge: "插话", since: "开始于", left: "剩余", none: "无", approved: "已批准",
      refused: "已拒绝", granted: "已延长", phoneFirst: "请先填写“我的话机”", rings: "您的话机将振铃",
    },
    "en": {
      title: "Agent requests", approvals: "Absences awaiting approval",
      acw: "Requests for more after-call work", approve: "approve", refuse: "refuse",
      grant: "grant", listen: "listen", whisper: "whisper", barge: "barge", since: "since",
      left: "left", none: "none", approved: "approved", refused: "refused",
      granted: "extended", phoneFirst: "set 'my phone' first (your softphone's endpoint)",
      rings: "your phone rings",
    },
  };
  const L = LABELS[document.documentElement.lang] || LABELS.en;
  const $ = (id) => document.getElementById(id);
  const board = window.callflowBoard;
  if (!board) return;
  $("sv-title").textContent = L.title;
  $("sv-approvals-title").textContent = L.approvals;
  $("sv-acw-title").textContent = L.acw;

  const approvals = new Map();  // agent id -> li
  const asks = new Map();  // agent id -> {li, p}
  const clock = (epoch) => new Date(epoch * 1000).toLocaleTimeString("en-GB");
  const mayAct = () => !!(board.who() && board.who().may_act);

  function row(list, map, id, text, buttons) {
    let li = map.get(id);
    if (!li) {
      li = document.createElement("li");
      li.dataset.agent = id;
      $(list).appendChild(li);
      map.set(id, li);
    }
    li.textContent = "";
    const span = document.createElement("span");
    span.className = "what";
    span.textContent = text;
    li.appendChild(span);
    if (mayAct()) {
      for (const [action, label] of buttons) {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.action = action;
        b.textContent = label;
        li.appendChild(b);
      }
    }
    return li;
  }
  function drop(map, id) {
    const li = map.get(id);
    if (li) { li.remove(); map.delete(id); }
  }

  board.on("snapshot", () => {
    for (const id of [...approvals.keys()]) drop(approvals, id);
    for (const id of [...asks.keys()]) drop(asks, id);
  });

  board.on("agent", (p) => {
    const id = p.agent_id;
    if (p.state === "busy" && p.approval_pending) {
      row("sv-approvals", approvals, id, id + " · " + p.reason + " · " + L.since + " " +
          clock(p.since_epoch), [["approve_absence", L.approve], ["refuse_absence", L.refuse]]);
    } else {
      drop(approvals, id);
    }
    const ask = p.acw_extend_request;
    if (p.state === "acw" && ask && ask.status === "open") {
      const li = row("sv-acw", asks, id, id + " · " + (ask.reason || "—") + " · " + L.since +
                     " " + clock(ask.asked_epoch), [["grant_acw", L.grant], ["refuse_acw", L.refuse]]);
      li.dataset.deadline = String(p.acw_deadline_epoch || "");
    } else {
      drop(asks, id);
    }
  });

  async function answer(ev) {
    const b = ev.target;
    if (b.tagName !== "BUTTON" || !b.dataset.action) return;
    const id = b.closest("li").dataset.agent;
    b.disabled = true;
    try {
      await board.api("POST", "/api/v1/board/agents/" + encodeURIComponent(id) + "/" +
                      b.dataset.action);
      board.toast(id + ": " + b.textContent);
    } catch (e) {
      b.disabled = false;
      board.toast(id + ": " + e.message);
    }
  }
  $("sv-approvals").addEventListener("click", answer);
  $("sv-acw").addEventListener("click", answer);

  // --- escalations: listen / whisper / barge from the alarm -----------------------------------
  board.on("alarm", (a, li) => {
    if (a.kind !== "escalation") return;
    const d = a.detail || {};
    li.classList.add("escalation");
    li.dataset.agent = d.agent_id || "";
    li.dataset.callId = d.call_id || "";
    li.dataset.channel = d.channel || "";
    const modes = [["listen", L.listen]];
    if (mayAct()) modes.push(["whisper", L.whisper], ["barge", L.barge]);
    const who = board.who();
    if (!who || !["supervisor", "admin", "qa"].includes(who.role)) return;
    const box = document.createElement("span");
    box.className = "monitor";
    for (const [mode, label] of modes) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.mode = mode;
      b.textContent = label;
      box.appendChild(b);
    }
    li.appendChild(box);
  });
  $("alarms").addEventListener("click", async (ev) => {
    const b = ev.target;
    if (b.tagName !== "BUTTON" || !b.dataset.mode) return;
    const li = b.closest("li");
    const phone = board.phone();
    if (!phone) { board.toast(L.phoneFirst); return; }
    b.disabled = true;
    try {
      await board.api("POST", "/api/v1/board/agents/" + encodeURIComponent(li.dataset.agent) +
                      "/monitor", {mode: b.dataset.mode, phone});
      board.toast(b.textContent + " " + li.dataset.agent + ": " + L.rings);
    } catch (e) {
      board.toast(li.dataset.agent + ": " + e.message);
    } finally {
      b.disabled = false;
    }
  });
}());
