// Renders /api/status into tiles and refreshes it without reloading the page.
// Every value from the API is inserted with textContent: target names and labels are
// operator input and must never be parsed as HTML.
"use strict";
(function () {
  var REFRESH_MS = 5000;
  // A refresh that fails, or data older than this, marks the board stale: a frozen board
  // that still looks green is worse than no board.
  var STALE_AFTER_MS = 3 * REFRESH_MS;
  var FETCH_TIMEOUT_MS = 4000;
  var ORDER = { down: 0, warning: 1, unreachable: 2, unknown: 3, ok: 4 };
  var WORDS = { down: "down", warning: "warning", unreachable: "unreachable", unknown: "unknown", ok: "ok" };
  // A stopwatch runs on tiles of these statuses, from the moment they began.
  var STOPWATCH = { down: "down for", unreachable: "unreachable for" };

  var groupsEl = document.getElementById("groups");
  var freshnessEl = document.getElementById("freshness");

  // Server clock at the last successful refresh, and the browser's monotonic clock at
  // that moment: stopwatches run on the server's time, so a wrong clock in the browser
  // does not show a wrong downtime.
  var serverAt = null;
  var localAt = 0;
  var lastOk = null;
  var lastError = "";
  var stopwatches = [];

  // Bidirectional controls (U+202A..U+202E, U+2066..U+2069, the marks U+200E, U+200F and
  // U+061C) reorder the text around them: "olt-\u202Etxt.exe" shows as "olt-exe.txt". The
  // board writes them as [U+202E], so what is on screen is what was configured.
  var BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

  function shown(text) {
    return String(text).replace(BIDI, function (c) {
      return "[U+" + c.charCodeAt(0).toString(16).toUpperCase() + "]";
    });
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function serverNow() {
    return serverAt + (performance.now() - localAt) / 1000;
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var days = Math.floor(s / 86400);
    s -= days * 86400;
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var hms = pad(h) + ":" + pad(m) + ":" + pad(s % 60);
    return days > 0 ? days + "d " + hms : hms;
  }

  function rtt(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "\u2014";
    var ms = seconds * 1000;
    if (ms < 1) return ms.toFixed(3) + " ms";
    if (ms < 10) return ms.toFixed(2) + " ms";
    if (ms < 100) return ms.toFixed(1) + " ms";
    return ms.toFixed(0) + " ms";
  }

  function loss(ratio) {
    if (typeof ratio !== "number" || !isFinite(ratio)) return "\u2014";
    var pct = Math.round(ratio * 1000) / 10;
    return pct + " %";
  }

  function statusOf(t) {
    return Object.prototype.hasOwnProperty.call(ORDER, t.status) ? t.status : "unknown";
  }

  function byUrgencyThenName(a, b) {
    var d = ORDER[statusOf(a)] - ORDER[statusOf(b)];
    if (d !== 0) return d;
    return String(a.name).localeCompare(String(b.name), undefined, { numeric: true });
  }

  function stat(label, value, cls) {
    var box = el("div");
    box.appendChild(el("dt", null, label));
    box.appendChild(el("dd", cls, value));
    return box;
  }

  function tile(t) {
    var status = statusOf(t);
    var card = el("article", "tile status-" + status);
    card.setAttribute("data-target", String(t.name));
    card.setAttribute("data-status", status);

    var probe = typeof t.probe === "string" && t.probe !== "" ? t.probe : "icmp";
    card.setAttribute("data-probe", probe);
    var head = el("div", "tile-head");
    head.appendChild(el("span", "name", shown(t.name)));
    // The kind and the status word wrap together, never apart.
    var tags = el("span", "tags");
    tags.appendChild(el("span", "probe", probe));
    tags.appendChild(el("span", "word", WORDS[status]));
    head.appendChild(tags);
    card.appendChild(head);
    card.appendChild(el("div", "address", shown(t.address)));

    var labels = [];
    var l = t.labels || {};
    Object.keys(l).sort().forEach(function (k) {
      if (k !== "site") labels.push(shown(k + "=" + l[k]));
    });
    if (labels.length) card.appendChild(el("div", "labels", labels.join(" ")));

    // Cut off behind a failed uplink: name it, and the direct parent when the failure is
    // further up the chain.
    if (status === "unreachable" && typeof t.behind === "string") {
      var via = typeof t.parent === "string" && t.parent !== t.behind ? " (via " + t.parent + ")" : "";
      card.appendChild(el("div", "behind", "behind " + t.behind + via));
    }

    var m = t.maintenance;
    if (m && typeof m.until_seconds === "number") {
      card.classList.add("in-maintenance");
      var badge = el("div", "maintenance");
      badge.appendChild(el("span", "label", "maintenance until " + new Date(m.until_seconds * 1000).toLocaleString()));
      if (m.reason) badge.appendChild(el("span", "reason", m.reason));
      card.appendChild(badge);
    }

    var stats = el("dl", "stats");
    var silent = status === "down" || status === "unreachable";
    if (probe === "icmp") {
      stats.appendChild(stat("RTT", silent ? "\u2014" : rtt(t.last_rtt_seconds), "rtt"));
      stats.appendChild(stat("loss", loss(t.loss_ratio), "loss"));
    } else {
      // One request per round: its duration, and what it got (or why it failed).
      stats.appendChild(stat("time", silent ? "\u2014" : rtt(t.last_rtt_seconds), "rtt"));
    }
    card.appendChild(stats);
    if (probe !== "icmp" && typeof t.detail === "string" && t.detail !== "") {
      card.appendChild(el("div", "detail", shown(t.detail)));
    }

    if (STOPWATCH[status] && typeof t.status_since_seconds === "number") {
      var sw = el("div", "stopwatch");
      sw.appendChild(el("span", "label", STOPWATCH[status]));
      var value = el("span", "elapsed");
      sw.appendChild(value);
      card.appendChild(sw);
      stopwatches.push({ el: value, since: t.status_since_seconds });
    }
    if (typeof t.last_round_seconds === "number") {
      card.title = "last round " + new Date(t.last_round_seconds * 1000).toLocaleString();
    }
    return card;
  }

  function countsText(counts) {
    var parts = [];
    ["down", "warning", "unreachable", "unknown", "ok"].forEach(function (s) {
      if (counts[s]) parts.push(counts[s] + " " + s);
    });
    return parts.join(" \u00b7 ");
  }

  function render(data) {
    var targets = Array.isArray(data.targets) ? data.targets : [];
    var total = { down: 0, warning: 0, unreachable: 0, unknown: 0, ok: 0 };
    var groups = new Map();
    targets.forEach(function (t) {
      total[statusOf(t)] += 1;
      var site = typeof t.site === "string" && t.site !== "" ? t.site : null;
      if (!groups.has(site)) groups.set(site, []);
      groups.get(site).push(t);
    });

    Object.keys(total).forEach(function (s) {
      var n = document.getElementById("count-" + s);
      n.textContent = String(total[s]);
      n.parentNode.classList.toggle("zero", total[s] === 0);
    });
    var alarm = [];
    if (total.down) alarm.push(total.down + " down");
    if (total.unreachable) alarm.push(total.unreachable + " unreachable");
    document.title = (alarm.length ? "(" + alarm.join(", ") + ") " : "") + "vigia-ping status";

    // Named sites alphabetically, then the targets without a site.
    var sites = Array.from(groups.keys()).filter(function (s) { return s !== null; });
    sites.sort(function (a, b) { return a.localeCompare(b, undefined, { numeric: true }); });
    if (groups.has(null)) sites.push(null);

    stopwatches = [];
    var sections = [];
    sites.forEach(function (site) {
      var members = groups.get(site).slice().sort(byUrgencyThenName);
      var section = el("section", "group");
      section.setAttribute("data-site", site === null ? "" : site);
      // One unnamed group needs no heading.
      if (sites.length > 1 || site !== null) {
        var counts = { down: 0, warning: 0, unreachable: 0, unknown: 0, ok: 0 };
        members.forEach(function (t) { counts[statusOf(t)] += 1; });
        var h = el("h2", null, site === null ? "No site" : shown(site));
        h.appendChild(el("span", "group-counts", countsText(counts)));
        section.appendChild(h);
      }
      var grid = el("div", "tiles");
      members.forEach(function (t) { grid.appendChild(tile(t)); });
      section.appendChild(grid);
      sections.push(section);
    });
    if (!sections.length) sections.push(el("p", "empty", "No targets configured."));
    groupsEl.replaceChildren.apply(groupsEl, sections);
    tick();
  }

  function tick() {
    if (serverAt !== null) {
      var now = serverNow();
      stopwatches.forEach(function (w) {
        w.el.textContent = duration(now - w.since);
      });
    }
    var stale = lastOk === null || performance.now() - lastOk > STALE_AFTER_MS || lastError !== "";
    document.body.classList.toggle("stale", stale && lastOk !== null);
    freshnessEl.classList.toggle("stale", stale);
    if (lastOk === null) {
      freshnessEl.textContent = lastError ? "STALE: " + lastError : "loading";
    } else {
      var age = Math.round((performance.now() - lastOk) / 1000);
      freshnessEl.textContent = stale
        ? "STALE: no data for " + duration(age) + (lastError ? " (" + lastError + ")" : "")
        : "updated " + new Date(serverNow() * 1000).toLocaleTimeString();
    }
  }

  function refresh() {
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, FETCH_TIMEOUT_MS);
    var started = performance.now();
    fetch("api/status", {
      cache: "no-store",
      credentials: "same-origin",
      signal: controller ? controller.signal : undefined
    })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) {
        if (typeof data.generated_at !== "number") throw new Error("bad response");
        serverAt = data.generated_at;
        // The snapshot was taken somewhere during the request: take the midpoint.
        localAt = (started + performance.now()) / 2;
        lastOk = performance.now();
        lastError = "";
        render(data);
      })
      .catch(function (e) {
        lastError = e && e.name === "AbortError" ? "timeout" : String((e && e.message) || e);
        tick();
      })
      .finally(function () {
        clearTimeout(timer);
        setTimeout(refresh, REFRESH_MS);
      });
  }

  setInterval(tick, 1000);
  refresh();
})();
