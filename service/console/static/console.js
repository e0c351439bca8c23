// The console's one script: keeps job rows and a job page current by polling the JSON API (the
// session cookie authorises reading), copies a spec, and reads a chosen file into the upload form.
"use strict";
(function () {
  var TERMINAL = { succeeded: 1, failed: 1, cancelled: 1 };

  // render.duration's wording: 45 s, 12 min, 2 h 05 min
  function duration(seconds) {
    var s = Math.max(0, Math.round(seconds));
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    var m = Math.floor(s % 3600 / 60);
    return Math.floor(s / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  function progressText(job) {
    var p = job.progress;
    if (job.status === "queued") {
      return "queued" + (job.queue_position != null ? " · position " + job.queue_position + " in the queue" : "");
    }
    if (job.status === "running") {
      if (!p) return "starting";
      var eta = p.eta_seconds != null ? " · about " + duration(p.eta_seconds) + " left" : "";
      return p.stage + " · " + p.done + "/" + p.total + eta;
    }
    return job.status;
  }

  function link(href, name) {
    var a = document.createElement("a");
    a.href = href; a.textContent = name; a.setAttribute("data-link", name);
    return a;
  }

  // Update one element carrying data-job from a JobStatus body.
  function render(el, job) {
    el.setAttribute("data-status", job.status);
    var badge = el.querySelector("[data-field=status]");
    if (badge) { badge.textContent = job.status; badge.className = "badge s-" + job.status; }
    var bar = el.querySelector("[data-field=bar]");
    if (bar) {
      var p = job.progress;
      bar.value = job.status === "succeeded" ? 100 : (p && p.total ? 100 * p.done / p.total : 0);
      bar.className = "s-" + job.status;
    }
    var text = el.querySelector("[data-field=ptext]");
    if (text) text.textContent = progressText(job);
    if (TERMINAL[job.status]) {
      var cancel = el.querySelector("[data-field=cancel]");
      if (cancel) cancel.remove();
      var links = el.querySelector("[data-field=links]");
      if (links && job.status === "succeeded" && !links.children.length) {
        links.appendChild(link(job.links.report, "report"));
        links.appendChild(link(job.links.result, "result"));
        links.appendChild(link(job.links.artifacts, "artifacts"));
      }
    }
  }

  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  // The jobs list: every unfinished row, every 2 s.
  function pollRows() {
    var rows = Array.prototype.filter.call(document.querySelectorAll("tr[data-job]"), function (tr) {
      return !TERMINAL[tr.getAttribute("data-status")];
    });
    if (!rows.length) return;
    Promise.all(rows.map(function (tr) {
      return get("/v1/comparisons/" + tr.getAttribute("data-job")).then(function (job) { render(tr, job); });
    })).catch(function () {}).then(function () { setTimeout(pollRows, 2000); });
  }

  // A job page: long-poll its status; when it ends, swap in the result section.
  function pollJob(page) {
    var id = page.getAttribute("data-job");
    get("/v1/comparisons/" + id + "?wait=10").then(function (job) {
      render(page, job);
      if (TERMINAL[job.status]) {
        return fetch("/jobs/" + id + "/summary", { credentials: "same-origin" }).then(function (r) { return r.text(); })
          .then(function (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            document.getElementById("summary").innerHTML = doc.body.innerHTML;
          });
      }
      setTimeout(function () { pollJob(page); }, 300);
    }, function () { setTimeout(function () { pollJob(page); }, 3000); });
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        var text = document.getElementById(b.getAttribute("data-copy")).textContent;
        var done = function () { b.textContent = "copied"; setTimeout(function () { b.textContent = "copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () {});
        } else {
          var range = document.createRange();
          range.selectNodeContents(document.getElementById(b.getAttribute("data-copy")));
          var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
          b.textContent = "selected: press Ctrl+C";
        }
      });
    });
  }

  function fileInputs() {
    document.querySelectorAll("input[type=file][data-into]").forEach(function (input) {
      input.addEventListener("change", function () {
        var f = input.files && input.files[0];
        if (!f) return;
        f.text().then(function (t) { document.getElementById(input.getAttribute("data-into")).value = t; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.querySelector("[data-live]");
    if (page) {
      if (!TERMINAL[page.getAttribute("data-status")]) pollJob(page);
    } else {
      setTimeout(pollRows, 2000);
    }
    copyButtons();
    fileInputs();
  });
})();
