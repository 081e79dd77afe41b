/* Highlights on the document page: select text in a chunk (or in the markdown) to
   highlight it, with a note and a colour; the list of the document's highlights, each
   deletable; highlighted passages marked in the chunk texts. Offsets are into content.md:
   a selection inside a chunk's text is its chunk's start plus the position in it. */
(function () {
  "use strict";
  var bootEl = document.getElementById("rhizome-boot");
  var R = bootEl ? JSON.parse(bootEl.textContent) : {};
  var docId = R.document_id;
  if (!docId) return;
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var items = [];

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
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    return fetch(url, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = text ? JSON.parse(text) : null;
        if (!res.ok) {
          var err = (data && data.error) || { message: res.status + " " + res.statusText };
          throw new Error(err.message + (err.hint ? " " + err.hint : ""));
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

  // --- the list and the marks ------------------------------------------------------------------
  function render() {
    var list = $("#highlights-list");
    var count = $("#highlight-count");
    if (count) count.textContent = String(items.length);
    if (list) {
      list.textContent = "";
      items.forEach(function (h) {
        var li = el("li", { "class": "highlight", "data-highlight-id": h.id, "data-color": h.color || "yellow" });
        li.appendChild(el("div", { "class": "hl-text" }, "“" + h.text + "”"));
        var meta = [];
        if (h.start !== null) meta.push("offsets " + h.start + "–" + h.end);
        if (h.status !== "matched") meta.push(h.status.replace("_", " "));
        if (h.tags && h.tags.length) meta.push("tags: " + h.tags.join(", "));
        if (h.source && h.source !== "manual") meta.push(h.source);
        if (h.note) li.appendChild(el("div", { "class": "hl-note" }, h.note));
        var row = el("div", { "class": "small muted" }, meta.join(" · ") + " ");
        var del = el("button", { type: "button", "class": "link small hl-delete" }, "Delete");
        del.addEventListener("click", function () {
          api("DELETE", "/api/highlights/" + h.id).then(function () {
            items = items.filter(function (x) { return x.id !== h.id; });
            render();
            toast("Highlight deleted");
          }, function (err) { toast(err.message, true); });
        });
        row.appendChild(del);
        if (h.status === "needs_review") {
          row.appendChild(document.createTextNode(" "));
          row.appendChild(el("a", { href: "/integrations#review-panel", "class": "small" }, "Review"));
        }
        li.appendChild(row);
        list.appendChild(li);
      });
      var empty = $("#highlights-empty");
      if (empty) empty.hidden = items.length > 0;
    }
    mark();
  }

  // Wrap highlighted ranges of each chunk's text in <mark>.
  function mark() {
    $$("li.chunk[data-start]").forEach(function (li) {
      var p = $(".chunk-text", li);
      if (!p) return;
      var start = Number(li.dataset.start);
      var text = p.dataset.raw !== undefined ? p.dataset.raw : p.textContent;
      p.dataset.raw = text;
      var end = start + text.length;
      // an unmatched highlight's offsets are stale (its passage is gone): it is listed, not marked
      var ranges = items.filter(function (h) { return h.start !== null && h.status !== "unmatched" && h.start < end && h.end > start; })
        .map(function (h) { return [Math.max(h.start, start) - start, Math.min(h.end, end) - start, h]; })
        .sort(function (a, b) { return a[0] - b[0]; });
      p.textContent = "";
      var at = 0;
      ranges.forEach(function (r) {
        if (r[0] < at) return; // overlapping: the first one wins
        if (r[0] > at) p.appendChild(document.createTextNode(text.slice(at, r[0])));
        var m = el("mark", { "class": "hl", "data-highlight-id": r[2].id, "data-color": r[2].color || "yellow" }, text.slice(r[0], r[1]));
        if (r[2].note) m.title = r[2].note;
        p.appendChild(m);
        at = r[1];
      });
      if (at < text.length) p.appendChild(document.createTextNode(text.slice(at)));
    });
  }

  function load() {
    return api("GET", "/api/documents/" + docId + "/highlights").then(function (d) {
      items = d.highlights;
      render();
    }, function () {});
  }

  // --- selecting text -------------------------------------------------------------------------------
  var toolbar = null;
  function closeToolbar() { if (toolbar) { toolbar.remove(); toolbar = null; } }

  // Offset of (node, offset) inside element `root`'s text.
  function textOffset(root, node, offset) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var total = 0, n;
    while ((n = walker.nextNode())) {
      if (n === node) return total + offset;
      total += n.textContent.length;
    }
    return null;
  }

  function selection() {
    var sel = window.getSelection();
    if (!sel || sel.isCollapsed || !sel.rangeCount) return null;
    var range = sel.getRangeAt(0);
    var text = sel.toString();
    if (!text.trim()) return null;
    var container = range.commonAncestorContainer.nodeType === 1 ? range.commonAncestorContainer : range.commonAncestorContainer.parentNode;
    var p = container.closest ? container.closest(".chunk-text") : null;
    if (p) {
      var li = p.closest("li.chunk");
      var a = textOffset(p, range.startContainer, range.startOffset);
      var b = textOffset(p, range.endContainer, range.endOffset);
      if (li && a !== null && b !== null && b > a) {
        var base = Number(li.dataset.start);
        return { text: (p.dataset.raw || p.textContent).slice(a, b), start: base + a, end: base + b, rect: range.getBoundingClientRect() };
      }
    }
    var md = container.closest ? container.closest(".markdown") : null;
    if (md) return { text: text, start: null, end: null, rect: range.getBoundingClientRect() };
    return null;
  }

  function openToolbar(found) {
    closeToolbar();
    toolbar = el("form", { "class": "hl-toolbar", id: "hl-toolbar" });
    var note = el("input", { name: "note", placeholder: "Note (optional)", "aria-label": "Note" });
    var color = el("select", { name: "color", "aria-label": "Colour" });
    ["yellow", "green", "blue", "pink"].forEach(function (c) { color.appendChild(el("option", { value: c }, c)); });
    var save = el("button", { type: "submit", "class": "small" }, "Highlight");
    var cancel = el("button", { type: "button", "class": "small secondary" }, "×");
    cancel.addEventListener("click", closeToolbar);
    toolbar.appendChild(note); toolbar.appendChild(color); toolbar.appendChild(save); toolbar.appendChild(cancel);
    toolbar.style.top = (window.scrollY + found.rect.bottom + 6) + "px";
    toolbar.style.left = (window.scrollX + Math.max(8, found.rect.left)) + "px";
    toolbar.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { text: found.text, color: color.value };
      if (found.start !== null) { body.start = found.start; body.end = found.end; }
      if (note.value.trim()) body.note = note.value.trim();
      api("POST", "/api/documents/" + docId + "/highlights", body).then(function (d) {
        items.push(d.highlight);
        items.sort(function (a, b) { return (a.start || 0) - (b.start || 0); });
        closeToolbar();
        window.getSelection().removeAllRanges();
        render();
        toast("Highlighted");
      }, function (err) { toast(err.message, true); });
    });
    document.body.appendChild(toolbar);
    note.focus({ preventScroll: true });
  }

  document.addEventListener("mouseup", function (e) {
    if (toolbar && toolbar.contains(e.target)) return;
    setTimeout(function () {
      var found = selection();
      if (found) openToolbar(found); else if (toolbar && !toolbar.contains(document.activeElement)) closeToolbar();
    }, 0);
  });

  // The page swaps #document's content when it changes: mark and list again.
  var box = $("#document");
  if (box && window.MutationObserver) {
    new MutationObserver(function (records) {
      if (records.some(function (r) { return r.target === box; })) render();
    }).observe(box, { childList: true });
  }
  load();
})();
