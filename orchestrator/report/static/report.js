(function () {
  "use strict";
  // Everything is lazy: a 1,000-task report must open fast; work happens on first use.
  var svg = document.getElementById("tl");
  var tip = document.getElementById("tip");
  var data = null, F = {};
  function spans() {
    if (!data) {
      data = JSON.parse(document.getElementById("report-data").textContent);
      data.span_fields.forEach(function (name, i) { F[name] = i; });
    }
    return data.spans;
  }
  function ms(v) { return v < 1000 ? v.toFixed(0) + " ms" : (v / 1000).toFixed(2) + " s"; }
  function details(s) {
    var lines = [s[F.name] + (s[F.task] ? "  (task " + s[F.task] + ")" : ""),
      "attempt " + s[F.attempt] + ", at +" + ms(s[F.start_ms]) + ", took " + ms(s[F.duration_ms])];
    if (s[F.kind] === "llm") {
      lines.push(s[F.model] + (s[F.queue_ms] ? ", queued " + ms(s[F.queue_ms]) : ""));
      lines.push(s[F.cached] ? "cached answer" : s[F.tokens_in] + " → " + s[F.tokens_out] + " tokens, " +
        (s[F.unpriced] ? "unpriced" : "$" + Number(s[F.cost_usd]).toFixed(6)));
    }
    lines.push("status " + s[F.status] + (s[F.error_type] ? ": " + s[F.error_type] : "") +
      (s[F.critical] ? " · critical path" : ""));
    return lines.join("\n");
  }
  // hover details: the tooltip shows the span's numbers (as text, never as markup)
  document.addEventListener("mousemove", function (ev) {
    var t = ev.target;
    var i = t && t.getAttribute ? t.getAttribute("data-i") : null;
    var all = i === null ? null : spans();
    if (!all || !all[+i]) { tip.hidden = true; return; }
    var title = t.querySelector("title");
    if (title) {  // the native tooltip would double ours
      t.setAttribute("aria-label", title.textContent);
      t.removeChild(title);
    }
    tip.textContent = details(all[+i]);
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 430) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  });
  if (!svg) { return; }
  var controls = document.getElementById("tl-controls");
  controls.hidden = false;
  var BAR_X = 260, ROW_H = 18, zoom = 1, scaled = null;
  var width0 = +svg.getAttribute("width");
  function applyZoom() {
    if (!scaled) {
      scaled = Array.prototype.map.call(svg.querySelectorAll(".z, .z-c"), function (el) {
        var keep = {};
        ["x", "width", "x1", "x2", "cx"].forEach(function (a) {
          if (el.hasAttribute(a)) { keep[a] = +el.getAttribute(a); }
        });
        return [el, keep];
      });
    }
    scaled.forEach(function (pair) {
      var el = pair[0], keep = pair[1];
      Object.keys(keep).forEach(function (a) {
        var v = keep[a];
        el.setAttribute(a, a === "width" ? v * zoom : BAR_X + (v - BAR_X) * zoom);
      });
    });
    svg.setAttribute("width", BAR_X + (width0 - BAR_X) * zoom);
  }
  // collapse and expand: a task's rows follow it, deeper (rows are in tree order)
  var rows = null, depth, lane, folded, top0;
  function index() {
    if (rows) { return; }
    rows = Array.prototype.slice.call(svg.querySelectorAll("g.row"));
    depth = rows.map(function (r) { return +r.getAttribute("data-d"); });
    lane = rows.map(function (r) { return r.classList.contains("lane"); });
    folded = rows.map(function () { return false; });
    top0 = rows.length ? +/translate\(0,([\d.]+)\)/.exec(rows[0].getAttribute("transform"))[1] : 0;
  }
  function layout() {
    var y = top0, hideBelow = -1;
    rows.forEach(function (r, i) {
      if (lane[i]) { hideBelow = -1; }
      else if (hideBelow >= 0 && depth[i] > hideBelow) { r.style.display = "none"; return; }
      else { hideBelow = folded[i] ? depth[i] : -1; }
      r.style.display = "";
      r.setAttribute("transform", "translate(0," + y + ")");
      y += ROW_H;
    });
    svg.setAttribute("height", y + 6);
  }
  function foldTasks(fold) {
    index();
    rows.forEach(function (r, i) { folded[i] = fold && r.classList.contains("r-task"); });
    layout();
  }
  svg.addEventListener("click", function (ev) {
    if (!ev.target.classList.contains("tog")) { return; }
    index();
    var i = rows.indexOf(ev.target.parentNode);
    folded[i] = !folded[i];
    layout();
  });
  controls.addEventListener("click", function (ev) {
    var b = ev.target;
    if (b.hasAttribute("data-zoom")) {
      var f = +b.getAttribute("data-zoom");
      zoom = f ? Math.max(0.25, Math.min(64, zoom * f)) : 1;
      applyZoom();
    } else if (b.hasAttribute("data-fold")) {
      foldTasks(b.getAttribute("data-fold") === "1");
    }
  });
  svg.addEventListener("wheel", function (ev) {
    if (!ev.ctrlKey) { return; }
    ev.preventDefault();
    zoom = Math.max(0.25, Math.min(64, zoom * (ev.deltaY < 0 ? 1.25 : 0.8)));
    applyZoom();
  }, { passive: false });
  if (+svg.getAttribute("data-rows") > 300) { foldTasks(true); }  // a big run opens folded: a row per task
}());
