/* The Integrations page: vault settings, Obsidian export and sync (last result, conflicts
   with both versions and keep-vault / keep-library), Readwise upload and API import with
   the per-highlight results, and the review queue. Everything goes through
   /api/integrations; live job updates arrive as "rhizome:job" window events (app.js). */
(function () {
  "use strict";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var VAULT_TYPES = { obsidian_export: true, obsidian_sync: true };
  var STATUS_TEXT = { pending: "Pending", processing: "Processing", pausing: "Pausing…", paused: "Paused",
    retrying: "Retrying", failed: "Failed", cancelling: "Cancelling…", cancelled: "Cancelled", completed: "Completed" };

  function toast(message, bad) {
    var box = $("#toasts");
    if (!box) return;
    var e = document.createElement("div");
    e.className = "toast" + (bad ? " bad" : "");
    e.textContent = message;
    box.appendChild(e);
    setTimeout(function () { e.remove(); }, bad ? 8000 : 3500);
  }

  function call(method, url, body, isForm) {
    var opts = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      if (isForm) { opts.body = body; } else {
        opts.headers["Content-Type"] = "application/json";
        opts.body = JSON.stringify(body);
      }
    }
    return fetch(url, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
        if (!res.ok) {
          var e = (data && data.error) || { message: res.status + " " + res.statusText };
          throw new Error(e.message + (e.hint ? " " + e.hint : ""));
        }
        return data;
      });
    });
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function button(label, cls, onClick) {
    var b = el("button", { type: "button", "class": cls || "small" }, label);
    b.addEventListener("click", onClick);
    return b;
  }

  function countsText(counts) {
    return Object.keys(counts || {}).filter(function (k) { return counts[k]; })
      .map(function (k) { return counts[k] + " " + k.replace("_", " "); }).join(" · ");
  }

  // --- job rows -------------------------------------------------------------------------------
  function resultText(job) {
    var out = job.output || {};
    if (job.status === "failed" && job.error_message) return job.error_message;
    if (job.job_type === "readwise_import" && out.counts) {
      return countsText(out.counts) + " · " + (out.books_matched || 0) + " of " + ((out.books || []).length) + " books found";
    }
    if (out.counts) return countsText(out.counts);
    return "";
  }

  function jobRow(job, table) {
    var body = $(table + " tbody");
    if (!body) return;
    var row = body.querySelector('tr[data-job-id="' + job.id + '"]');
    if (!row) {
      row = el("tr", { "data-job-id": job.id, "data-job-type": job.job_type });
      var t = el("td");
      t.appendChild(el("a", { href: "/jobs/" + job.id }, job.title || job.type_label || job.job_type));
      row.appendChild(t);
      row.appendChild(el("td", { "class": "job-status" }));
      var p = el("td", { "class": "job-progress" });
      var bar = el("div", { "class": "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": "progress" });
      bar.appendChild(el("div", { "class": "fill", style: "width: 0%" }));
      p.appendChild(bar);
      p.appendChild(el("span", { "class": "small details" }));
      row.appendChild(p);
      row.appendChild(el("td", { "class": "small contents" }));
      body.insertBefore(row, body.firstChild);
    }
    var label = job.status_label || job.status;
    var status = row.querySelector(".job-status");
    status.textContent = "";
    status.appendChild(el("span", { "class": "status status-" + label, "data-status": label }, STATUS_TEXT[label] || label));
    var pct = job.status === "completed" ? 100 : Number(job.percent || 0);
    row.querySelector(".fill").style.width = pct + "%";
    row.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(pct)));
    row.querySelector(".details").textContent = job.status === "completed" ? "" : (job.details || "");
    if (job.output || job.status === "failed") row.querySelector(".contents").textContent = resultText(job);
  }

  // --- Obsidian -------------------------------------------------------------------------------
  function renderLastSync(sync) {
    var box = $("#last-sync");
    box.textContent = "";
    if (!sync || !sync.output) { box.appendChild(el("p", { "class": "empty" }, "No sync yet.")); return; }
    var out = sync.output;
    box.appendChild(el("p", { id: "last-sync-counts" }, countsText(out.counts) || "nothing to do"));
    var rec = out.highlight_recovery || {};
    if (rec.matched || rec.needs_review || rec.unmatched) {
      box.appendChild(el("p", {}, "Highlights after edits: " + countsText(rec)));
    }
    var list = el("ul", { "class": "int-list", id: "last-sync-notes" });
    (out.notes || []).forEach(function (n) {
      var li = el("li", { "data-status": n.status });
      li.appendChild(el("span", { "class": "int-title" }, (n.title || n.note) + " "));
      li.appendChild(el("span", { "class": "tag" }, n.status));
      if (n.direction) li.appendChild(el("span", { "class": "small muted" }, " " + n.direction));
      if (n.message) li.appendChild(el("div", { "class": "small muted" }, n.message));
      if (n.highlights) li.appendChild(el("div", { "class": "small" }, "highlights: " + countsText(n.highlights)));
      list.appendChild(li);
    });
    box.appendChild(list);
  }

  function resolve(documentId, keep) {
    return call("POST", "/api/integrations/obsidian/sync", { resolve: [{ document_id: documentId, keep: keep }] })
      .then(function (d) {
        jobRow(d.job, "#vault-jobs");
        toast("Resolving: keeping the " + (keep === "vault" ? "vault's" : "library's") + " version");
      }, function (err) { toast(err.message, true); });
  }

  function showVersions(c) {
    call("GET", "/api/integrations/obsidian/conflicts/" + c.document_id).then(function (d) {
      var v = d.conflict;
      $("#versions-title").textContent = "Both versions of " + (v.title || v.note);
      $("#version-vault").textContent = v.vault === null ? "(the vault is not visible on this machine)" : v.vault;
      $("#version-library").textContent = v.library === null ? "(no markdown)" : v.library;
      var dialog = $("#versions");
      dialog.returnValue = "";
      dialog.onclose = function () {
        if (dialog.returnValue === "vault" || dialog.returnValue === "library") resolve(c.document_id, dialog.returnValue);
      };
      dialog.showModal();
    }, function (err) { toast(err.message, true); });
  }

  function renderConflicts(conflicts) {
    var list = $("#conflicts");
    list.textContent = "";
    conflicts.forEach(function (c) {
      var li = el("li", { "class": "conflict", "data-document-id": c.document_id });
      li.appendChild(el("div", { "class": "int-title" }, c.title || c.note_path));
      li.appendChild(el("div", { "class": "small muted" }, c.note_path));
      if (c.message) li.appendChild(el("div", { "class": "small" }, c.message));
      var actions = el("div", { "class": "int-actions" });
      actions.appendChild(button("Show both", "small secondary show-both", function () { showVersions(c); }));
      actions.appendChild(button("Keep vault", "small keep-vault", function () { resolve(c.document_id, "vault"); }));
      actions.appendChild(button("Keep library", "small keep-library", function () { resolve(c.document_id, "library"); }));
      li.appendChild(actions);
      list.appendChild(li);
    });
    $("#conflict-count").textContent = String(conflicts.length);
    $("#conflicts-empty").hidden = conflicts.length > 0;
  }

  function loadObsidian() {
    return call("GET", "/api/integrations/obsidian").then(function (d) {
      $("#note-count").textContent = String(d.notes || 0);
      $("#note-counts").textContent = countsText(d.counts);
      renderConflicts(d.conflicts || []);
      var jobs = (d.exports || []).concat(d.syncs || []).sort(function (a, b) {
        return String(a.created_at).localeCompare(String(b.created_at));
      });
      jobs.forEach(function (j) { jobRow(j, "#vault-jobs"); });
      var done = (d.syncs || []).filter(function (j) { return j.status === "completed"; });
      renderLastSync(done[0]);
    }, function (err) { toast(err.message, true); });
  }

  var vaultForm = $("#vault-form");
  vaultForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = {
      vault_path: $("#vault-path").value.trim(),
      subfolder: $("#vault-subfolder").value.trim() || null,
      vault_name: $("#vault-name").value.trim() || null,
      export_highlights: vaultForm.elements.export_highlights.checked,
      export_connections: vaultForm.elements.export_connections.checked,
      check: !vaultForm.elements.no_check.checked
    };
    call("PUT", "/api/integrations/obsidian/settings", body).then(function () {
      toast("Vault settings saved");
      $("#vault-status").textContent = "Vault settings saved.";
      $("#obsidian-export").disabled = false;
      $("#obsidian-sync").disabled = false;
      loadObsidian();
    }, function (err) { toast(err.message, true); });
  });
  $("#obsidian-export").addEventListener("click", function () {
    call("POST", "/api/integrations/obsidian/export", {}).then(function (d) {
      jobRow(d.job, "#vault-jobs"); toast("Export to the vault queued");
    }, function (err) { toast(err.message, true); });
  });
  $("#obsidian-sync").addEventListener("click", function () {
    call("POST", "/api/integrations/obsidian/sync", {}).then(function (d) {
      jobRow(d.job, "#vault-jobs"); toast("Sync queued");
    }, function (err) { toast(err.message, true); });
  });

  // --- Readwise -------------------------------------------------------------------------------
  function renderResults(job) {
    var books = $("#readwise-books");
    books.textContent = "";
    var body = $("#readwise-results tbody");
    body.textContent = "";
    if (!job) { $("#readwise-empty").hidden = false; return; }
    $("#readwise-empty").hidden = true;
    ((job.output || {}).books || []).forEach(function (b) {
      var p = el("p", { "class": "book-row", "data-book-status": b.status });
      p.appendChild(el("strong", {}, b.title));
      p.appendChild(document.createTextNode(b.author ? " by " + b.author : ""));
      p.appendChild(document.createTextNode(b.status === "matched"
        ? " → " + b.document_title + " (score " + Number(b.score).toFixed(2) + "): " + countsText(b.counts)
        : " → not in the library: " + (b.reason || "")));
      books.appendChild(p);
    });
    call("GET", "/api/integrations/readwise/highlights?job_id=" + encodeURIComponent(job.id)).then(function (d) {
      d.highlights.forEach(function (h) {
        var tr = el("tr", { "data-status": h.status });
        tr.appendChild(el("td", {}, h.text.length > 140 ? h.text.slice(0, 139) + "…" : h.text));
        tr.appendChild(el("td", {}, h.book_title));
        tr.appendChild(el("td", { "class": "rw-status-" + h.status }, h.status.replace("_", " ")));
        tr.appendChild(el("td", {}, h.reason || (h.match_method ? h.match_method + " match" : "")));
        body.appendChild(tr);
      });
    }, function (err) { toast(err.message, true); });
  }

  function loadReadwise() {
    return call("GET", "/api/integrations/readwise").then(function (d) {
      var jobs = (d.imports || []).slice().reverse();
      jobs.forEach(function (j) { jobRow(j, "#readwise-jobs"); });
      var done = (d.imports || []).filter(function (j) { return j.status === "completed"; });
      renderResults(done[0]);
    }, function (err) { toast(err.message, true); });
  }

  $("#readwise-upload").addEventListener("submit", function (e) {
    e.preventDefault();
    var file = $("#readwise-file").files[0];
    if (!file) { toast("Choose the export file.", true); return; }
    var form = new FormData();
    form.append("file", file, file.name);
    call("POST", "/api/integrations/readwise/uploads", form, true).then(function (d) {
      jobRow(d.job, "#readwise-jobs"); toast("Readwise import queued");
    }, function (err) { toast(err.message, true); });
  });
  $("#readwise-api").addEventListener("submit", function (e) {
    e.preventDefault();
    var token = $("#readwise-token").value.trim();
    var body = { full: e.target.elements.full.checked };
    if (token) body.token = token;
    call("POST", "/api/integrations/readwise/import", body).then(function (d) {
      $("#readwise-token").value = "";
      jobRow(d.job, "#readwise-jobs"); toast("Import from Readwise queued");
    }, function (err) { toast(err.message, true); });
  });

  // --- review ---------------------------------------------------------------------------------
  function decide(id, accept) {
    var body = accept ? { accept: [id] } : { reject: [id] };
    call("POST", "/api/integrations/review", body).then(function () {
      toast(accept ? "Passage accepted" : "Suggestion rejected");
      loadReview();
    }, function (err) { toast(err.message, true); });
  }

  function loadReview() {
    return call("GET", "/api/integrations/review").then(function (d) {
      var list = $("#review-list");
      list.textContent = "";
      d.highlights.forEach(function (h) {
        var li = el("li", { "class": "review-item", "data-highlight-id": h.id });
        li.appendChild(el("div", { "class": "int-title" }, h.document_title || ""));
        li.appendChild(el("div", { "class": "small muted" }, "Highlight: “" + h.text + "”"));
        var q = el("div", { "class": "int-quote suggested" });
        if (h.suggested !== null && h.suggested !== undefined) {
          q.appendChild(el("span", { "class": "ctx" }, "…" + (h.before || "")));
          q.appendChild(el("mark", {}, h.suggested));
          q.appendChild(el("span", { "class": "ctx" }, (h.after || "") + "…"));
        } else {
          q.textContent = "(no suggested passage)";
        }
        li.appendChild(q);
        if (h.match_reason) li.appendChild(el("div", { "class": "small" }, h.match_reason));
        var actions = el("div", { "class": "int-actions" });
        actions.appendChild(button("Accept", "small accept", function () { decide(h.id, true); }));
        actions.appendChild(button("Reject", "small secondary reject", function () { decide(h.id, false); }));
        li.appendChild(actions);
        list.appendChild(li);
      });
      $("#review-count").textContent = String(d.total);
      $("#review-empty").hidden = d.highlights.length > 0;
    }, function (err) { toast(err.message, true); });
  }

  // --- live updates ---------------------------------------------------------------------------
  window.addEventListener("rhizome:job", function (e) {
    var j = e.detail;
    var finished = j.status === "completed" || j.status === "failed" || j.status === "cancelled";
    if (VAULT_TYPES[j.job_type]) {
      jobRow(j, "#vault-jobs");
      if (finished) { loadObsidian(); loadReview(); }
    } else if (j.job_type === "readwise_import") {
      jobRow(j, "#readwise-jobs");
      if (finished) { loadReadwise(); loadReview(); }
    }
  });

  loadObsidian();
  loadReadwise();
  loadReview();
})();
