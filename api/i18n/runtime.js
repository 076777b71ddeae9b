/* callflow language packs (api/language.py): loaded first in every page's <head>.
 *
 * Sets document.documentElement.lang ("zh-CN" or "en") before the page's own scripts
 * run: the user's last choice (localStorage), else the deployment's default. Every UI
 * module picks its labels by that attribute. window.callflowI18n offers:
 *   t(key, vars)       the label in the page's language ({name} filled from vars);
 *   label(pair)        a server label pair ({zh, en} or {label_zh, label_en}) in it;
 *   apply(root)        fills [data-i18n] text and [data-i18n-title|-placeholder|-aria-label];
 *   adopt(lang)        after a login: the user's stored language; reloads when it differs
 *                      (true: a reload is under way, the page stops there);
 *   session            set by the page: a function answering its session token, so the
 *                      language switch (select.lang-switch) also stores the choice.
 */
(function () {
  "use strict";
  var PACKS = /*PACKS*/null;
  var DEFAULT = /*DEFAULT*/null;
  var KEY = "callflow.language";
  var ATTRS = ["title", "placeholder", "aria-label"];
  var stored = null;
  try { stored = localStorage.getItem(KEY); } catch (e) { stored = null; }
  var lang = Object.prototype.hasOwnProperty.call(PACKS, stored) ? stored : DEFAULT;
  document.documentElement.lang = lang;
  var applied = false;

  function t(key, vars) {
    var text = PACKS[lang][key];
    if (text == null) text = PACKS[DEFAULT][key];
    if (text == null) return key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, function (m, name) {
        return vars[name] == null ? m : String(vars[name]);
      });
    }
    return text;
  }

  function label(pair) {
    if (!pair) return "";
    var zh = lang === "zh-CN";
    var text = zh ? (pair.zh || pair.label_zh) : (pair.en || pair.label_en);
    return text || pair.en || pair.label_en || pair.zh || pair.label_zh || pair.code || "";
  }

  function apply(root) {
    root = root || document;
    applied = true;
    var els = root.querySelectorAll("[data-i18n]");
    for (var i = 0; i < els.length; i++) els[i].textContent = t(els[i].getAttribute("data-i18n"));
    for (var a = 0; a < ATTRS.length; a++) {
      var attr = "data-i18n-" + ATTRS[a];
      var found = root.querySelectorAll("[" + attr + "]");
      for (var j = 0; j < found.length; j++) {
        found[j].setAttribute(ATTRS[a], t(found[j].getAttribute(attr)));
      }
    }
    var switches = root.querySelectorAll("select.lang-switch");
    for (var s = 0; s < switches.length; s++) fillSwitch(switches[s]);
  }

  function remember(next) {
    try { localStorage.setItem(KEY, next); } catch (e) { /* private mode: this load only */ }
  }

  function adopt(next) {
    if (!next || !Object.prototype.hasOwnProperty.call(PACKS, next) || next === lang) return false;
    remember(next);
    location.reload();
    return true;
  }

  function fillSwitch(sel) {
    if (sel.options.length) return;
    for (var code in PACKS) {
      var o = document.createElement("option");
      o.value = code;
      o.textContent = PACKS[code]["language.name"];
      sel.appendChild(o);
    }
    sel.value = lang;
    sel.addEventListener("change", function () { choose(sel.value, sel); });
  }

  function choose(next, sel) {
    if (!Object.prototype.hasOwnProperty.call(PACKS, next)) return;
    var token = typeof api.session === "function" ? api.session() : "";
    var done = function () { remember(next); location.reload(); };
    if (!token) { done(); return; }
    sel.disabled = true;
    fetch("/api/v1/session/language", {
      method: "PUT", body: JSON.stringify({language: next}),
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
    }).then(done, done);  // stored or not (a deployment token has no user), this page switches
  }

  var api = {lang: lang, languages: Object.keys(PACKS), t: t, label: label, apply: apply,
             adopt: adopt, choose: choose, session: null};
  window.callflowI18n = api;
  document.addEventListener("DOMContentLoaded", function () { if (!applied) apply(document); });
}());
