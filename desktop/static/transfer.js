/* callflow agent desktop: transfers (STD-049), docs/agent-protocol.md "Transfers".
 *
 * The panel shows while the agent talks on a call: a target (agent, queue, back office,
 * number), a note for the next agent, and the transfer buttons. It sends one
 * {"type": "transfer"} request over the desktop's websocket (desktop.js
 * window.callflowDesk.send) and shows the server's ack (where the caller goes) or its
 * refusal (the call stays). The case view shows the "case" event a transferred call
 * brings to the receiving desk: who handed it on, the caller, the identity status, the
 * note and the call so far. Labels in the page's language (<html lang>).
 */
(function () {
  "use strict";

  const LABELS = {
    "zh-CN": {
      title: "转接", kind: "转给", value: "工号 / 队列 / 号码", note: "给接手同事的备注",
      blind: "直接转接", warm: "先咨询再转接", agent: "座席", queue: "队列",
      backoffice: "后台部门", external: "外部号码", sent: "已转接至 ",
      refused: "未转接(通话仍在您这里):", caseTitle: "转来的来电", from: "转出座席",
      caller: "来电号码", identity: "身份核实", noteShown: "备注", talk: "通话",
      ring: "振铃", unverified: "未核实", verified: "已核实",
      reasons: {not_on_call: "当前没有通话", transfer_limit: "本通来电转接次数已达上限",
                transfer_loop: "该座席已处理过本通来电", unknown_target: "目标不存在",
                target_logged_out: "目标座席未登录", target_busy: "目标座席忙",
                not_configured: "未配置后台号码", bad_target: "号码不正确",
                not_supported: "队列不能先咨询,请直接转接", bad_frame: "输入不正确",
                nobody_free: "该队列暂无空闲座席,可直接转接到队列排队"},
    },
    en: {
      title: "Transfer", kind: "to", value: "work number / queue / number",
      note: "note for the next agent", blind: "transfer now", warm: "consult first",
      agent: "agent", queue: "queue", backoffice: "back office", external: "external number",
      sent: "transferred to ", refused: "not transferred (the call stays with you): ",
      caseTitle: "Transferred call", from: "from agent", caller: "caller",
      identity: "identity", noteShown: "note", talk: "talk", ring: "ring",
      unverified: "unverified", verified: "verified",
      reasons: {not_on_call: "you are not on a call", transfer_limit: "too many transfers",
                transfer_loop: "that agent already had this call", unknown_target: "no such target",
                target_logged_out: "that agent is logged out", target_busy: "that agent is busy",
                not_configured: "no back office configured", bad_target: "not a number",
                not_supported: "a queue cannot be consulted: transfer now",
                bad_frame: "check the target",
                nobody_free: "nobody in that queue is free: transfer now to wait in line"},
    },
  };
  const L = LABELS[document.documentElement.lang] || LABELS.en;
  const TALKING = ["on_call", "on_hold"];
  const $ = (id) => document.getElementById(id);
  const text = (id, value) => { $(id).textContent = value; };

  text("transfer-title", L.title);
  text("transfer-kind-label", L.kind);
  text("transfer-value-label", L.value);
  text("transfer-note-label", L.note);
  text("btn-transfer-blind", L.blind);
  text("btn-transfer-warm", L.warm);
  for (const option of $("transfer-kind").options) option.textContent = L[option.value];
  text("case-title", L.caseTitle);
  text("case-from-label", L.from);
  text("case-caller-label", L.caller);
  text("case-identity-label", L.identity);
  text("case-note-label", L.noteShown);

  let pending = null;  // the id of our transfer request under way

  function ask(mode) {
    const desk = window.callflowDesk;
    if (!desk) return;
    const kind = $("transfer-kind").value;
    const target = {kind: kind};
    const value = $("transfer-value").value.trim();
    if (kind !== "backoffice") target.value = value;
    text("transfer-status", "…");
    pending = mode;
    desk.send({type: "transfer", mode: mode, target: target, note: $("transfer-note").value});
  }
  $("btn-transfer-blind").addEventListener("click", () => ask("blind"));
  $("btn-transfer-warm").addEventListener("click", () => ask("warm"));
  $("transfer-kind").addEventListener("change", () => {
    $("transfer-value").disabled = $("transfer-kind").value === "backoffice";
  });

  function showCase(c) {
    text("case-from", c.from_agent);
    text("case-caller", c.caller);
    text("case-identity", L[c.identity_status] || c.identity_status);
    text("case-note", c.note || "–");
    const legs = $("case-legs");
    legs.textContent = "";
    for (const leg of c.legs) {
      const li = document.createElement("li");
      li.textContent = leg.agent_id + " · " + L.ring + " " + (leg.ring_s ?? "–") + " s · "
        + (leg.result || "…") + (leg.talk_s != null ? " · " + L.talk + " " + leg.talk_s + " s" : "");
      legs.appendChild(li);
    }
    $("case-panel").hidden = false;
  }

  function onFrame(f) {
    if (f.type === "snapshot") {
      const me = f.state && f.state.agents && f.state.agents[0];
      $("transfer-panel").hidden = !(me && TALKING.includes(me.state));
    } else if (f.type === "event" && f.payload.type === "agent_state") {
      $("transfer-panel").hidden = !TALKING.includes(f.payload.state);
      if (f.payload.state === "ready" || f.payload.state === "logged_out") {
        $("case-panel").hidden = true;
      }
    } else if (f.type === "event" && f.payload.type === "case") {
      showCase(f.payload);
    } else if (pending && f.type === "ack" && f.request === "transfer") {
      pending = null;
      // a warm transfer's ack keeps the call (warm.js shows the consultation)
      if (f.state === "acw") text("transfer-status", L.sent + (f.destination_name || f.destination));
      else text("transfer-status", "");
      $("transfer-note").value = "";
    } else if (pending && f.type === "error" && (f.request === "transfer" || !f.request)) {
      pending = null;
      text("transfer-status", L.refused + (L.reasons[f.error] || f.error));
    }
  }

  if (window.callflowDesk) window.callflowDesk.onFrame(onFrame);
})();
