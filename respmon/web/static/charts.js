/* respmon charts: the patient page's small multiples and the night view, drawn with uPlot from the page's
   <script type="application/json"> blocks (the CSP allows no inline script). Every chart of the patient
   page shares one x axis: a zoom (drag) or a double-click (zoom out) on one moves all, and the cursor is
   synced. Without JavaScript the pages show the same values as tables. */
(function () {
  "use strict";

  var PALETTE = ["#0b4f8a", "#b34700", "#1d6b2f", "#7a2a8a", "#4a4a4a", "#a30000"];
  var SEVERITY = { urgent: "#a30000", high: "#b34700", moderate: "#7a5c00", warn: "#7a5c00", info: "#2f4f6f" };
  var HEIGHT = 170;

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function widthOf(el) {
    return Math.max(320, Math.floor(el.getBoundingClientRect().width) || 640);
  }

  function fmt(v, digits) {
    return v == null ? "—" : (Math.round(v * Math.pow(10, digits)) / Math.pow(10, digits)).toString();
  }

  /* Dashed horizontal lines at the rules' thresholds, labelled with the rule and parameter. */
  function drawThresholds(u, lines) {
    var ctx = u.ctx, left = u.bbox.left, right = u.bbox.left + u.bbox.width;
    ctx.save();
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1;
    ctx.font = Math.round(11 * devicePixelRatio) + "px system-ui, sans-serif";
    lines.forEach(function (t) {
      if (!u.scales[t.scale] || u.scales[t.scale].min == null) { return; }
      var y = u.valToPos(t.value, t.scale, true);
      if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) { return; }
      ctx.strokeStyle = "#a30000";
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
      ctx.fillStyle = "#5a0000";
      ctx.textAlign = "right";  /* at the right end: the y axis sits at the left */
      ctx.fillText(t.value + " " + t.label, right - 4, y - 3);
    });
    ctx.restore();
  }

  /* A vertical line and a triangle per alert; a click near it opens the alert's <details>. */
  function drawMarkers(u, markers) {
    var ctx = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height, s = 6 * devicePixelRatio;
    ctx.save();
    markers.forEach(function (m) {
      var x = u.valToPos(m.x, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
      var color = SEVERITY[m.label.split(" ")[0]] || "#111";
      ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(x - s, top); ctx.lineTo(x + s, top); ctx.lineTo(x, top + 1.6 * s); ctx.closePath(); ctx.fill();
    });
    ctx.restore();
  }

  function drawTrend(u, trend) {
    var ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#111"; ctx.lineWidth = 2; ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(u.valToPos(trend.x[0], "x", true), u.valToPos(trend.y[0], "y", true));
    ctx.lineTo(u.valToPos(trend.x[1], "x", true), u.valToPos(trend.y[1], "y", true));
    ctx.stroke();
    ctx.restore();
  }

  function openAlert(id) {
    var d = document.getElementById("alert-" + id);
    if (!d) { return; }
    d.open = true;
    location.hash = "alert-" + id;
  }

  function markerAt(u, markers, left) {
    for (var i = 0; i < markers.length; i++) {
      if (Math.abs(u.valToPos(markers[i].x, "x") - left) <= 7) { return markers[i]; }
    }
    return null;
  }

  function axes(spec) {
    var list = [{ stroke: "#111", grid: { stroke: "#e3e3e3" } }];
    var scales = {};
    spec.series.forEach(function (s) { scales[s.scale] = scales[s.scale] || s.unit; });
    Object.keys(scales).forEach(function (scale) {
      var units = spec.series.filter(function (s) { return s.scale === scale; })
        .map(function (s) { return s.unit; }).filter(function (v, i, a) { return a.indexOf(v) === i; });
      list.push({ scale: scale, side: scale === "y" ? 3 : 1, stroke: "#111", label: units.join(", "), size: 54,
                  grid: { show: scale === "y", stroke: "#e3e3e3" } });
    });
    return list;
  }

  function patientCharts(data) {
    var plots = [];
    var syncing = false;
    var sync = uPlot.sync("respmon-patient");

    function zoomAll(min, max) {
      syncing = true;
      plots.forEach(function (p) { p.setScale("x", { min: min, max: max }); });
      syncing = false;
    }

    data.charts.forEach(function (spec) {
      var el = document.querySelector('.plot[data-chart="' + spec.id + '"]');
      if (!el) { return; }
      var grades = spec.grades || null;
      var series = [{}].concat(spec.series.map(function (s, i) {
        var color = PALETTE[i % PALETTE.length];
        var out = {
          label: s.label, scale: s.scale, stroke: color, width: 1.5, spanGaps: true,
          points: { show: !spec.bars, size: 4, fill: color },
          value: function (u, v, si, idx) {
            var text = v == null ? "—" : fmt(v, 1) + " " + s.unit;
            if (grades && v != null && idx != null) { text += " (grade " + grades[idx] + ")"; }
            return text;
          }
        };
        if (spec.bars) {
          out.paths = uPlot.paths.bars({ size: [0.9, 12] });
          out.fill = color;
        }
        return out;
      }));
      var opts = {
        width: widthOf(el), height: HEIGHT, series: series, axes: axes(spec),
        scales: { x: { time: true } },
        legend: { live: true },
        cursor: {
          sync: { key: sync.key },
          drag: { x: true, y: false },
          bind: {
            dblclick: function () { return function () { zoomAll(data.from, data.to); return null; }; }
          }
        },
        hooks: {
          draw: [function (u) {
            drawThresholds(u, spec.thresholds);
            if (spec.trend) { drawTrend(u, spec.trend); }
            drawMarkers(u, spec.markers);
          }],
          setScale: [function (u, key) {
            if (key !== "x" || syncing) { return; }
            syncing = true;
            plots.forEach(function (p) {
              if (p !== u) { p.setScale("x", { min: u.scales.x.min, max: u.scales.x.max }); }
            });
            syncing = false;
          }]
        }
      };
      var columns = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var plot = new uPlot(opts, columns, el);
      plot.over.addEventListener("click", function (e) {
        var hit = markerAt(plot, spec.markers, e.offsetX);
        if (hit) { openAlert(hit.id); return; }
        if (spec.nightLinks && plot.cursor.idx != null) {
          var day = new Date(spec.x[plot.cursor.idx] * 1000).toISOString().slice(0, 10);
          location.href = "/patients/" + encodeURIComponent(data.patient) + "/nights/" + day;
        }
      });
      plot.over.title = spec.nightLinks ? "Click a night to open it" : "";
      el.setAttribute("data-drawn", String(spec.x.length));
      plots.push(plot);
    });
    zoomAll(data.from, data.to);
    window.addEventListener("resize", function () {
      plots.forEach(function (p) { p.setSize({ width: widthOf(p.root.parentNode), height: HEIGHT }); });
    });
    window.respmonCharts = plots;  // for the browser tests: the drawn charts and their data
  }

  function minuteColumns(data) {
    var n = data.spo2_mean.length, x = new Array(n);
    for (var i = 0; i < n; i++) { x[i] = data.start + i * data.step; }
    return [x, data.spo2_min, data.spo2_mean, data.spo2_max, data.pulse];
  }

  function nightChart(data) {
    var el = document.querySelector(".plot[data-night]");
    if (!el || !data.spo2_mean) { return; }
    var minutes = minuteColumns(data);
    var raw = false, pending = null, asked = 0;
    var lines = data.lines.map(function (v) { return { value: v, scale: "%", label: "% SpO2" }; });

    function useMinutes(u) {
      if (raw) { raw = false; u.setData(minutes, false); }
    }

    function fetchRaw(u, min, max) {
      var pad = (max - min) * 0.5, from = Math.floor(min - pad), to = Math.ceil(max + pad);
      var sep = data.signal.indexOf("?") < 0 ? "?" : "&";
      var ticket = ++asked;
      fetch(data.signal + sep + "from=" + from + "&to=" + to, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!body || ticket !== asked) { return; }
          var n = body.spo2.length, x = new Array(n), none = new Array(n);
          for (var i = 0; i < n; i++) { x[i] = body.start + i * body.step; none[i] = null; }
          raw = true;
          u.setData([x, none, body.spo2, none, body.pulse], false);
          u.redraw(true, false);
          el.setAttribute("data-raw", String(n));
        });
    }

    var opts = {
      width: widthOf(el), height: 280,
      series: [{}, { label: "SpO2 min", scale: "%", stroke: "#7fa6c9", width: 1 },
               { label: "SpO2", scale: "%", stroke: "#0b4f8a", width: 1.5 },
               { label: "SpO2 max", scale: "%", stroke: "#7fa6c9", width: 1 },
               { label: "Pulse", scale: "bpm", stroke: "#b34700", width: 1 }],
      bands: [{ series: [3, 1], fill: "rgba(11,79,138,0.15)" }],
      scales: { x: { time: true }, "%": { range: [60, 100] } },
      axes: [{ stroke: "#111", grid: { stroke: "#e3e3e3" } },
             { scale: "%", label: "SpO2 %", stroke: "#111", grid: { stroke: "#e3e3e3" } },
             { scale: "bpm", side: 1, label: "pulse bpm", stroke: "#111", grid: { show: false } }],
      cursor: {
        drag: { x: true, y: false },
        bind: {
          dblclick: function (u) {
            return function () { useMinutes(u); u.setScale("x", { min: minutes[0][0], max: minutes[0][minutes[0].length - 1] }); return null; };
          }
        }
      },
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = "rgba(163,0,0,0.18)";
          data.events.forEach(function (ev) {
            var a = u.valToPos(ev[0], "x", true), b = u.valToPos(ev[1], "x", true);
            if (b < u.bbox.left || a > u.bbox.left + u.bbox.width) { return; }
            ctx.fillRect(a, u.bbox.top, Math.max(b - a, devicePixelRatio), u.bbox.height);
          });
          ctx.restore();
          drawThresholds(u, lines);
        }],
        setScale: [function (u, key) {
          if (key !== "x") { return; }
          var min = u.scales.x.min, max = u.scales.x.max;
          if (pending) { clearTimeout(pending); }
          if (max - min < data.rawBelow) {
            pending = setTimeout(function () { fetchRaw(u, min, max); }, 150);
          }
        }]
      }
    };
    var plot = new uPlot(opts, minutes, el);
    el.setAttribute("data-drawn", String(minutes[0].length));
    window.respmonCharts = [plot];
  }

  var patient = readJSON("chart-data");
  if (patient) { patientCharts(patient); }
  var night = readJSON("night-data");
  if (night) { nightChart(night); }
}());
