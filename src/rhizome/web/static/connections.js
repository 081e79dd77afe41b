/* Connections: the user's decisions (validate / star / reject, and undo) on the document
   page and the Connections page, live filters, and queuing a reprocess job. Plain script,
   no dependencies; works beside app.js (which swaps the document page in and out). */
(function () {
  "use strict";

  function toast(message, bad) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast" + (bad ? " bad" : "");
    el.textContent = message;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, bad ? 8000 : 3000);
  }

  function api(method, url, body) {
    var opts = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) {
          var err = (data && data.error) || { message: res.status + " " + res.statusText };
          throw new Error(err.message + (err.hint ? " " + err.hint : ""));
        }
        return data;
      });
    });
  }

  // The panel a card lives in, re-rendered by the server after each change.
  function refreshPanel(panel) {
    var url = panel && panel.dataset.panelUrl;
    if (!url) return Promise.resolve();
    url += (url.indexOf("?") >= 0 ? "&" : "?") + "partial=1";
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        if (html === null) return;
        if (panel.id === "connections-panel") {
          var box = document.createElement("div");
          box.innerHTML = html;
          var fresh = box.querySelector("#connections-panel");
          if (fresh) panel.replaceWith(fresh);
        } else {
          panel.innerHTML = html;
        }
      });
  }

  var DONE = {
    validate: "Validated", unvalidate: "Validation removed", star: "Starred",
    unstar: "Star removed", reject: "Rejected: hidden for good", unreject: "Rejection undone",
    reset: "Decisions removed"
  };

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-conn-action]");
    if (!btn || btn.disabled) return;
    ev.preventDefault();
    var card = btn.closest("[data-connection-id]");
    if (!card) return;
    var panel = btn.closest("[data-panel-url]");
    var action = btn.dataset.connAction;
    btn.disabled = true;
    api("POST", "/api/connections/" + encodeURIComponent(card.dataset.connectionId) + "/" + action)
      .then(function () { toast(DONE[action] || "Done"); return refreshPanel(panel); },
        function (err) { toast(err.message, true); btn.disabled = false; });
  });

  document.addEventListener("submit", function (ev) {
    var form = ev.target.closest("form[data-reprocess]");
    if (!form) return;
    ev.preventDefault();
    var mode = form.elements.mode.value;
    var body = { mode: mode, backup_first: form.elements.backup_first.checked };
    if (form.dataset.documentId) body.document_ids = [form.dataset.documentId];
    var out = form.querySelector(".reprocess-result");
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    api("POST", "/api/connections/reprocess", body).then(function (data) {
      var job = data.job;
      out.innerHTML = "";
      var a = document.createElement("a");
      a.href = "/jobs/" + job.id;
      a.className = "reprocess-job";
      a.textContent = "Queued: see the job";
      out.appendChild(a);
      toast("Reprocess (" + mode + ") queued");
    }, function (err) { toast(err.message, true); }).then(function () { button.disabled = false; });
  });

  // The Connections page: a filter change applies at once.
  var filters = document.getElementById("conn-filters");
  if (filters) {
    filters.addEventListener("change", function (ev) {
      if (ev.target.name !== "min_score") filters.requestSubmit();
    });
    filters.addEventListener("submit", function () {  // clean URLs: no empty filters
      Array.prototype.forEach.call(filters.elements, function (el) {
        if (el.name && !el.value) el.disabled = true;
      });
    });
    window.addEventListener("pageshow", function () {
      Array.prototype.forEach.call(filters.elements, function (el) { el.disabled = false; });
    });
  }
  // add_new deletes nothing: no backup by default
  document.addEventListener("change", function (ev) {
    var form = ev.target.closest && ev.target.closest("form[data-reprocess]");
    if (form && ev.target.name === "mode") form.elements.backup_first.checked = ev.target.value !== "add_new";
  });
})();
