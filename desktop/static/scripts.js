/* callflow agent desktop: the script panel (STD-019..STD-036; docs/agent-protocol.md,
 * "The script panel").
 *
 * The words come from the server (hello.script_panel, then a script_panel frame after
 * each "address" request): the standard phrases by call phase, in the session's language,
 * with the caller's address form already filled in. This file only shows them: it opens
 * the phases the server names for the agent's state (by_state: ringing -> greeting,
 * on_hold -> hold, acw -> closing, ...), lets the agent browse the others, sends the
 * surname field as an "address" request, and copies / marks a phrase used on click.
 * It follows desktop.js through window.callflowDesk: onFrame (every server frame) and
 * onRender (agent state and call after each change); it sends with callflowDesk.send.
 * Labels follow <html lang> ("zh-CN" or "en").
 * window.callflowScripts.setCaller({surname, title}) pre-fills the surname field (e.g.
 * from a customer record) and sends it like the agent's typing.
 */
(function () {
  "use strict";

  const LABELS = {
    "zh-CN": {
      title: "话术", surname: "客户姓氏", salutation: "称谓", declined: "客户不愿透露姓氏",
      address: "称呼", offered: "当前推荐", copy: "点击复制并标记已用", used: "已用",
      copied: "已复制", forbidden: "服务禁用语 (STD-036)", browse: "其他阶段",
      titles: {"": "未知", mr: "先生", ms: "女士", miss: "小姐", child: "小朋友"},
      phases: {"greeting": "问候", "verification": "确认来电人", "information": "解答与说明", "hold": "等候", "refusal": "无法办理", "follow_up": "记录与转交", "courtesy": "礼貌回应", "calming": "安抚与感谢", "apology": "致歉", "closing": "结束语"},
    },
    "en": {
      title: "Scripts", surname: "caller's surname", salutation: "title",
      declined: "caller declined to give the surname", address: "address as",
      offered: "offered now", copy: "click to copy and mark used", used: "used",
      copied: "copied", forbidden: "Never say (STD-036)", browse: "other phases",
      titles: {"": "not known", mr: "Mr", ms: "Ms", miss: "Miss", child: "child"},
      phases: {"greeting": "Greeting", "verification": "Who is calling", "information": "Answering", "hold": "Hold and wait", "refusal": "Cannot be done", "follow_up": "Note and pass on", "courtesy": "Courtesy replies", "calming": "Calming and thanks", "apology": "Apology", "closing": "Closing"},
    },
  };
  const ADDRESS_DELAY_MS = 300;  // one request per pause in typing, not per key
  const $ = (id) => document.getElementById(id);
  const label = (key) => {
    const lang = document.documentElement.lang === "en" ? "en" : "zh-CN";
    return LABELS[lang][key];
  };

  const sp = {
    panel: null,      // the last script panel from the server
    state: "",        // the agent's state
    callId: "",       // the call the address and the "used" marks belong to
    chosen: "",       // a phase the agent opened by hand (until the state changes)
    used: new Set(),  // ids of scripts used on this call
    timer: 0,
    sent: "",         // the last address sent, as JSON
  };

  function setLabels() {
    $("scripts-title").textContent = label("title");
    $("scripts-surname-label").firstChild.textContent = label("surname") + " ";
    $("scripts-salutation-label").firstChild.textContent = label("salutation") + " ";
    $("scripts-declined-label").lastChild.textContent = " " + label("declined");
    $("scripts-forbidden-title").textContent = label("forbidden");
    const select = $("scripts-salutation");
    if (select.options.length === 0) {
      for (const [code, text] of Object.entries(label("titles"))) {
        const o = document.createElement("option");
        o.value = code;
        o.textContent = text;
        select.appendChild(o);
      }
    }
  }

  function offeredPhases() {
    return (sp.panel && sp.panel.by_state[sp.state]) || [];
  }
  function currentPhase() {
    if (sp.chosen) return sp.chosen;
    const offered = offeredPhases();
    if (offered.length) return offered[0];
    return sp.panel && sp.panel.phases.length ? sp.panel.phases[0].id : "";
  }

  function render() {
    const p = sp.panel;
    if (!p) return;
    setLabels();
    const words = document.createElement("span");
    words.className = "script-words";  // spoken to the caller: the session's language
    words.textContent = p.address;
    $("scripts-address").replaceChildren(label("address") + ": ", words);
    const phase = currentPhase();
    const offered = offeredPhases();
    const tabs = $("scripts-phases");
    tabs.textContent = "";
    for (const ph of p.phases) {
      const b = document.createElement("button");
      b.type = "button";
      // the phase is a label of the page's language; its phrases stay in the language
      // spoken to callers (the session's, like the opening)
      b.textContent = label("phases")[ph.id] || ph.id;
      b.dataset.phase = ph.id;
      b.className = "phase" + (ph.id === phase ? " current" : "") +
        (offered.includes(ph.id) ? " offered" : "");
      if (offered.includes(ph.id)) b.title = label("offered");
      b.setAttribute("aria-pressed", ph.id === phase ? "true" : "false");
      tabs.appendChild(b);
    }
    const list = $("scripts-list");
    list.dataset.phase = phase;
    list.textContent = "";
    for (const s of p.scripts) {
      if (s.phase !== phase) continue;
      const li = document.createElement("li");
      li.dataset.id = s.id;
      li.title = label("copy") + (s.note ? " — " + s.note : "");
      li.className = "script-item" + (sp.used.has(s.id) ? " used" : "");
      const text = document.createElement("span");
      text.className = "script-text";
      text.textContent = s.text;
      const cite = document.createElement("small");
      cite.className = "script-cite";
      cite.textContent = s.std.join(" ") + " · " + s.seed +
        (sp.used.has(s.id) ? " · " + label("used") : "");
      li.appendChild(text);
      li.appendChild(cite);
      list.appendChild(li);
    }
    const forbidden = $("scripts-forbidden");
    if (forbidden.children.length !== p.forbidden.length) {
      forbidden.textContent = "";
      for (const f of p.forbidden) {
        const li = document.createElement("li");
        li.textContent = f.text;
        li.title = f.seed;
        forbidden.appendChild(li);
      }
    }
    $("scripts-panel").hidden = false;
  }

  // --- the address (STD-020): the server fills it into the scripts -----------------------
  function addressFields() {
    return {surname: $("scripts-surname").value.trim(), title: $("scripts-salutation").value,
            declined: $("scripts-declined").checked};
  }
  function sendAddress() {
    clearTimeout(sp.timer);
    const fields = addressFields();
    const key = JSON.stringify(fields);
    if (key === sp.sent || !window.callflowDesk) return;
    sp.sent = key;
    window.callflowDesk.send(Object.assign({type: "address"}, fields));
  }
  function addressSoon() {
    clearTimeout(sp.timer);
    sp.timer = setTimeout(sendAddress, ADDRESS_DELAY_MS);
  }
  $("scripts-surname").addEventListener("input", addressSoon);
  $("scripts-salutation").addEventListener("change", sendAddress);
  $("scripts-declined").addEventListener("change", sendAddress);

  function newCall(callId) {
    sp.callId = callId;
    sp.used = new Set();
    $("scripts-surname").value = "";
    $("scripts-salutation").value = "";
    $("scripts-declined").checked = false;
    if (sp.sent && sp.sent !== JSON.stringify(addressFields())) sendAddress();
  }

  // another panel that knows the caller (a customer record) fills the field the same way
  window.callflowScripts = {
    setCaller(caller) {
      $("scripts-surname").value = (caller && caller.surname) || "";
      $("scripts-salutation").value = (caller && caller.title) || "";
      sendAddress();
    },
  };

  // --- picking a phrase --------------------------------------------------------------------
  $("scripts-phases").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-phase]");
    if (!b) return;
    sp.chosen = b.dataset.phase === (offeredPhases()[0] || "") ? "" : b.dataset.phase;
    render();
  });
  $("scripts-list").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-id]");
    if (!li) return;
    const text = li.querySelector(".script-text").textContent;
    sp.used.add(li.dataset.id);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).catch(() => {});
    }
    $("scripts-copied").textContent = label("copied") + ": " + text;
    render();
  });

  // --- desktop.js hooks ----------------------------------------------------------------------
  window.callflowDesk.onFrame((f) => {
    if (f.type === "hello" && f.script_panel) {
      sp.panel = f.script_panel;
      sp.sent = JSON.stringify({surname: "", title: "", declined: false});
      render();
      sendAddress();  // after a reconnect: the field still holds this call's caller
    } else if (f.type === "script_panel") {
      sp.panel = f;
      render();
    }
  });
  window.callflowDesk.onRender((d) => {
    const state = d.agent ? d.agent.state : "";
    const callId = (d.agent && d.agent.call_id) || (d.call && d.call.uniqueid) || "";
    if (callId && callId !== sp.callId) newCall(callId);
    if (state !== sp.state) {
      sp.state = state;
      sp.chosen = "";  // a new state offers its own phases again
    }
    render();
  });
}());
