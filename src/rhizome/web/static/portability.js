/* The Import/Export page: export with live progress and a Download ZIP button, upload
   and import with the conflict dialog, and the storage scan. Live job updates arrive as
   "rhizome:job" window events from app.js (the /api/events stream). */
(function () {
  "use strict";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  function toast(message, bad) {
    var box = $("#toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast" + (bad ? " bad" : "");
    el.textContent = message;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, bad ? 8000 : 3500);
  }

  // fetch JSON; resolves {status, data} for 2xx and 409 (the conflict report), rejects otherwise
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
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok && res.status !== 409) {
          var err = (data && data.error) || { message: res.status + " " + res.statusText };
          throw new Error(err.message + (err.hint ? " " + err.hint : ""));
        }
        return { status: res.status, data: data };
      });
    });
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function fmtBytes(n) {
    if (n < 1000) return n + " B";
    var units = ["KB", "MB", "GB"], v = n;
    for (var i = 0; i < units.length; i++) { v /= 1000; if (v < 1000 || i === units.length - 1) return v.toFixed(1) + " " + units[i]; }
    return n + " B";
  }

  var STATUS_TEXT = { pending: "Pending", processing: "Processing", pausing: "Pausing…", paused: "Paused",
    retrying: "Retrying", failed: "Failed", cancelling: "Cancelling…", cancelled: "Cancelled", completed: "Completed" };

  // --- job rows (exports and imports) -------------------------------------------------------
  function jobRow(job, kind) {
    var table = $(kind === "export" ? "#exports tbody" : "#imports tbody");
    var row = $('tr.port-job[data-job-id="' + job.id + '"]', table);
    if (!row) {
      row = el("tr", { "class": "port-job", "data-job-id": job.id, "data-kind": kind });
      var title = el("td");
      title.appendChild(el("a", { href: "/jobs/" + job.id }, job.title || (kind === "export" ? "Export" : "Import")));
      row.appendChild(title);
      row.appendChild(el("td", { "class": "job-status" }));
      var prog = el("td", { "class": "job-progress" });
      var bar = el("div", { "class": "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "aria-label": "progress" });
      bar.appendChild(el("div", { "class": "fill", style: "width: 0%" }));
      prog.appendChild(bar);
      prog.appendChild(el("span", { "class": "small details" }));
      row.appendChild(prog);
      row.appendChild(el("td", { "class": "small contents" }));
      if (kind === "export") row.appendChild(el("td", { "class": "download" }));
      table.insertBefore(row, table.firstChild);
      var empty = $(kind === "export" ? "#exports-empty" : "#imports-empty");
      if (empty) empty.hidden = true;
    }
    updateRow(row, job);
    return row;
  }

  function updateRow(row, job) {
    var label = job.status_label || job.status;
    var cell = $(".job-status", row);
    cell.textContent = "";
    cell.appendChild(el("span", { "class": "status status-" + label, "data-status": label }, STATUS_TEXT[label] || label));
    var pct = Math.round(job.percent || 0);
    var bar = $(".bar", row);
    bar.setAttribute("aria-valuenow", String(pct));
    $(".fill", bar).style.width = pct + "%";
    $(".details", row).textContent = job.status === "completed" ? "" : (job.details || "");
    if (job.status === "completed" || job.status === "failed") refreshOutput(row, job.id);
  }

  function refreshOutput(row, id) {
    if (row.dataset.loaded === "1") return;
    row.dataset.loaded = "1";
    call("GET", "/api/jobs/" + id).then(function (r) {
      var job = r.data.job, out = job.output_data || {};
      var contents = $(".contents", row);
      if (job.status === "failed") {
        contents.textContent = job.error_message || "failed";
        contents.className = "small contents error-text";
        return;
      }
      if (row.dataset.kind === "export" && out.path) {
        contents.textContent = out.documents + " documents · " + out.chunks + " chunks · " + fmtBytes(out.size);
        var dl = $(".download", row);
        dl.textContent = "";
        dl.appendChild(el("a", { "class": "button", href: out.download_url, download: "" }, "Download ZIP"));
      } else if (row.dataset.kind === "import" && out.documents !== undefined) {
        contents.textContent = out.imported + " imported · " + out.skipped + " skipped · " + out.changed_documents + " changed";
        scan();
      }
    }, function () { row.dataset.loaded = ""; });
  }

  window.addEventListener("rhizome:job", function (e) {
    var j = e.detail;
    if (j.job_type !== "export_documents" && j.job_type !== "import_document") return;
    jobRow(j, j.job_type === "export_documents" ? "export" : "import");
  });

  // --- export -------------------------------------------------------------------------------
  var exportForm = $("#export-form");
  if (exportForm) {
    var all = $("#export-all");
    all.addEventListener("change", function () {
      $$('input[name="document"]', exportForm).forEach(function (b) { b.checked = all.checked; });
    });
    $$('input[name="document"]', exportForm).forEach(function (b) {
      b.addEventListener("change", function () {
        all.checked = $$('input[name="document"]', exportForm).every(function (x) { return x.checked; });
      });
    });
    exportForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var ids = $$('input[name="document"]:checked', exportForm).map(function (b) { return b.value; });
      if (!ids.length) { toast("Choose at least one document.", true); return; }
      var body = {
        document_ids: all.checked ? null : ids,
        include_highlights: exportForm.include_highlights.checked,
        include_connections: exportForm.include_connections.checked
      };
      call("POST", "/api/exports", body).then(function (r) {
        jobRow(r.data.job, "export");
        toast("Export started");
      }, function (err) { toast(err.message, true); });
    });
  }

  // --- import and the conflict dialog ------------------------------------------------------------
  var importForm = $("#import-form");
  var dialog = $("#conflict");

  function options() {
    return {
      regenerate_embeddings: importForm.regenerate_embeddings.checked,
      reprocess_connections: importForm.reprocess_connections.checked
    };
  }

  function samples(list) {
    var box = el("div");
    (list || []).forEach(function (s) { box.appendChild(el("p", { "class": "sample" }, "#" + s.index + " " + s.text)); });
    if (!list || !list.length) box.appendChild(el("p", { "class": "sample muted" }, "(none)"));
    return box;
  }

  function side(title, info, dates) {
    var col = el("div", { "class": "side" });
    col.appendChild(el("h4", {}, title));
    col.appendChild(el("p", { "class": "small" }, info.chunk_count + " chunks · " + dates));
    col.appendChild(samples(info.samples));
    return col;
  }

  function showConflict(report) {
    $("#conflict-summary").textContent = report.conflicting + " of " + report.documents +
      " documents already have chunks in your library; " + report["new"] + " are new and will be added.";
    var list = $("#conflict-list");
    list.textContent = "";
    report.conflicts.forEach(function (c) {
      var box = el("div", { "class": "conflict-doc", "data-document-id": c.document_id });
      box.appendChild(el("h3", {}, (c.title || c.document_id) + " — recommended: " + c.recommended));
      var grid = el("div", { "class": "side-by-side" });
      grid.appendChild(side("In your library", c.database, "updated " + (c.database.updated_at || "").slice(0, 19).replace("T", " ")));
      grid.appendChild(side("In the import", c["import"], "exported " + (c["import"].exported_at || "").slice(0, 19).replace("T", " ")));
      box.appendChild(grid);
      list.appendChild(box);
    });
    var pick = $('input[name="strategy"][value="' + report.recommended + '"]', dialog) || $('input[value="merge_smart"]', dialog);
    pick.checked = true;
    $("#recommended-merge").hidden = report.recommended !== "merge_smart";
    return new Promise(function (resolve) {
      dialog.onclose = function () {
        if (dialog.returnValue !== "ok") { resolve(null); return; }
        resolve($('input[name="strategy"]:checked', dialog).value);
      };
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  // POST /api/imports; on a conflict, ask for a strategy and post again
  function startImport(source) {
    var body = Object.assign({}, source, options());
    return call("POST", "/api/imports", body).then(function (r) {
      if (r.status === 409) {
        return showConflict(r.data.conflict).then(function (strategy) {
          if (!strategy) { toast("Import cancelled"); return null; }
          body.strategy = strategy;
          return call("POST", "/api/imports", body).then(function (r2) {
            if (r2.status === 409) throw new Error(r2.data.error.message);
            return r2.data.job;
          });
        });
      }
      return r.data.job;
    }).then(function (job) {
      if (job) { jobRow(job, "import"); toast("Import started"); }
      return job;
    });
  }

  if (importForm) {
    importForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var file = $("#import-file").files[0];
      if (!file) { toast("Choose a ZIP first.", true); return; }
      var form = new FormData();
      form.append("file", file, file.name);
      var button = $("#import-start");
      button.disabled = true;
      call("POST", "/api/imports/uploads", form, true).then(function (r) {
        return startImport({ upload: r.data.upload.key });
      }).then(function () { importForm.reset(); }, function (err) { toast(err.message, true); })
        .then(function () { button.disabled = false; });
    });
  }

  // --- storage scan --------------------------------------------------------------------------------
  var LABELS = { healthy: "Healthy", missing_from_db: "Missing from the database",
    missing_from_storage: "Missing from storage", out_of_sync: "Out of sync" };

  function scan() {
    var body = $("#scan tbody");
    if (!body) return Promise.resolve();
    return call("GET", "/api/admin/storage-scan").then(function (r) {
      var result = r.data.result;
      body.textContent = "";
      result.documents.forEach(function (d) {
        var tr = el("tr", { "class": "scan-row", "data-document-id": d.document_id, "data-status": d.status });
        var name = el("td");
        if (d.status === "missing_from_db") name.appendChild(el("span", {}, d.title || d.document_id));
        else name.appendChild(el("a", { href: "/documents/" + d.document_id }, d.title || d.document_id));
        tr.appendChild(name);
        tr.appendChild(el("td", { "class": "scan-" + d.status }, LABELS[d.status] || d.status));
        tr.appendChild(el("td", {}, (d.db_chunks === null ? "—" : d.db_chunks) + " / " + (d.storage_chunks === null ? "—" : d.storage_chunks)));
        var act = el("td");
        if (d.action === "import") {
          var b = el("button", { type: "button", "class": "small" }, "Import");
          b.addEventListener("click", function () {
            startImport({ document_id: d.document_id }).catch(function (err) { toast(err.message, true); });
          });
          act.appendChild(b);
        } else if (d.action === "export") {
          var x = el("button", { type: "button", "class": "small secondary" }, "Re-export");
          x.addEventListener("click", function () {
            call("POST", "/api/exports", { document_ids: [d.document_id], sync_storage: true }).then(function (r2) {
              jobRow(r2.data.job, "export"); toast("Re-export started");
            }, function (err) { toast(err.message, true); });
          });
          act.appendChild(x);
        }
        tr.appendChild(act);
        body.appendChild(tr);
      });
      var c = result.counts;
      $("#scan-summary").textContent = c.healthy + " healthy · " + c.missing_from_db + " missing from the database · " +
        c.missing_from_storage + " missing from storage · " + c.out_of_sync + " out of sync";
    }, function (err) { toast(err.message, true); });
  }

  var scanButton = $("#scan-run");
  if (scanButton) scanButton.addEventListener("click", scan);
  scan();
})();
