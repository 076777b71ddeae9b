/* callflow agent desktop: the warm (consult-first) transfer's second step (STD-049),
 * docs/agent-protocol.md "Warm (consult first)".
 *
 * transfer.js sends {"type": "transfer", "mode": "warm"}; its ack keeps the agent on the
 * call (a blind transfer's ack says "acw"), so this panel shows: the colleague's phone
 * rings, then (event consult_answered) "complete" may be pressed; "cancel" works all
 * along. consult_ended (the colleague did not answer, refused or hung up) and the acks of
 * transfer_complete / transfer_cancel close it. Once answered, "three-way conference"
 * sends transfer_conference; event conference_started turns "complete" into "leave"
 * (the caller stays with the colleague) and "cancel" into "drop the colleague". Labels in the page's language
 * (<html lang>), from LABELS; the markup (index.html #warm-panel) holds no text.
 */
(function () {
  "use strict";

  const LABELS = {
    "zh-CN": {
      title: "咨询转接", ringing: "正在呼叫同事 ", talking: "同事已接听,可完成转接:",
      complete: "完成转接", cancel: "取消,回到客户", done: "已转给同事", cancelled: "已取消,客户仍在您这里",
      ended: "同事未接通,客户仍在您这里", refused: "未执行:",
      conference: "三方通话", inConference: "三方通话中(客户、您和同事 ",
      inConferenceEnd: "):您可离开,客户留给同事;或挂断同事,客户留给您",
      leave: "离开,客户留给同事", drop: "挂断同事,客户留给您",
      reasons: {no_consult: "没有进行中的咨询", consult_not_answered: "同事尚未接听",
                not_bridged: "客户尚未接通", consult_in_progress: "已有咨询在进行",
                not_supported: "队列不能先咨询,请直接转接", in_conference: "已在三方通话中"},
    },
    en: {
      title: "Consult transfer", ringing: "calling your colleague ",
      talking: "your colleague answered; complete when ready: ",
      complete: "complete transfer", cancel: "cancel, back to the caller",
      done: "handed to your colleague", cancelled: "cancelled; the caller is with you",
      ended: "your colleague was not reached; the caller is with you", refused: "not done: ",
      conference: "three-way conference", inConference: "in a three-way conference (the caller, you and ",
      inConferenceEnd: "): leave it to your colleague, or drop your colleague",
      leave: "leave, the caller stays with your colleague",
      drop: "drop your colleague, the caller stays with you",
      reasons: {no_consult: "no consultation under way",
                consult_not_answered: "your colleague has not answered yet",
                not_bridged: "the caller is not through yet",
                consult_in_progress: "a consultation is already under way",
                not_supported: "a queue cannot be consulted: transfer now",
                in_conference: "already in a three-way conference"},
    },
  };
  const L = LABELS[document.documentElement.lang] || LABELS.en;
  const $ = (id) => document.getElementById(id);
  const text = (id, value) => { $(id).textContent = value; };

  text("warm-title", L.title);
  text("btn-warm-complete", L.complete);
  text("btn-warm-cancel", L.cancel);
  text("btn-warm-conference", L.conference);

  function show(status, canComplete, inConference) {
    $("warm-panel").hidden = false;
    $("btn-warm-complete").disabled = !canComplete;
    $("btn-warm-cancel").disabled = false;
    $("btn-warm-conference").disabled = !canComplete || inConference;
    text("btn-warm-complete", inConference ? L.leave : L.complete);
    text("btn-warm-cancel", inConference ? L.drop : L.cancel);
    text("warm-status", status);
  }
  function close(status) {
    $("btn-warm-complete").disabled = true;
    $("btn-warm-cancel").disabled = true;
    $("btn-warm-conference").disabled = true;
    text("btn-warm-complete", L.complete);
    text("btn-warm-cancel", L.cancel);
    text("warm-status", status);
  }
  function send(type) {
    if (window.callflowDesk) window.callflowDesk.send({type: type});
  }
  $("btn-warm-complete").addEventListener("click", () => send("transfer_complete"));
  $("btn-warm-cancel").addEventListener("click", () => send("transfer_cancel"));
  $("btn-warm-conference").addEventListener("click", () => send("transfer_conference"));

  function onFrame(f) {
    const p = f.type === "event" ? f.payload : null;
    if (f.type === "ack" && f.request === "transfer" && f.state !== "acw") {
      show(L.ringing + (f.destination_name || f.destination || ""), false);
    } else if (p && p.type === "consult_answered") {
      show(L.talking + p.agent_id, true);
    } else if (p && p.type === "conference_started") {
      show(L.inConference + p.agent_id + L.inConferenceEnd, true, true);
    } else if (p && p.type === "consult_ended") {
      close(L.ended);
    } else if (f.type === "ack" && f.request === "transfer_complete") {
      close(L.done);
    } else if (f.type === "ack" && f.request === "transfer_cancel") {
      close(L.cancelled);
    } else if (f.type === "error" && (f.request === "transfer_complete"
                                      || f.request === "transfer_cancel"
                                      || f.request === "transfer_conference")) {
      text("warm-status", L.refused + (L.reasons[f.error] || f.error));
    } else if (p && p.type === "agent_state" && !["on_call", "on_hold"].includes(p.state)) {
      $("warm-panel").hidden = true;
    }
  }

  if (window.callflowDesk) window.callflowDesk.onFrame(onFrame);
})();
