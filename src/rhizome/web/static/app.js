/* Rhizome UI: live updates over /api/events (Server-Sent Events), the ProcessingDock,
   job actions with confirmations, bulk selection, uploads. No build step, no dependencies. */
(function () {
  "use strict";
  var bootEl = document.getElementById("rhizome-boot");
  var R = bootEl ? JSON.parse(bootEl.textContent) : {};
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var clockOffset = 0; // server clock minus browser clock, from each snapshot
  function now() { return Date.now() + clockOffset; }
  function ts(iso) { var t = iso ? Date.parse(iso) : NaN; return isNaN(t) ? 0 : t; }

  // --- small helpers ----------------------------------------------------------------------
  function toast(message, bad) {
    var box = $("#toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast" + (bad ? " bad" : "");
    el.textContent = message;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, bad ? 8000 : 3500);
  }

  function api(method, url, body) {
    var opts = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
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

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function duration(sec) {
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + " s";
    if (sec < 600) return Math.floor(sec / 60) + " min " + String(sec % 60).padStart(2, "0") + " s";
    if (sec < 3600) return Math.round(sec / 60) + " min";
    return Math.floor(sec / 3600) + " h " + String(Math.floor((sec % 3600) / 60)).padStart(2, "0") + " min";
  }

  function relative(iso) {
    var t = ts(iso);
    if (!t) return "";
    var s = Math.round((now() - t) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return new Date(t).toLocaleDateString();
  }

  // Run fn at most once per `gap` ms; calls in between coalesce into one trailing run.
  function throttled(fn, gap) {
    var timer = null, running = false, pending = false, last = 0;
    function run() {
      timer = null;
      if (running) { pending = true; return; }
      running = true;
      last = Date.now();
      Promise.resolve().then(fn).catch(function () {}).then(function () {
        running = false;
        if (pending) { pending = false; schedule(); }
      });
    }
    function schedule() {
      if (timer) return;
      timer = setTimeout(run, Math.max(0, gap - (Date.now() - last)));
    }
    return schedule;
  }

  // --- confirmation dialog -----------------------------------------------------------------
  function confirmAction(message, word) {
    var dialog = $("#confirm");
    if (!dialog || !dialog.showModal) return Promise.resolve(window.confirm(message));
    $("#confirm-message").textContent = message;
    var typed = $("#confirm-typed"), input = $("#confirm-input"), ok = $("#confirm-ok");
    typed.hidden = !word;
    input.value = "";
    ok.disabled = !!word;
    if (word) {
      $("#confirm-word").textContent = word;
      input.oninput = function () { ok.disabled = input.value.trim() !== word; };
    }
    return new Promise(function (resolve) {
      dialog.onclose = function () {
        resolve(dialog.returnValue === "ok" && (!word || input.value.trim() === word));
      };
      dialog.returnValue = "";
      dialog.showModal();
      (word ? input : $("#confirm-cancel")).focus();
    });
  }

  // --- job actions ----------------------------------------------------------------------------
  var ACTIONS = {
    pause: function (id) { return api("POST", "/api/jobs/" + id + "/pause"); },
    resume: function (id) { return api("POST", "/api/jobs/" + id + "/resume", { restart: false }); },
    restart: function (id) { return api("POST", "/api/jobs/" + id + "/resume", { restart: true }); },
    retry: function (id) { return api("POST", "/api/jobs/" + id + "/retry", { restart: false }); },
    "retry-restart": function (id) { return api("POST", "/api/jobs/" + id + "/retry", { restart: true }); },
    cancel: function (id) { return api("POST", "/api/jobs/" + id + "/cancel"); },
    "force-fail": function (id) { return api("POST", "/api/jobs/" + id + "/force-fail"); },
    "delete": function (id) { return api("DELETE", "/api/jobs/" + id); }
  };
  var DONE_TEXT = {
    pause: "Pause requested", resume: "Resumed", restart: "Restarted from the beginning",
    retry: "Retry queued", "retry-restart": "Retry from the beginning queued",
    cancel: "Cancel requested", "force-fail": "Marked failed", "delete": "Deleted"
  };

  function adminSummary(name, data) {
    if (!data) return "Done";
    if (typeof data.deleted === "number") return "Deleted " + plural(data.deleted, "job");
    if (typeof data.stopped === "number") return "Stopped " + plural(data.stopped, "job");
    if (typeof data.deleted_jobs === "number") return "Reset: deleted " + plural(data.deleted_jobs, "job") +
      (data.deleted_documents ? " and " + plural(data.deleted_documents, "document") : "");
    if (typeof data.released_jobs === "number") return "Released " + plural(data.released_jobs, "job") +
      ", removed " + plural(data.removed_checkpoint_files || 0, "checkpoint file");
    return "Done";
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-action]");
    if (!btn || btn.disabled) return;
    ev.preventDefault();
    var action = btn.dataset.action;
    var question = btn.dataset.confirm;
    var ask = question ? confirmAction(question, btn.dataset.confirmWord) : Promise.resolve(true);
    ask.then(function (yes) {
      if (!yes) return;
      btn.disabled = true;
      var work;
      if (action === "admin") {
        work = api("POST", "/api/admin/" + btn.dataset.admin, btn.dataset.needsConfirm ? { confirm: true } : undefined)
          .then(function (data) { toast(adminSummary(btn.dataset.admin, data)); });
      } else if (action === "queue-pause") {
        work = api("POST", "/api/queue/pause", {}).then(function (data) {
          renderQueue(queueFromApi(data && data.queue)); toast("Queue paused");
        });
      } else if (action === "queue-resume") {
        work = api("POST", "/api/queue/resume", {}).then(function (data) {
          renderQueue(queueFromApi(data && data.queue)); toast("Queue resumed");
        });
      } else if (action === "queue-resume-type") {
        work = api("POST", "/api/queue/resume", { type: btn.dataset.type }).then(function (data) {
          renderQueue(queueFromApi(data && data.queue)); toast("Resumed " + btn.dataset.type);
        });
      } else if (action === "delete-document") {
        work = api("DELETE", "/api/documents/" + btn.dataset.documentId).then(function () {
          toast("Document deleted"); window.location.href = "/";
        });
      } else if (ACTIONS[action]) {
        work = ACTIONS[action](btn.dataset.jobId).then(function () {
          toast(DONE_TEXT[action] || "Done");
          if (btn.dataset.redirect) window.location.href = btn.dataset.redirect;
        });
      } else {
        return;
      }
      return work.then(function () { page.refresh && page.refresh(); },
        function (err) { toast(err.message, true); })
        .then(function () { btn.disabled = false; });
    });
  });

  // --- the queue: a banner on every page, the Jobs panel's header ------------------------------
  var queue = R.queue || { paused: false, paused_types: [] };

  function queueFromApi(q) {
    // /api/queue answers {paused, controls}; the pages' view also lists paused types
    if (!q || !q.controls) return queue;
    var labels = {};
    (queue.paused_types || []).forEach(function (t) { labels[t.name] = t.label; });
    var types = Object.keys(q.controls).filter(function (k) { return k !== "*" && q.controls[k].paused; });
    return {
      paused: !!q.paused,
      reason: q.paused ? (q.controls["*"] || {}).reason : null,
      paused_types: types.sort().map(function (t) { return { name: t, label: labels[t] || t }; })
    };
  }

  function queuePausedFor(jobType) {
    if (queue.paused) return true;
    return (queue.paused_types || []).some(function (t) { return t.name === jobType; });
  }

  function renderQueue(q) {
    if (q) queue = q;
    var types = queue.paused_types || [];
    var banner = $("#queue-banner");
    if (banner) {
      banner.hidden = !(queue.paused || types.length);
      $(".queue-banner-text", banner).textContent = queue.paused
        ? "The queue is paused: no new jobs start (running jobs go on)."
        : types.length ? "Paused job types: " + types.map(function (t) { return t.label; }).join(", ") + ". Their jobs wait." : "";
    }
    var head = $("#queue-state");
    if (head) {
      head.dataset.paused = queue.paused ? "1" : "0";
      var badge = $(".queue-status", head);
      badge.className = "status queue-status " + (queue.paused ? "status-paused" : "status-processing");
      badge.textContent = queue.paused ? "Queue paused"
        : types.length ? "Queue running (" + plural(types.length, "type") + " paused)" : "Queue running";
      $('[data-action="queue-resume"]', head).hidden = !queue.paused;
      $('[data-action="queue-pause"]', head).hidden = !!queue.paused;
    }
    renderDock();
  }

  // --- live connection ------------------------------------------------------------------------
  var stamps = new Map();   // job id -> newest change seen (updated/heartbeat)
  var dockJobs = new Map(); // job id -> summary
  var page = {};            // hooks of the current page: snapshot, job, event, deleted, refresh
  var snapshots = 0;

  function setLive(state) {
    var el = $("#live");
    if (!el) return;
    el.dataset.state = state;
    el.title = "Live updates: " + state;
    $(".live-text", el).textContent = state;
  }

  function stampOf(j) { return Math.max(ts(j.updated_at), ts(j.heartbeat_at)); }

  // Whether a page rendered before its first live subscription shows a job otherwise than
  // that subscription's snapshot (which holds every unfinished job): a change between the
  // two sent no message. shown: [[job id, status label shown], ...].
  function behindSnapshot(d, shown) {
    var now = new Map();
    d.jobs.forEach(function (j) { now.set(j.id, j.status_label); });
    return shown.some(function (s) {
      var label = now.get(s[0]);
      return label === undefined ? UNFINISHED.hasOwnProperty(s[1]) : label !== s[1];
    });
  }

  function connect() {
    var es = new EventSource("/api/events");
    es.onopen = function () { setLive("live"); };
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        setLive("offline");
        setTimeout(connect, 2000);
      } else {
        setLive("connecting");
      }
    };
    es.addEventListener("snapshot", function (m) {
      var d = JSON.parse(m.data);
      clockOffset = ts(d.server_time) - Date.now();
      dockJobs.clear();
      d.jobs.forEach(function (j) {
        stamps.set(j.id, stampOf(j));
        if (j.dock) dockJobs.set(j.id, j);
      });
      snapshots += 1;
      setLive("live");
      if (d.queue) renderQueue(d.queue); else renderDock();
      if (page.snapshot) page.snapshot(d, snapshots);
    });
    es.addEventListener("job", function (m) {
      var j = JSON.parse(m.data);
      var seen = stamps.get(j.id);
      var stamp = stampOf(j);
      if (seen !== undefined && stamp < seen) return; // older than what we show
      stamps.set(j.id, stamp);
      if (j.dock) dockJobs.set(j.id, j); else dockJobs.delete(j.id);
      renderDock();
      if (page.job) page.job(j);
      window.dispatchEvent(new CustomEvent("rhizome:job", { detail: j }));
    });
    es.addEventListener("event", function (m) {
      var e = JSON.parse(m.data);
      if (page.event) page.event(e);
    });
    es.addEventListener("queue", function (m) {
      renderQueue(JSON.parse(m.data));
      if (page.queue) page.queue();
    });
    es.addEventListener("log", function (m) {
      if (page.log) page.log(JSON.parse(m.data));
    });
    es.addEventListener("deleted", function (m) {
      var d = JSON.parse(m.data);
      dockJobs.delete(d.job_id);
      stamps.delete(d.job_id);
      renderDock();
      if (page.deleted) page.deleted(d.job_id);
    });
    window.RHIZOME_EVENTS = es;
  }

  // --- the ProcessingDock ------------------------------------------------------------------------
  var DOCK_MAX = 8;
  var ORDER = { processing: 0, pausing: 0, cancelling: 0, pending: 1, retrying: 2, paused: 3 };
  var UNFINISHED = ORDER;  // the statuses a snapshot lists
  var dock = $("#dock");

  function dockVisible(j) { return R.hidden || !j.hidden; }

  function dockButtons(j) {
    var out = [];
    var s = j.status_label;
    if (s === "pending" || s === "processing") out.push(["pause", "Pause"]);
    if (s === "paused") out.push(["resume", "Resume"]);
    if (s !== "cancelling") out.push(["cancel", "Cancel"]);
    return out;
  }

  function renderDock() {
    if (!dock) return;
    var list = $("#dock-list", dock);
    var all = Array.from(dockJobs.values()).filter(dockVisible);
    all.sort(function (a, b) {
      var oa = ORDER[a.status_label] === undefined ? 9 : ORDER[a.status_label];
      var ob = ORDER[b.status_label] === undefined ? 9 : ORDER[b.status_label];
      return oa - ob || ts(b.created_at) - ts(a.created_at);
    });
    dock.hidden = all.length === 0;
    document.body.classList.toggle("has-dock", all.length > 0);
    $("#dock-count", dock).textContent = String(all.length);
    var running = all.filter(function (j) { return ORDER[j.status_label] === 0; }).length;
    var waiting = all.filter(function (j) { return j.status_label === "pending"; }).length;
    var parts = [];
    if (running) parts.push(running + " running");
    if (waiting) parts.push(waiting + " waiting" + (queue.paused ? " (queue paused)" : ""));
    var pausedN = all.length - running - waiting;
    if (pausedN) parts.push(pausedN + " paused or retrying");
    $("#dock-summary", dock).textContent = parts.join(" · ");
    var shown = all.slice(0, DOCK_MAX);
    var keep = new Set(shown.map(function (j) { return j.id; }));
    $$("li.dock-job", list).forEach(function (li) { if (!keep.has(li.dataset.jobId)) li.remove(); });
    var more = $(".dock-more", list);
    if (more) more.remove();
    shown.forEach(function (j, i) {
      var li = $('li.dock-job[data-job-id="' + j.id + '"]', list);
      if (!li) {
        li = document.createElement("li");
        li.className = "dock-job";
        li.dataset.jobId = j.id;
        li.innerHTML =
          '<div class="dock-row"><span class="dock-icon"></span><a class="dock-job-title"></a>' +
          '<span class="pulse" title="heartbeat"></span></div>' +
          '<div class="dock-meta"><span class="dock-type"></span><span class="dock-stage"></span>' +
          '<span class="status"></span></div>' +
          '<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div class="fill"></div></div>' +
          '<div class="dock-details"><span class="dock-text"></span><span class="dock-pct"></span></div>' +
          '<div class="dock-actions"></div>';
        $(".dock-icon", li).innerHTML = R.icons[j.type_icon] || R.icons.box;
      }
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      var a = $(".dock-job-title", li);
      a.textContent = j.title;
      a.href = "/jobs/" + j.id;
      a.title = j.title;
      $(".dock-type", li).textContent = j.type_label;
      $(".dock-stage", li).textContent = j.stage_label ? "· " + j.stage_label : "";
      var st = $(".status", li);
      st.className = "status status-" + j.status_label;
      st.textContent = (R.status_text || {})[j.status_label] || j.status_label;
      var pct = Math.round(j.percent || 0);
      $(".fill", li).style.width = (j.percent || 0) + "%";
      $(".bar", li).setAttribute("aria-valuenow", String(pct));
      $(".dock-pct", li).textContent = pct + "%";
      var text = j.details || "";
      if (j.status_label === "paused" && j.checkpoint && j.checkpoint.resumable) {
        text = "Paused at " + (j.checkpoint.stage_label || j.checkpoint.stage || "a checkpoint") + " — resumable";
      } else if (j.status_label === "retrying" && j.next_retry_at) {
        text = "retry " + j.retry_count + " of " + j.max_retries;
      } else if (j.status_label === "pending" && queuePausedFor(j.job_type)) {
        text = "Waiting: the queue is paused";
      } else if (j.status_label === "pending") {
        text = "Waiting for a worker";
      }
      li.classList.toggle("held", j.status_label === "pending" && queuePausedFor(j.job_type));
      $(".dock-text", li).textContent = text;
      $(".pulse", li).dataset.heartbeat = j.heartbeat_at || "";
      li.dataset.statusLabel = j.status_label;
      var sig = dockButtons(j).map(function (b) { return b[0]; }).join(",");
      var actions = $(".dock-actions", li);
      if (actions.dataset.sig !== sig) {
        actions.dataset.sig = sig;
        actions.innerHTML = "";
        dockButtons(j).forEach(function (b) {
          var btn = document.createElement("button");
          btn.type = "button";
          btn.className = "small " + (b[0] === "cancel" ? "secondary" : "");
          btn.dataset.action = b[0];
          btn.dataset.jobId = j.id;
          btn.textContent = b[1];
          actions.appendChild(btn);
        });
      }
    });
    if (all.length > shown.length) {
      var li2 = document.createElement("li");
      li2.className = "dock-more";
      li2.innerHTML = 'and ' + (all.length - shown.length) + ' more · <a href="/jobs?status=active">open Jobs</a>';
      list.appendChild(li2);
    }
    tickPulses();
  }

  if (dock) {
    var toggle = $("#dock-toggle");
    if (localStorage.getItem("rhizome.dock") === "collapsed") {
      dock.classList.add("collapsed");
      toggle.setAttribute("aria-expanded", "false");
    }
    toggle.addEventListener("click", function () {
      var collapsed = dock.classList.toggle("collapsed");
      toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
      localStorage.setItem("rhizome.dock", collapsed ? "collapsed" : "open");
    });
  }

  // --- clocks: heartbeat pulses, countdowns, relative times -------------------------------------
  function tickPulses() {
    $$(".pulse").forEach(function (p) {
      var hb = ts(p.dataset.heartbeat);
      var holder = p.closest("[data-status-label]");
      var head = $(".job-head");
      var status = holder ? holder.dataset.statusLabel : (head ? head.dataset.status : "");
      var running = status === "processing" || status === "pausing" || status === "cancelling";
      var fresh = running && hb && now() - hb < 10000;
      p.classList.toggle("beating", !!fresh);
      if (hb) p.title = "heartbeat " + duration((now() - hb) / 1000) + " ago";
    });
  }

  function tick() {
    tickPulses();
    $$("[data-since]").forEach(function (el) {
      if (el.dataset.since) el.textContent = duration((now() - ts(el.dataset.since)) / 1000) + " ago";
    });
    $$("[data-countdown]").forEach(function (el) {
      var left = (ts(el.dataset.countdown) - now()) / 1000;
      var head = "retry " + el.dataset.attempt + " of " + el.dataset.of;
      el.textContent = left > 0 ? head + " in " + duration(left) : head + " is due now";
    });
    var etaEl = $("#job-eta");
    if (etaEl && R.job_id && rates.has(R.job_id)) etaEl.textContent = etaText(etaLeft(R.job_id));
    $$("time[data-relative]").forEach(function (el) {
      var r = relative(el.getAttribute("datetime"));
      if (r) { el.title = el.title || el.textContent; el.textContent = r; }
    });
  }
  setInterval(tick, 1000);

  // --- time left: a smoothed rate of progress -------------------------------------------------
  // The rate (percent per second) is an exponentially weighted average over the moments
  // the percent moved; heartbeats without progress do not lower it. Between moves the
  // estimate counts down with the clock, so it does not grow while the job works normally
  // (a long step without progress shows "almost done" rather than a growing time).
  var rates = new Map();
  var ETA_WEIGHT = 0.3;
  function eta(j) {
    if (j.status_label !== "processing") { rates.delete(j.id); return null; }
    var t = now(), p = j.percent || 0, r = rates.get(j.id);
    if (!r || p < r.p) {
      r = { t: t, p: p, rate: null, left: null, at: t };
      if (j.eta_seconds) { r.left = j.eta_seconds; r.at = t; }
      rates.set(j.id, r);
      return r.left;
    }
    if (p > r.p) {
      var dt = (t - r.t) / 1000;
      if (dt >= 0.25) {
        var inst = (p - r.p) / dt;
        r.rate = r.rate === null ? inst : r.rate + ETA_WEIGHT * (inst - r.rate);
        r.t = t; r.p = p;
        var fresh = (100 - p) / r.rate;
        var counting = r.left === null ? fresh : Math.max(r.left - (t - r.at) / 1000, 0);
        // a lower estimate wins at once; a higher one only through the smoothed rate
        r.left = r.left === null ? fresh : Math.min(fresh, counting + ETA_WEIGHT * Math.max(fresh - counting, 0));
        r.at = t;
      }
    }
    return etaLeft(j.id);
  }
  function etaLeft(id) {
    var r = rates.get(id);
    if (!r || r.left === null) return null;
    return Math.max(r.left - (now() - r.at) / 1000, 0);
  }
  function etaText(left) {
    if (left === null || left === undefined) return "";
    return left < 5 ? "almost done" : "about " + duration(left) + " left";
  }

  // --- fragments ------------------------------------------------------------------------------------
  function refresher(container, after) {
    return throttled(function () {
      var url = container.dataset.partialUrl;
      url += (url.indexOf("?") >= 0 ? "&" : "?") + "partial=1";
      return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (res) {
          if (res.status === 404) { if (page.gone) page.gone(); return null; }
          return res.ok ? res.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          container.innerHTML = html;
          if (after) after();
          tick();
        });
    }, 600);
  }

  function setBar(root, percent) {
    var fill = $(".bar .fill", root);
    if (fill) fill.style.width = percent + "%";
    var bar = $(".bar", root);
    if (bar) bar.setAttribute("aria-valuenow", String(Math.round(percent)));
  }

  // --- page: Jobs panel -------------------------------------------------------------------------------
  function jobsPage() {
    var main = $("#jobs-main");
    var selected = new Set();
    var byFilter = false;
    var known = new Map();
    var loadedAt = Date.now();

    function rememberRows() {
      $$("tr.job-row", main).forEach(function (r) { known.set(r.dataset.jobId, r.dataset.status); });
    }

    function syncSelection() {
      $$(".select-job", main).forEach(function (c) { c.checked = byFilter || selected.has(c.value); });
      var total = Number(($(".filters", main) || {}).dataset ? $(".filters", main).dataset.total : 0);
      var count = byFilter ? total : selected.size;
      $("#selected-count", main).textContent = count + " selected" + (byFilter ? " (all matching)" : "");
      $$("[data-bulk]", main).forEach(function (b) { b.disabled = count === 0; });
      var boxes = $$(".select-job", main);
      var pageAll = boxes.length > 0 && boxes.every(function (c) { return c.checked; });
      $("#select-page", main).checked = pageAll;
      $("#select-all-wrap", main).hidden = !(pageAll && !byFilter && total > boxes.length);
    }

    var refresh = refresher(main, function () { rememberRows(); syncSelection(); });
    page.refresh = refresh;
    rememberRows();
    syncSelection();

    main.addEventListener("change", function (ev) {
      var t = ev.target;
      if (t.classList.contains("select-job")) {
        byFilter = false;
        if (t.checked) selected.add(t.value); else selected.delete(t.value);
      } else if (t.id === "select-page") {
        byFilter = false;
        $$(".select-job", main).forEach(function (c) {
          if (t.checked) selected.add(c.value); else selected.delete(c.value);
        });
      }
      syncSelection();
    });
    main.addEventListener("click", function (ev) {
      if (ev.target.id === "select-all-matching") { byFilter = true; syncSelection(); return; }
      var b = ev.target.closest("[data-bulk]");
      if (!b || b.disabled) return;
      var action = b.dataset.bulk;
      var body = { action: action };
      var n;
      if (byFilter) {
        var f = JSON.parse($(".filters", main).dataset.filter);
        if (!f.type.length && !f.status.length && !f.stage && !f.q) body.all = true; else body.filter = f;
        n = Number($(".filters", main).dataset.total);
      } else {
        body.ids = Array.from(selected);
        n = body.ids.length;
      }
      var question = b.dataset.confirm ? b.dataset.confirm + " (" + plural(n, "job") + ")" : null;
      (question ? confirmAction(question) : Promise.resolve(true)).then(function (yes) {
        if (!yes) return;
        return api("POST", "/api/jobs/bulk", body).then(function (res) {
          var skipped = Object.keys(res.skipped || {}).length;
          toast(b.textContent.trim() + ": " + plural(res.count, "job") + (skipped ? ", " + skipped + " skipped" : ""));
          selected.clear(); byFilter = false;
          refresh();
        }, function (err) { toast(err.message, true); });
      });
    });
    var hiddenBox = $("#show-hidden");
    if (hiddenBox) hiddenBox.addEventListener("change", function () {
      document.cookie = "rhizome_hidden=" + (hiddenBox.checked ? "1" : "0") + "; path=/; SameSite=Strict; max-age=31536000";
      var here = new URL(window.location.href);  // a shared link's ?hidden= wins over the cookie
      if (here.searchParams.has("hidden")) here.searchParams.set("hidden", hiddenBox.checked ? "1" : "0");
      window.location.href = here.toString();
    });

    page.job = function (j) {
      if (j.hidden && !R.hidden) return;
      var row = $('tr.job-row[data-job-id="' + j.id + '"]', main);
      var before = known.get(j.id);
      known.set(j.id, j.status_label);
      if (row) {
        if (row.dataset.status !== j.status_label) { refresh(); return; }
        var cell = $(".job-progress", row);
        if (cell && !$(".bar", cell) && (j.percent > 0 || j.status === "processing")) { refresh(); return; }
        if (cell) {
          setBar(cell, j.percent || 0);
          var p = $(".pct", cell); if (p) p.textContent = Math.round(j.percent || 0) + "%";
          var d = $(".job-details", cell);
          if (d) d.textContent = j.details || ""; else if (j.details) refresh();
        }
        $(".job-stage", row).textContent = j.stage_label || "—";
        row.dataset.heartbeat = j.heartbeat_at || "";
      } else if (before === undefined ? ts(j.updated_at) > loadedAt - 2000 : before !== j.status_label) {
        refresh(); // a new job, or one whose status moved it between filters: counts change
      }
    };
    page.deleted = function () { refresh(); };
    page.snapshot = function (d, n) {
      var rows = $$("tr.job-row", main).map(function (r) { return [r.dataset.jobId, r.dataset.status]; });
      if (n > 1 || behindSnapshot(d, rows)) refresh();
    };
  }

  // --- page: one job -----------------------------------------------------------------------------------
  function jobPage() {
    var box = $("#job");
    var refresh = refresher(box);
    page.refresh = refresh;
    page.gone = function () {
      var head = $(".job-head", box);
      if (head && !$(".notice.gone", head)) {
        var p = document.createElement("p");
        p.className = "notice gone";
        p.textContent = "This job was deleted.";
        head.appendChild(p);
      }
    };
    page.job = function (j) {
      if (j.id !== R.job_id) return;
      var head = $(".job-head", box);
      var cpNow = j.checkpoint && j.checkpoint.resumable ? "1" : "";
      var cpThen = $("#checkpoint-available", box) ? "1" : "";
      if (!head || head.dataset.status !== j.status_label || cpNow !== cpThen) { refresh(); return; }
      setBar($("#progress-panel .overall", box), j.percent || 0);
      $("#job-percent", box).textContent = Math.round(j.percent || 0) + "%";
      $("#job-details", box).textContent = j.details || "";
      $("#job-eta", box).textContent = etaText(eta(j));
      $$("#stages tr.stage", box).forEach(function (row) {
        var start = Number(row.dataset.start), end = Number(row.dataset.end);
        var fill;
        if (row.dataset.stage === j.stage) {
          fill = end > start ? Math.min(100, Math.max(0, (j.percent - start) / (end - start) * 100)) : 100;
          if (!row.classList.contains("stage-current")) { refresh(); return; }
        } else { return; }
        setBar(row, fill);
      });
      var hb = $("#job-heartbeat", box);
      if (hb) hb.dataset.since = j.heartbeat_at || "";
      var pulse = $("#job-pulse", box);
      if (pulse) pulse.dataset.heartbeat = j.heartbeat_at || "";
      if (j.checkpoint && $("#checkpoint", box)) {
        var cp = j.checkpoint;
        if (cp.stage) $(".checkpoint-stage", box).textContent = cp.stage;
        if (cp.sha256) { var h = $(".checkpoint-hash", box); h.textContent = cp.sha256.slice(0, 16) + "…"; h.title = cp.sha256; }
        if (cp.size != null) $(".checkpoint-size", box).textContent = cp.size < 1024 ? cp.size + " B" : (cp.size / 1024).toFixed(1) + " KB";
        if (cp.at) $(".checkpoint-time", box).textContent = new Date(ts(cp.at)).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      }
      head.dataset.updated = j.updated_at || "";
    };
    page.event = function (e) { if (e.job_id === R.job_id) refresh(); };
    page.deleted = function (id) { if (id === R.job_id) page.gone(); };
    page.snapshot = function (d, n) {
      var head = $(".job-head", box);
      if (n > 1 || (head && behindSnapshot(d, [[R.job_id, head.dataset.status]]))) refresh();
    };
    page.log = function (line) {
      if (line.job_id !== R.job_id) return;
      var list = $("#job-log", box);
      if (!list || $('li[data-log-id="' + line.id + '"]', list)) return;
      var stages = {};
      try { stages = JSON.parse(list.dataset.stages || "{}"); } catch (e) { stages = {}; }
      var li = document.createElement("li");
      li.className = "log-line log-" + String(line.level || "info").toLowerCase();
      li.dataset.logId = String(line.id);
      var time = document.createElement("time");
      time.className = "mono";
      time.setAttribute("datetime", line.at || "");
      time.textContent = (line.at || "").slice(11, 23);
      var level = document.createElement("span");
      level.className = "log-level";
      level.textContent = line.level;
      li.appendChild(time);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(level);
      if (line.stage) {
        var tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = stages[line.stage] || line.stage;
        li.appendChild(document.createTextNode(" "));
        li.appendChild(tag);
      }
      var msg = document.createElement("span");
      msg.className = "log-message";
      msg.textContent = line.message;
      li.appendChild(document.createTextNode(" "));
      li.appendChild(msg);
      var atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
      list.appendChild(li);
      while (list.children.length > 2000) list.removeChild(list.firstChild);
      if (atEnd) list.scrollTop = list.scrollHeight;
      var count = $("#log-count", box);
      if (count) count.textContent = String(list.children.length);
      var empty = $("#log-empty", box);
      if (empty) empty.hidden = true;
    };
  }

  // --- pages of the operator's view: dashboard, stats, workers ---------------------------------
  // They re-read their part when jobs change status (at most every few seconds) and, for
  // the workers' heartbeats, every 10 s.
  function operatorPage(selector, gap, every) {
    var box = $(selector);
    if (!box) return;
    var refresh = refresher(box);
    var slow = throttled(refresh, gap);
    var known = new Map();
    page.refresh = refresh;
    page.job = function (j) {
      var before = known.get(j.id);
      known.set(j.id, j.status_label);
      if (before !== j.status_label) slow();
    };
    page.deleted = function () { slow(); };
    page.queue = function () { slow(); };
    page.snapshot = function (d, n) { if (n > 1) slow(); };
    if (every) setInterval(slow, every);
  }

  // --- page: library ---------------------------------------------------------------------------------------
  function libraryPage() {
    var box = $("#documents");
    var refresh = refresher(box);
    var known = new Map();
    $$("tr.doc-row", box).forEach(function (r) { if (r.dataset.jobId) known.set(r.dataset.jobId, ""); });
    page.refresh = refresh;
    page.job = function (j) {
      if (j.entity_type !== "document") return;
      var row = $('tr.doc-row[data-document-id="' + j.entity_id + '"]', box);
      var before = known.get(j.id);
      known.set(j.id, j.status_label);
      if (!row || before !== j.status_label || row.dataset.jobId !== j.id) {
        if (before !== j.status_label || !row) refresh();
        return;
      }
      var cell = $(".doc-job", row);
      setBar(cell, j.percent || 0);
      var d = $(".job-details", cell);
      if (d) d.textContent = j.details || j.stage_label || "";
    };
    page.deleted = function () { refresh(); };
    page.snapshot = function (d, n) { if (n > 1) refresh(); };

    var zone = $("#dropzone"), input = $("#file-input"), results = $("#upload-results");
    function upload(files) {
      var jobsDone = [];
      Array.prototype.forEach.call(files, function (file) {
        var li = document.createElement("li");
        li.textContent = "Uploading " + file.name + "…";
        results.appendChild(li);
        var form = new FormData();
        form.append("files", file, file.name);
        var p = fetch("/api/documents", { method: "POST", body: form, credentials: "same-origin" })
          .then(function (res) {
            return res.json().catch(function () { return null; }).then(function (data) {
              if (!res.ok) {
                var err = (data && data.error) || { message: res.statusText };
                throw new Error(err.message + (err.hint ? " " + err.hint : ""));
              }
              var doc = data.documents[0].document;
              li.innerHTML = "";
              var a = document.createElement("a");
              a.href = "/documents/" + doc.id;
              a.textContent = doc.title;
              li.appendChild(document.createTextNode("Added "));
              li.appendChild(a);
              li.appendChild(document.createTextNode(" — processing"));
            });
          })
          .catch(function (err) { li.className = "bad"; li.textContent = file.name + ": " + err.message; });
        jobsDone.push(p);
      });
      Promise.all(jobsDone).then(refresh);
    }
    if (zone && input) {
      input.addEventListener("change", function () { if (input.files.length) upload(input.files); input.value = ""; });
      ["dragenter", "dragover"].forEach(function (n) {
        zone.addEventListener(n, function (e) { e.preventDefault(); zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (n) {
        zone.addEventListener(n, function (e) { e.preventDefault(); zone.classList.remove("over"); });
      });
      zone.addEventListener("drop", function (e) {
        if (e.dataTransfer && e.dataTransfer.files.length) upload(e.dataTransfer.files);
      });
    }
    var urlForm = $("#url-form");
    if (urlForm) urlForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var url = urlForm.url.value.trim();
      api("POST", "/api/documents/url", { url: url }).then(function () {
        toast("Added " + url); urlForm.reset(); refresh();
      }, function (err) { toast(err.message, true); });
    });
    var textForm = $("#text-form");
    if (textForm) textForm.addEventListener("submit", function (e) {
      e.preventDefault();
      api("POST", "/api/documents/text", { text: textForm.text.value }).then(function () {
        toast("Text added"); textForm.reset(); refresh();
      }, function (err) { toast(err.message, true); });
    });
  }

  // --- page: one document --------------------------------------------------------------------------------
  function documentPage() {
    var box = $("#document");
    var refresh = refresher(box);
    var known = new Map();
    page.refresh = refresh;
    page.job = function (j) {
      if (j.entity_id !== R.document_id) return;
      var before = known.get(j.id);
      known.set(j.id, j.status_label);
      var li = $('.doc-jobs li[data-job-id="' + j.id + '"]', box);
      if (!li || (before !== undefined && before !== j.status_label) || $(".status", li).dataset.status !== j.status_label) {
        refresh();
        return;
      }
      setBar(li, j.percent || 0);
    };
    page.gone = function () { toast("This document was deleted.", true); };
    page.snapshot = function (d, n) { if (n > 1) refresh(); };
  }

  // "Show more" buttons: fetch the next part and put it in place of the button
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-more-url]");
    if (!btn) return;
    ev.preventDefault();
    btn.disabled = true;
    fetch(btn.dataset.moreUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) { if (!res.ok) throw new Error(res.status + " " + res.statusText); return res.text(); })
      .then(function (html) {
        if (btn.id === "markdown-more") {
          $("#markdown").innerHTML = html;
          btn.closest("p").remove();
        } else {
          var holder = btn.closest("li") || btn;
          var tmp = document.createElement("ol");
          tmp.innerHTML = html;
          while (tmp.firstChild) holder.parentNode.insertBefore(tmp.firstChild, holder);
          holder.remove();
        }
        window.dispatchEvent(new CustomEvent("rhizome:more"));
      })
      .catch(function (err) { btn.disabled = false; toast(err.message, true); });
  });

  var pages = {
    jobs: jobsPage, job: jobPage, library: libraryPage, document: documentPage,
    dashboard: function () { operatorPage("#dashboard", 5000, 60000); },
    stats: function () { operatorPage("#stats", 5000, 0); },
    workers: function () { operatorPage("#workers", 2000, 10000); }
  };
  if (pages[R.page]) pages[R.page]();
  tick();
  if (R.page !== "login" && R.page !== "error") connect();
  else setLive("off");
})();
