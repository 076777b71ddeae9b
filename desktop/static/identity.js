/* The identity panel of the agent desktop (issue 18, STD-077/STD-078).
 *
 * For the call offered to or answered by this agent: the customer's header (surname and
 * title, to address them), the identity status (PIN keyed in the IVR, or not), and the
 * personal fields hidden until the caller is verified. "Verified by questions" marks the
 * caller verified after the agent asked the business's questions; "Reveal" fetches the
 * hidden fields (the server refuses before verification and audits every reveal).
 * "Ask for the PIN" (a known customer with a PIN, not verified, while talking) sends the
 * websocket request {"type": "identity_pin"}: the caller keys the PIN to the IVR while
 * the agent hears hold music, then is back; the outcome arrives as an "identity" message.
 * REST: /api/v1/identity/calls/{id}[/verify|/reveal] with the desktop's session token;
 * status changes arrive as "identity" messages on the agent's topic.
 */
(function () {
  "use strict";
  const LABELS = {
    "zh-CN": {
      title: "身份核实", status: "状态", verify: "已通过问题核实", reveal: "显示客户资料",
      unknown: "来电号码不是已登记客户", pinTries: "密码输入次数",
      unverified: "未核实", "verified:pin": "已核实(密码)",
      "verified:questions": "已核实(问题)", failed: "核实失败",
      account: "账号", address: "地址", id_tail: "证件尾号", given_name: "名字",
      numbers: "电话", hidden: "(核实后可见)", refused: "操作被拒绝",
      askPin: "请客户输入密码", asking: "客户正在输入密码(您听到等待音乐),稍后回到通话",
    },
    en: {
      title: "Identity", status: "Status", verify: "Verified by questions",
      reveal: "Reveal customer data", unknown: "The caller's number is no known customer's",
      pinTries: "PIN entries", unverified: "unverified", "verified:pin": "verified (PIN)",
      "verified:questions": "verified (questions)", failed: "verification failed",
      account: "Account", address: "Address", id_tail: "ID number (last digits)",
      given_name: "Given name", numbers: "Numbers", hidden: "(shown once verified)",
      refused: "Refused",
      askPin: "Ask the caller for their PIN",
      asking: "The caller is keying their PIN (you hear hold music); they come back to you",
    },
  };
  const lang = document.documentElement.lang === "zh-CN" ? "zh-CN" : "en";
  const L = LABELS[lang];
  const $ = (id) => document.getElementById(id);
  let shown = "";   // the call the panel shows
  let view = null;  // GET /api/v1/identity/calls/{id}

  $("identity-title").textContent = L.title;
  $("identity-status-label").textContent = L.status;
  $("identity-verify").textContent = L.verify;
  $("identity-reveal").textContent = L.reveal;
  $("identity-ask-pin").textContent = L.askPin;
  $("identity-asking").textContent = L.asking;
  let asked = false;  // our identity_pin request awaits its reply

  function desk() { return window.callflowDesk; }

  async function request(method, path, body) {
    const init = {method, headers: {Authorization: "Bearer " + desk().token()}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const reply = await res.json().catch(() => ({}));
    if (!res.ok) {
      const d = reply.detail || {};
      throw new Error(L.refused + ": " + (d.message || d.error || res.status));
    }
    return reply;
  }

  function render(fields) {
    const panel = $("identity-panel");
    panel.hidden = !shown || !view;
    if (panel.hidden) return;
    const c = view.customer;
    $("identity-customer").textContent = c ? (c.surname + (c.title || "")) : L.unknown;
    $("identity-status").textContent = L[view.status] || view.status;
    $("identity-pin").textContent = view.pin_attempts ?
      "(" + L.pinTries + " " + view.pin_attempts + ")" : "";
    const list = $("identity-fields");
    list.replaceChildren();
    for (const name of view.hidden) {
      const dt = document.createElement("dt");
      dt.textContent = L[name] || name;
      const dd = document.createElement("dd");
      const value = fields ? fields[name] : undefined;
      dd.textContent = value === undefined ? L.hidden : [].concat(value).join(", ");
      list.append(dt, dd);
    }
    const verified = view.status.startsWith("verified");
    $("identity-verify").hidden = !c || verified || view.method === "pin";
    $("identity-reveal").hidden = !c || !verified;
    const talking = (desk().agent() || {}).state === "on_call";
    $("identity-ask-pin").hidden = !c || !view.has_pin || verified || !talking ||
      view.status === "failed" || view.method === "questions" || asked;
    if (verified || view.status === "failed") $("identity-asking").hidden = true;
  }

  async function load(callId) {
    shown = callId;
    view = null;
    $("identity-error").textContent = "";
    if (callId) {
      try {
        const got = await request("GET", "/api/v1/identity/calls/" + encodeURIComponent(callId));
        if (shown === callId) view = got;
      } catch (err) {
        $("identity-error").textContent = err.message;
      }
    }
    render(null);
  }

  desk().onPayload((p) => {
    const callId = desk() ? desk().callId() : "";
    if (p.type === "identity" && p.call_id === shown && view) {
      view.status = p.status;
      view.pin_attempts = p.pin_attempts;
      $("identity-asking").hidden = true;  // the PIN step (if any) is over
      return render(null);
    }
    if (callId !== shown) load(callId);
  });

  // the agent's state changed (desktop.js rendered it): the ask is offered while talking
  desk().onRender(() => { if (view) render(null); });

  // the reply to "ask for the PIN": an ack (the caller is being asked) or one refusal
  desk().onFrame((f) => {
    if (!asked || f.request !== "identity_pin" || (f.type !== "ack" && f.type !== "error")) {
      return;
    }
    asked = false;
    if (f.type === "ack") {
      $("identity-asking").hidden = false;
      $("identity-error").textContent = "";
    } else {
      $("identity-error").textContent = L.refused + ": " + (f.detail || f.error);
    }
    if (view) render(null);
  });

  $("identity-ask-pin").addEventListener("click", () => {
    desk().send({type: "identity_pin"});
    asked = true;  // the reply names its request (ack/error "request": "identity_pin")
    $("identity-ask-pin").hidden = true;
  });

  $("identity-verify").addEventListener("click", async () => {
    try {
      const got = await request("POST", "/api/v1/identity/calls/" +
        encodeURIComponent(shown) + "/verify", {method: "questions"});
      view.status = got.status;
      $("identity-error").textContent = "";
      render(null);
    } catch (err) { $("identity-error").textContent = err.message; }
  });

  $("identity-reveal").addEventListener("click", async () => {
    try {
      const got = await request("POST", "/api/v1/identity/calls/" +
        encodeURIComponent(shown) + "/reveal", {fields: []});
      $("identity-error").textContent = "";
      render(got.fields);
    } catch (err) { $("identity-error").textContent = err.message; }
  });
})();
