/* A customer's class on the supervisor board (issue 19, STD-123).
 *
 * Its own file, as the ticket backlog (tickets.js): it reads the board's session token
 * (sessionStorage, as board.js keeps it). The class picks the row of the Policy's
 * deadline table the customer's next tickets run; tickets already logged keep theirs.
 * The panel shows only to the roles the API lets change a class (supervisor, admin,
 * department manager): it asks GET /api/v1/customer-classes when the board is shown and
 * stays hidden on a 403. Find a customer by a number they call from, pick a class, save
 * (PUT /api/v1/customers/<id>/class, audited on the server). Every label is from the
 * language packs (board.customers.*); every value from the server is shown as text.
 */
(function () {
  "use strict";
  const TOKEN_KEY = "callflow.board.token";
  const I18N = window.callflowI18n;
  const t = I18N.t;
  const $ = (id) => document.getElementById(id);
  let customer = null;  // the customer found, as the server answered

  async function call(method, path, body) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = {"Authorization": "Bearer " + token};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {method, headers,
                               body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (err) {
      return {status: 0, data: null, message: String(err && err.message || err)};
    }
    let data = null;
    try { data = await res.json(); } catch (err) { data = null; }
    const d = data && data.detail;
    const message = d && typeof d === "object" ? (d.message || d.error || "") : "";
    return {status: res.status, data, message: message || res.statusText || String(res.status)};
  }

  function status(text, bad) {
    const line = $("customers-status");
    line.textContent = text || "";
    line.classList.toggle("alert", !!bad);
  }

  function whoText(c) {
    return [c.title, c.surname].filter(Boolean).join(" ") + " (" + (c.numbers || []).join(", ") + ")";
  }

  function fillClasses(classes) {
    const select = $("customers-class").elements.customer_class;
    select.replaceChildren(...classes.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;  // the Policy's class names
      return option;
    }));
  }

  /** Show the panel if this login may set classes (the server decides). */
  async function probe() {
    const panel = $("customers-panel");
    const board = $("board-view");
    if (!panel || !board || board.hidden || !sessionStorage.getItem(TOKEN_KEY)) return;
    const r = await call("GET", "/api/v1/customer-classes");
    if (r.status !== 200) { panel.hidden = true; return; }
    fillClasses(r.data.classes || []);
    panel.hidden = false;
  }

  async function onFind(ev) {
    ev.preventDefault();
    const number = ev.target.elements.number.value.trim();
    customer = null;
    $("customers-class").hidden = true;
    status("");
    const r = await call("GET", "/api/v1/customer-classes?number=" + encodeURIComponent(number));
    if (r.status === 404) { status(t("board.customers.none", {number}), true); return; }
    if (r.status !== 200) { status(r.message, true); return; }
    fillClasses(r.data.classes || []);
    customer = r.data.customer;
    $("customers-who").textContent = whoText(customer);
    $("customers-class").elements.customer_class.value = customer.customer_class;
    $("customers-class").hidden = false;
  }

  async function onSave(ev) {
    ev.preventDefault();
    if (!customer) return;
    const form = ev.target;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const r = await call("PUT", "/api/v1/customers/" + encodeURIComponent(customer.customer_id)
                         + "/class", {customer_class: form.elements.customer_class.value});
    button.disabled = false;
    if (r.status !== 200) { status(r.message, true); return; }
    customer = r.data.customer;
    status(t("board.customers.saved", {who: whoText(customer), old: r.data.old,
                                       new: customer.customer_class}));
  }

  $("customers-find").addEventListener("submit", onFind);
  $("customers-class").addEventListener("submit", onSave);
  const boardView = $("board-view");
  if (boardView) {
    new MutationObserver(probe).observe(boardView, {attributes: true,
                                                    attributeFilter: ["hidden"]});
  }
  probe();
})();
