// SA3 Studio region painter: body of gr.HTML's js_on_load (element, trigger, props, watch given).
// Draws the current track (stereo waveform + mel spectrogram, one time axis), lets the user paint
// regions, an intro and a continuation, plays A (current) or B (a take), and writes the JSON contract of
// studio/painter/README.md back into props.value. The grid, the snapping tolerance and the limits
// are props set by Python (studio/painter/__init__.py), never written here; the bar grid's numbers and
// its bar and beat lines come in the value (`grid`, `lines`), from studio.meter.Grid.
(() => {
  const WAVE_H = 150, SPEC_H = 150, RULER_H = 24, MIN_DRAG_PX = 4, MAX_ZOOM = 16;
  const root = element.querySelector(".sa3p");
  const $ = (sel) => root.querySelector(sel);
  const audio = { A: $("audio.a"), B: $("audio.b") };
  let state = parse(props.value);
  let views = { A: null, B: null };   // {duration, peaks, img} per side
  let mode = "A", zoom = 1, selected = null, gesture = null, regionEnd = null, nextId = 1;
  let ruler = "bars";      // the ruler in bars and beats (when there is a grid) or in seconds
  let snappedTo = null;    // the snap lines the regions were last snapped to (JSON), to re-snap when they change
  let origin = 0;  // seconds at the lane's left edge (<= 0: the striped area before the track), set by render

  function parse(v) {
    let s;
    try { s = Object.assign(blank(), typeof v === "string" && v ? JSON.parse(v) : v || {}); }
    catch (e) { console.error("painter: bad value", e); return blank(); }
    s.extend_start_seconds = Math.min(props.max_intro, Math.max(0, Number(s.extend_start_seconds) || 0));
    return s;  // a typed intro is clamped here, so the typed field shows what Generate uses
  }
  function blank() {
    return { track: null, take: null, highlight: [], regions: [], continue_seconds: 0, extend_start_seconds: 0,
             grid: null, lines: null, snap: "grid" };
  }
  function publish() {  // the only way regions reach Python
    props.value = JSON.stringify(state);
    root.dataset.regions = String(state.regions.length);
    root.dataset.painted = JSON.stringify(state.regions.map(({ start, end }) => [start, end]));
    root.dataset.cont = String(state.continue_seconds);
    root.dataset.intro = String(state.extend_start_seconds);
  }

  // ---- time axis -------------------------------------------------------------------------
  const duration = () => (state.track ? state.track.duration : 0);
  // the striped areas: room to drag a continuation after the track and an intro before it
  const ghost = (max) => Math.min(max, Math.max(4, 0.25 * duration()));
  // where a side's audio starts on the track's axis: a take with an intro starts before the track (start < 0)
  const offset = (side) => (side === "B" && state.take ? state.take.start || 0 : 0);
  const end = () => Math.max(duration() + ghost(props.max_continue), state.take ? offset("B") + state.take.duration : 0);
  const extent = () => end() - origin;  // seconds across the lane
  const laneWidth = () => Math.max(200, Math.round(($(".sa3p-scroll").clientWidth - 2) * zoom));
  const tx = (t) => ((t - origin) / extent()) * laneWidth();
  const xt = (x) => origin + (x / laneWidth()) * extent();
  const fmt = (t) => {
    const a = Math.abs(t), m = Math.floor(a / 60), s = a - 60 * m;
    return `${t <= -0.005 ? "−" : ""}${m}:${s.toFixed(2).padStart(5, "0")}`;
  };
  // Draws studio.edit's snapping rule (snap_edge / snap_span), which Python applies again: an edge
  // within props.snap_tolerance of a grid line is on it, else a start goes down and an end up; the
  // end `d` (the clip's, or an extension's limit) counts as a line and nothing passes it.
  function snapEdge(t, up, d = duration()) {
    const g = props.grid, tol = props.snap_tolerance;
    if (Math.abs(t - d) <= tol) return d;
    let k = Math.round(t / g);
    if (Math.abs(t - k * g) > tol) k = up ? Math.ceil(t / g) : Math.floor(t / g);
    return Math.min(Math.max(k * g, 0), d);
  }
  // studio.edit.line_for: the nearest of `lines`, except that an edge a line already snaps to keeps
  // that line (so snapping twice is snapping once, and a snapped edge names the bar it came from).
  function lineFor(lines, t, up) {
    let best = null, came = false;
    for (const x of lines) {
      const near = Math.abs(x - t);
      const c = near <= props.grid + props.snap_tolerance && Math.abs(snapEdge(x, up) - t) <= props.snap_tolerance;
      if (best === null || (c && !came) || (c === came && near < Math.abs(best - t))) { best = x; came = c; }
    }
    return best;
  }
  // the lines regions snap to before the latent grid: the grid's bar or beat lines (Python's), or none
  const snapLines = () => (state.snap !== "grid" && state.lines ? state.lines[state.snap] || null : null);
  function snapRegion(r) {  // studio.edit.snap_regions for one region: the snap lines (bars or beats), then the grid
    let [a, b] = [r.start, r.end];
    const lines = snapLines();
    if (lines && lines.length) {
      const la = lineFor(lines, a, false), lb = lineFor(lines, b, true);
      if (lb > la) [a, b] = [la, lb];
    }
    a = snapEdge(a, false); b = snapEdge(b, true);
    if (b <= a) b = Math.min(duration(), a + props.grid);
    if (b <= a) a = snapEdge(a - props.grid, false);
    r.start = a; r.end = b;
  }
  const round = (t) => Math.round(t * 1000) / 1000;
  const valid = (r) => r.start >= 0 && r.end > r.start && r.end <= duration() + 1e-6;

  // ---- the bar grid: studio.meter.Grid's formulas on the numbers Python sends in state.grid --------
  // Bar k (1-based) begins at downbeat + (k - 1) * bar_seconds and its beat j beat_seconds * (j - 1)
  // later (Grid.time); beats count the meter's 1/beat_unit note. Python tests the same names both ways.
  const barTime = (bar, beat = 1) => {
    const g = state.grid;
    return g.downbeat + (bar - 1) * g.bar_seconds + (beat - 1) * g.beat_seconds;
  };
  function position(t) {  // Grid.position: [bar, beat, fraction of that beat]
    const g = state.grid, beats = (t - g.downbeat) / g.beat_seconds, whole = Math.floor(beats + 1e-9);
    const bar = Math.floor(whole / g.beats_per_bar);
    return [bar + 1, whole - bar * g.beats_per_bar + 1, Math.max(0, beats - whole)];
  }
  function barLabel(t) {  // Grid.label: '9' on a bar line, '9.3' on a beat, '9.3+' between beats
    let [bar, beat, frac] = position(t);
    const len = state.grid.beat_seconds;
    if (frac * len > 1e-3 && (1 - frac) * len > 1e-3) return `${bar}.${beat}+`;
    if (frac > 0.5) [bar, beat] = position(t + 2e-3);
    return beat === 1 ? String(bar) : `${bar}.${beat}`;
  }
  function spanLabel(start, end) {  // Grid.span_label without "bars ": '9–12', '9.3–10'
    const [bar, beat] = position(end - 1e-3), [endBar, endBeat] = position(end);
    const tail = endBeat === 1 && Math.abs(barTime(endBar) - end) < 1e-3 ? String(bar) : `${bar}.${beat}`;
    return `${barLabel(start)}–${tail}`;
  }
  const RANGE = /^\s*(-?\d+)(?:\.(\d+))?\s*(?:-|–|—|:|to)\s*(-?\d+)(?:\.(\d+))?\s*$/;
  function parseRange(text) {  // Grid.parse_range: typed bars -> [start, end] s, both ends included
    const g = state.grid, m = RANGE.exec(text || "");
    if (!m) throw new Error(`Write bars as first–last, like 9–12 or 9.3–10 (bar.beat), got '${text}'.`);
    const edge = (bar, beat) => {
      const b = beat === undefined ? 1 : parseInt(beat, 10);
      if (!(b >= 1 && b <= g.beats_per_bar)) {
        throw new Error(`A bar of ${g.beats_per_bar}/${g.beat_unit} has beats 1 to ${g.beats_per_bar}; ` +
                        `beat ${b} in '${text.trim()}' does not exist.`);
      }
      return barTime(parseInt(bar, 10), b);
    };
    const start = edge(m[1], m[2]);
    const stop = m[4] === undefined ? barTime(parseInt(m[3], 10) + 1) : edge(m[3], m[4]) + g.beat_seconds;
    if (!(stop > start)) throw new Error(`Bars ${text.trim()} end before they start: write the earlier position first.`);
    return [start, stop];
  }
  function cameFrom(t, up) {  // the beat line a snapped edge came from (ui_tempo.bars_label), else t itself
    const g = state.grid, k = Math.round((t - g.downbeat) / g.beat_seconds), lines = [];
    for (let j = k - 2; j <= k + 2; j++) {
      const x = g.downbeat + j * g.beat_seconds;
      if (x >= -1e-6 && x <= duration() + 1e-6) lines.push(x);
    }
    const x = lines.length ? lineFor(lines, t, up) : t;
    return Math.abs(snapEdge(x, up) - t) <= props.snap_tolerance ? x : t;
  }
  const regionBars = (r) => spanLabel(cameFrom(r.start, false), cameFrom(r.end, true));
  function say(msg) {  // one sentence under the regions (a typed bar range Python never saw)
    $(".sa3p-msg").textContent = msg || "";
    root.dataset.msg = msg || "";
  }

  // ---- loading what Python sends ----------------------------------------------------------
  async function loadView(side, info) {
    if (!info) { views[side] = null; return; }
    if (views[side] && views[side].url === info.view) return;
    const data = await (await fetch(info.view)).json();
    const img = new Image();
    img.src = info.view.replace(/[^/=]+\.json$/, data.spectrogram);
    await img.decode().catch(() => {});
    views[side] = { url: info.view, duration: data.duration, peaks: data.peaks, img };
  }
  async function sync(v) {
    state = parse(v);
    root.dataset.ready = "0";
    for (const r of state.regions) { if (!r.id) r.id = `r${nextId++}`; }
    for (const side of ["A", "B"]) {
      const info = side === "A" ? state.track : state.take;
      const src = info ? info.audio : "";
      if (audio[side].dataset.src !== src) {
        audio[side].dataset.src = src;
        if (src) { audio[side].src = src; audio[side].load(); } else audio[side].removeAttribute("src");
      }
    }
    if (!state.take && mode === "B") setMode("A");
    resnap();
    if (loop && loop.url !== (loop.side === "B" && state.take ? state.take.audio : state.track && state.track.audio)) stopLoop();
    try { await Promise.all([loadView("A", state.track), loadView("B", state.take)]); }
    catch (e) { console.error("painter: view", e); }
    render();
    publish();
    root.dataset.ready = state.track ? "1" : "empty";
  }

  function resnap() {  // new snap lines (a unit picked, a tempo set): the regions follow them; true if one moved
    const lines = JSON.stringify(snapLines());
    let moved = false;
    if (lines !== snappedTo && state.track) {
      snappedTo = lines;
      for (const r of state.regions) {
        if (!valid(r) || (gesture && gesture.region === r)) continue;  // a region being drawn snaps when let go
        const was = [r.start, r.end];
        snapRegion(r);
        moved = moved || r.start !== was[0] || r.end !== was[1];
      }
    }
    root.dataset.snap = (snapLines() || []).length ? state.snap : "grid";  // what regions snap to now
    return moved;
  }
  // The tempo panel's grid and lines, and the snap unit picked (studio/ui_tempo.py), join the live state,
  // not a copy of the value: a region being drawn when the tracker finishes is kept.
  root.addEventListener("sa3:grid", (e) => {
    let g;
    try { g = JSON.parse(e.detail || "{}"); } catch (err) { return; }
    if (!state.track) return;
    Object.assign(state, { grid: g.grid || null, lines: g.lines || null });
    merged();
  });
  root.addEventListener("sa3:snap", (e) => {
    state.snap = ["grid", "beat", "bar"].includes(e.detail) ? e.detail : "grid";
    if (state.track) merged();
  });
  function merged() {
    const moved = resnap();
    if (!(gesture && gesture.kind === "downbeat")) render();
    publish();
    if (moved) trigger("change");
  }

  // ---- drawing --------------------------------------------------------------------------
  function render() {
    const has = !!state.track;
    $(".sa3p-empty").style.display = has ? "none" : "block";
    $(".sa3p-scroll").style.display = has ? "block" : "none";
    $(".sa3p-foot").style.display = has ? "flex" : "none";
    $(".b-btn").disabled = !state.take;
    $(".a-btn").classList.toggle("on", mode === "A");
    $(".b-btn").classList.toggle("on", mode === "B");
    const label = mode === "B" && state.take ? state.take.label : state.track ? state.track.label : "";
    $(".sa3p-label").textContent = label;
    root.dataset.mode = mode;
    const bars = ruler === "bars" && !!state.grid;
    root.dataset.ruler = bars ? "bars" : "seconds";
    $(".ruler-btn").textContent = bars ? "bars" : "sec";
    $(".ruler-btn").disabled = !state.grid;
    $(".sa3p-foot .addbars").style.display = state.grid ? "" : "none";
    if (!has) { renderList(); return; }
    if (!gesture) origin = -Math.max(ghost(props.max_intro), state.extend_start_seconds, -offset("B"));  // still while dragging
    const w = laneWidth();
    $(".sa3p-lane").style.width = w + "px";
    root.dataset.start = origin.toFixed(4);
    root.dataset.extent = extent().toFixed(4);
    root.dataset.duration = duration().toFixed(4);
    drawRuler(w);
    drawWave(w);
    const side = views[mode] ? mode : "A", view = views[side], img = $(".sa3p-spec img");
    if (view && img.src !== view.img.src) img.src = view.img.src;
    img.style.marginLeft = tx(offset(side)) + "px";
    img.style.width = (view ? tx(offset(side) + view.duration) : w) - tx(offset(side)) + "px";
    const paint = $(".sa3p-spec canvas");
    paint.width = w; paint.height = SPEC_H;
    renderOverlay();
    renderList();
  }

  function drawRuler(w) {
    const c = $(".sa3p-ruler"), g = c.getContext("2d");
    c.width = w; c.height = RULER_H;
    g.fillStyle = "#11141b"; g.fillRect(0, 0, w, RULER_H);
    g.font = "11px ui-monospace, monospace"; g.textBaseline = "top";
    if (root.dataset.ruler === "bars") drawBars(g); else drawSeconds(g, w);
    g.strokeStyle = "#38bdf8";
    for (const xe of [Math.round(tx(0)) + 0.5, Math.round(tx(duration())) + 0.5]) {  // the track's start and end
      g.beginPath(); g.moveTo(xe, 0); g.lineTo(xe, RULER_H); g.stroke();
    }
  }

  // Every beat line in view, as [time, bar number, first beat of its bar?] (Grid.lines' spacing, any bar).
  function gridLines() {
    const gr = state.grid, out = [];
    const first = Math.ceil((origin - gr.downbeat) / gr.beat_seconds - 1e-9);
    const last = Math.floor((end() - gr.downbeat) / gr.beat_seconds + 1e-9);
    for (let k = first; k <= last; k++) {
      const bar = Math.floor(k / gr.beats_per_bar);
      out.push([gr.downbeat + k * gr.beat_seconds, bar + 1, k - bar * gr.beats_per_bar === 0]);
    }
    return out;
  }
  function drawBars(g) {  // bar numbers on bar lines, ticks on beats, ▼ at bar 1 (drag it to move the grid)
    const pxBeat = tx(state.grid.beat_seconds) - tx(0), pxBar = tx(state.grid.bar_seconds) - tx(0);
    const every = [1, 2, 4, 8, 16, 32, 64].find((n) => n * pxBar >= 34) || 128;  // bar numbers that fit
    for (const [t, bar, onBar] of gridLines()) {
      if (!onBar && pxBeat < 5) continue;
      const x = Math.round(tx(t)) + 0.5;
      g.strokeStyle = onBar ? "#7c869c" : "#3a4152";
      g.beginPath(); g.moveTo(x, onBar ? 4 : 16); g.lineTo(x, RULER_H); g.stroke();
      if (onBar && ((bar - 1) % every + every) % every === 0) { g.fillStyle = "#c7cedb"; g.fillText(String(bar), x + 3, 3); }
    }
    const x = tx(state.grid.downbeat);
    g.fillStyle = "#fbbf24";
    g.beginPath(); g.moveTo(x - 6, 0); g.lineTo(x + 6, 0); g.lineTo(x, 9); g.closePath(); g.fill();
  }
  function drawSeconds(g, w) {
    const pxPerSec = w / extent();
    const step = [0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120].find((s) => s * pxPerSec >= 70) || 300;
    for (let k = Math.ceil(origin / (step / 5) - 1e-9); k * (step / 5) <= end() + 1e-9; k++) {
      const t = k * (step / 5), major = k % 5 === 0, x = Math.round(tx(t)) + 0.5;
      g.strokeStyle = major ? "#5b6478" : "#30364499";
      g.beginPath(); g.moveTo(x, major ? 10 : 17); g.lineTo(x, RULER_H); g.stroke();
      if (major) { g.fillStyle = "#9aa3b5"; g.fillText(fmt(t).replace(/\.00$/, ""), x + 3, 2); }
    }
  }

  function drawWave(w) {
    const c = $(".sa3p-wave"), g = c.getContext("2d");
    c.width = w; c.height = WAVE_H;
    g.fillStyle = "#12151d"; g.fillRect(0, 0, w, WAVE_H);
    const side = views[mode] ? mode : "A", view = views[side];
    if (!view) return;
    const chans = view.peaks.length, laneH = WAVE_H / chans, x0 = tx(offset(side)), xEnd = tx(offset(side) + view.duration);
    const grad = g.createLinearGradient(0, 0, 0, WAVE_H);
    grad.addColorStop(0, "#5eead4"); grad.addColorStop(0.5, "#38bdf8"); grad.addColorStop(1, "#818cf8");
    for (let ch = 0; ch < chans; ch++) {
      const p = view.peaks[ch], cols = p.length / 2, mid = laneH * ch + laneH / 2, amp = laneH * 0.46;
      g.strokeStyle = "#262b38"; g.beginPath(); g.moveTo(0, mid + 0.5); g.lineTo(w, mid + 0.5); g.stroke();
      g.fillStyle = grad;
      const at = (px) => Math.max(0, Math.floor(((px - x0) / (xEnd - x0)) * cols));  // pixel -> peak column
      for (let x = Math.floor(x0); x < xEnd; x++) {
        const i0 = at(x), i1 = Math.max(i0 + 1, at(x + 1));
        let lo = 0, hi = 0;
        for (let i = i0; i < i1 && i < cols; i++) { lo = Math.min(lo, p[2 * i]); hi = Math.max(hi, p[2 * i + 1]); }
        const y0 = mid - Math.sqrt(Math.min(1, hi)) * amp, y1 = mid - Math.sqrt(Math.min(1, -lo)) * -amp;
        g.fillRect(x, y0, 1, Math.max(1, y1 - y0));
      }
      g.fillStyle = "#8a93a6"; g.font = "10px ui-sans-serif, system-ui";
      g.fillText(ch === 0 ? "L" : "R", x0 + 6, laneH * ch + 13);
    }
    if (root.dataset.ruler !== "bars") return;
    const pxBeat = tx(state.grid.beat_seconds) - tx(0);
    for (const [t, , onBar] of gridLines()) {  // the bar grid over the waveform, faint
      if (!onBar && pxBeat < 12) continue;
      g.fillStyle = onBar ? "#ffffff2e" : "#ffffff12";
      g.fillRect(Math.round(tx(t)), 0, 1, WAVE_H);
    }
  }

  function renderOverlay() {
    const ov = $(".sa3p-overlay");
    ov.style.top = RULER_H + "px";
    ov.innerHTML = "";
    const add = (cls, a, b, html) => {
      const d = document.createElement("div");
      d.className = cls; d.style.left = tx(a) + "px"; d.style.width = Math.max(2, tx(b) - tx(a)) + "px";
      if (html) d.innerHTML = html;
      ov.appendChild(d);
      return d;
    };
    add("sa3p-ghost", duration(), end(), state.continue_seconds ? "" : "drag here to continue →");
    add("sa3p-ghost pre", origin, 0, state.extend_start_seconds ? "" : "← drag here for an intro");
    for (const h of state.highlight || []) add("sa3p-edited", h.start, h.end);
    if (state.continue_seconds > 0) {
      add("sa3p-cont", duration(), duration() + state.continue_seconds,
          `+${state.continue_seconds.toFixed(2)} s`);
    }
    if (state.extend_start_seconds > 0) {
      add("sa3p-cont pre", -state.extend_start_seconds, 0, `intro +${state.extend_start_seconds.toFixed(2)} s`);
    }
    const bad = invalid();
    state.regions.forEach((r, i) => {
      const d = add("sa3p-region", Math.min(r.start, r.end), Math.max(r.start, r.end),
                    `<span class="tag">${i + 1}</span><div class="h l"></div><div class="h r"></div>`);
      d.dataset.id = r.id;
      d.classList.toggle("sel", r.id === selected);
      d.classList.toggle("bad", bad.has(r.id));
      d.addEventListener("pointerdown", (e) => startRegionGesture(e, r));
    });
    const ph = document.createElement("div");
    ph.className = "sa3p-playhead";
    ov.appendChild(ph);
    movePlayhead();
  }

  function invalid() {  // what Python will refuse (studio.edit.snap_regions), red before Generate
    const bad = new Set(), d = duration(), shared = props.grid + props.snap_tolerance;
    const rs = [...state.regions].sort((a, b) => a.start - b.start);
    rs.forEach((r, i) => {
      if (!(r.end > r.start) || r.start < 0 || r.end > d + 1e-6) bad.add(r.id);
      // neighbours may touch or share one grid cell (they are joined); more is an overlap
      if (i && rs[i - 1].end - r.start > shared) { bad.add(r.id); bad.add(rs[i - 1].id); }
    });
    return bad;
  }

  function renderList() {
    const list = $(".sa3p-list");
    list.innerHTML = "";
    const bad = invalid();
    state.regions.forEach((r, i) => {
      const row = document.createElement("div");
      row.className = "sa3p-row" + (r.id === selected ? " sel" : "") + (bad.has(r.id) ? " bad" : "") +
        (state.grid ? " with-bars" : "");
      row.dataset.id = r.id;
      row.innerHTML = `<span class="n">${i + 1}</span>
        ${state.grid ? '<input class="bars" type="text" title="bars, both ends included: 9–12, or bar.beat: 9.3–10">' : ""}
        <input class="start" type="number" step="0.01" title="start (s)">
        <input class="end" type="number" step="0.01" title="end (s)">
        <span class="len"></span>
        <input class="prompt" type="text" placeholder="prompt for this region (optional)">
        <button class="play" title="play this region">▶</button>
        <button class="del" title="delete this region">✕</button>`;
      row.querySelector(".start").value = round(r.start);
      row.querySelector(".end").value = round(r.end);
      row.querySelector(".len").textContent = `${(r.end - r.start).toFixed(2)} s`;
      row.querySelector(".prompt").value = r.prompt || "";
      const num = (cls, key) => row.querySelector(cls).addEventListener("change", (e) => {
        r[key] = parseFloat(e.target.value);  // snapped when valid, else unclamped: Python explains
        if (r.start >= 0 && r.end > r.start && r.end <= duration() + 1e-6) snapRegion(r);
        selected = r.id; renderOverlay(); renderList(); publish();
      });
      num(".start", "start"); num(".end", "end");
      if (state.grid) {
        const bars = row.querySelector(".bars");
        bars.value = valid(r) ? regionBars(r) : "";
        bars.addEventListener("change", (e) => {
          if (!typeBars(r, e.target.value)) { bars.classList.add("bad"); return; }
          selected = r.id; renderOverlay(); renderList(); publish();
        });
      }
      row.querySelector(".prompt").addEventListener("change", (e) => { r.prompt = e.target.value; publish(); });
      row.querySelector(".play").addEventListener("click", () => playRange(r.start, r.end));
      row.querySelector(".del").addEventListener("click", () => removeRegion(r.id));
      list.appendChild(row);
    });
    const cont = $(".sa3p-foot input.cont");
    if (document.activeElement !== cont) cont.value = round(state.continue_seconds || 0);
  }

  function typeBars(r, text) {  // a region set from typed bars (Grid.parse_range), snapped like a gesture
    try { [r.start, r.end] = parseRange(text); } catch (err) { say(err.message); return false; }
    say("");
    if (valid(r)) snapRegion(r);  // else as typed (outside the clip): Python says why
    return true;
  }

  // ---- gestures ---------------------------------------------------------------------------
  function laneTime(e) {
    const box = $(".sa3p-lane").getBoundingClientRect();
    return Math.max(origin, Math.min(end(), xt(e.clientX - box.left)));
  }
  function onLaneDown(e) {
    if (e.button !== 0 || !state.track) return;
    const t0 = laneTime(e), onSpec = e.target.closest(".sa3p-spec") || e.target.closest(".sa3p-overlay") &&
      e.clientY > $(".sa3p-spec").getBoundingClientRect().top;
    if (e.target.closest(".sa3p-ruler")) {
      if (!nearDownbeat(e)) { seek(t0); return; }
      e.preventDefault();
      gesture = { kind: "downbeat", t0, x0: e.clientX, moved: false };
      window.addEventListener("pointermove", onMove);
      window.addEventListener("pointerup", onUp, { once: true });
      return;
    }
    e.preventDefault();
    const kind = t0 > duration() ? "continue" : t0 < 0 ? "intro" : onSpec ? "paint" : "drag";
    gesture = { kind, t0, t1: t0, x0: e.clientX, lo: t0, hi: t0, region: null, moved: false };
    if (gesture.kind === "paint") brush(e);
    window.addEventListener("pointermove", onMove);
    window.addEventListener("pointerup", onUp, { once: true });
  }
  function nearDownbeat(e) {  // on the ruler's ▼ (bar 1), which drags the grid
    if (root.dataset.ruler !== "bars") return false;
    const box = $(".sa3p-lane").getBoundingClientRect();
    return Math.abs(e.clientX - box.left - tx(state.grid.downbeat)) <= 7;
  }
  function startRegionGesture(e, r) {
    if (e.button !== 0) return;
    e.stopPropagation(); e.preventDefault();
    selected = r.id;
    const edge = e.target.classList.contains("h") ? (e.target.classList.contains("l") ? "l" : "r") : "move";
    gesture = { kind: edge, t0: laneTime(e), x0: e.clientX, region: r, start: r.start, end: r.end };
    window.addEventListener("pointermove", onMove);
    window.addEventListener("pointerup", onUp, { once: true });
    renderOverlay(); renderList();
  }
  function onMove(e) {
    if (!gesture) return;
    const t = laneTime(e), g = gesture, d = duration();
    if (g.kind === "downbeat") {  // the whole grid follows bar 1, within the track
      g.moved = g.moved || Math.abs(e.clientX - g.x0) >= MIN_DRAG_PX;
      if (g.moved) { state.grid.downbeat = Math.max(0, Math.min(d, t)); render(); }
    } else if (g.kind === "drag" || g.kind === "paint") {
      g.t1 = t; g.lo = Math.min(g.lo, t); g.hi = Math.max(g.hi, t);
      if (g.kind === "paint") brush(e);
      if (Math.abs(e.clientX - g.x0) >= MIN_DRAG_PX) {
        const [a, b] = g.kind === "paint" ? [g.lo, g.hi] : [Math.min(g.t0, t), Math.max(g.t0, t)];
        if (!g.region) {
          g.region = { id: `r${nextId++}`, start: a, end: b, prompt: "" };
          state.regions.push(g.region); selected = g.region.id;
        }
        g.region.start = Math.max(0, Math.min(a, d)); g.region.end = Math.min(b, d);
        if (g.kind === "drag" && b > d) state.continue_seconds = snapContinue(b - d);
        if (g.kind === "drag" && a < 0) state.extend_start_seconds = snapIntro(-a);
        renderOverlay();
      }
    } else if (g.kind === "continue" || g.kind === "intro") {
      g.moved = g.moved || Math.abs(e.clientX - g.x0) >= MIN_DRAG_PX;
      if (!g.moved) return;
      if (g.kind === "continue") state.continue_seconds = snapContinue(Math.max(0, t - d));
      else state.extend_start_seconds = snapIntro(Math.max(0, -t));
      renderOverlay();
    } else {
      const dt = t - g.t0, r = g.region;
      if (g.kind === "move") {
        const len = g.end - g.start, s = Math.max(0, Math.min(d - len, g.start + dt));
        r.start = s; r.end = s + len;
      } else if (g.kind === "l") r.start = Math.max(0, Math.min(g.end, g.start + dt));
      else r.end = Math.min(d, Math.max(g.start, g.end + dt));
      renderOverlay();
    }
  }
  // An extension's far edge snaps by the one rule, outward like a region's edge: at least what was dragged.
  const snapContinue = (s) => snapEdge(s, true, props.max_continue);
  const snapIntro = (s) => snapEdge(s, true, props.max_intro);
  function onUp(e) {
    window.removeEventListener("pointermove", onMove);
    const g = gesture;
    gesture = null;
    clearBrush();
    if (!g) return;
    if (g.kind === "downbeat") {  // Python stores it (ui_tempo.drag_downbeat) and sends the lines back
      if (!g.moved) return;
      state.grid.downbeat = round(state.grid.downbeat);
      render(); publish();
      trigger("submit");
      return;
    }
    if ((g.kind === "drag" || g.kind === "paint") && !g.region) { if (g.kind === "drag") seek(g.t0); render(); return; }
    if (g.kind === "continue" && !g.moved) state.continue_seconds = 0;  // a click on an extension removes it
    if (g.kind === "intro" && !g.moved) state.extend_start_seconds = 0;
    if (g.kind === "move") {  // whole grid steps, so a moved region keeps its length
      const k = Math.round((g.region.start - g.start) / props.grid);
      g.region.start = Math.max(0, g.start + k * props.grid); g.region.end = g.end + k * props.grid;
    }
    if (g.region) snapRegion(g.region);  // exact seconds: the list shows them to the millisecond
    render(); publish();
    trigger("change");
  }
  function brush(e) {
    const c = $(".sa3p-spec canvas"), g = c.getContext("2d"), box = c.getBoundingClientRect();
    g.fillStyle = "#fbbf2455";
    g.beginPath(); g.arc(e.clientX - box.left, e.clientY - box.top, 11, 0, 2 * Math.PI); g.fill();
  }
  function clearBrush() {
    const c = $(".sa3p-spec canvas");
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
  }
  function removeRegion(id) {
    state.regions = state.regions.filter((r) => r.id !== id);
    if (selected === id) selected = null;
    render(); publish(); trigger("change");
  }

  // ---- playback -------------------------------------------------------------------------
  const active = () => audio[mode];
  const now = () => (loop ? loopTime() : active().src ? active().currentTime + offset(mode) : 0);  // the playhead, s
  function seek(t) {  // t on the track's axis; each side plays from its own point
    regionEnd = null;
    for (const [side, a] of Object.entries(audio)) {
      if (a.src) a.currentTime = Math.max(0, Math.min(t - offset(side), a.duration || Infinity));
    }
    root.dataset.time = Math.max(t, offset(mode)).toFixed(3);
    movePlayhead();
  }
  function playRange(a, b) {
    if (!state.track) return;
    seek(a); regionEnd = b;
    active().play().catch(() => {});
  }
  function toggle() {
    const a = active();
    if (loop) { stopLoop(); return; }
    if (!a.src) return;
    if (a.paused) { regionEnd = null; a.play().catch(() => {}); } else a.pause();
  }
  function setMode(m) {  // A/B: the other side continues from the same playhead, no reload
    if (m === mode || (m === "B" && !state.take)) return;
    if (loop) {  // a loop goes on over the other side's audio, from the same point of the loop
      const at = loopTime();
      mode = m; render(); startLoop(at, loop.span);
      return;
    }
    const from = active(), t = now(), playing = !from.paused;
    from.pause();
    mode = m;
    const to = active();
    to.currentTime = Math.max(0, t - offset(m));
    root.dataset.time = t.toFixed(3);
    if (playing) to.play().catch(() => {});
    render();
  }
  function movePlayhead() {
    const ph = root.querySelector(".sa3p-playhead"), a = active(), t = now();
    if (ph) ph.style.left = tx(t) - 1 + "px";
    $(".sa3p-time").textContent = `${fmt(t)} / ${fmt(Math.max(duration(), mode === "B" && state.take ? state.take.duration : 0))}`;
    $(".play-btn").textContent = loop || (a && !a.paused) ? "❚❚ Pause" : "▶ Play";
  }
  function tick() {
    const a = active();
    if (regionEnd !== null && now() >= regionEnd) { a.pause(); regionEnd = null; }
    if (!a.paused || loop) root.dataset.time = now().toFixed(3);
    if (loop) root.dataset.loopPasses = String(Math.floor((loop.ctx.currentTime - loop.t0) / (loop.span[1] - loop.span[0])));
    movePlayhead();
    if (root.isConnected) requestAnimationFrame(tick);
  }

  // ---- the loop player ---------------------------------------------------------------------
  // Web Audio, not the <audio> elements: an AudioBufferSourceNode with loop=true wraps from loopEnd
  // to loopStart on the sample, where an element seeking back would leave a gap. Each side's file is
  // decoded once, when a loop first needs it.
  let loop = null, loopCtx = null;  // loop: {ctx, node, span: [a, b] on the track's axis, t0, side, url}
  const decoded = {};                // audio URL -> Promise of its AudioBuffer
  function loopSpan() {  // the selected region, else the whole of what is heard (the take as B, the track as A)
    const r = state.regions.find((x) => x.id === selected);
    if (r && valid(r)) return [r.start, r.end];
    const info = mode === "B" && state.take ? state.take : state.track;
    return [offset(mode), offset(mode) + info.duration];
  }
  function loopTime() {  // where the loop is on the track's axis, s
    const [a, b] = loop.span, len = b - a, into = loop.ctx.currentTime - loop.t0;
    return a + ((into % len) + len) % len;
  }
  async function startLoop(at = null, span = null) {
    const side = mode, info = side === "B" ? state.take : state.track;
    if (!info) return;
    for (const el of Object.values(audio)) el.pause();
    regionEnd = null;
    loopCtx = loopCtx || new AudioContext();
    if (!decoded[info.audio]) {
      decoded[info.audio] = fetch(info.audio).then((r) => r.arrayBuffer()).then((b) => loopCtx.decodeAudioData(b));
    }
    const [buffer] = await Promise.all([decoded[info.audio], loopCtx.resume()]);
    const [a, b] = span || loopSpan(), off = offset(side), len = b - a;
    const phase = at === null ? 0 : (((at - a) % len) + len) % len;
    const node = loopCtx.createBufferSource();
    node.buffer = buffer; node.loop = true;
    node.loopStart = Math.max(0, a - off); node.loopEnd = Math.min(buffer.duration, b - off);
    node.connect(loopCtx.destination);
    const when = loopCtx.currentTime;
    stopLoop();
    node.start(when, a - off + phase);
    loop = { ctx: loopCtx, node, span: [a, b], t0: when - phase, side, url: info.audio };
    root.dataset.loop = `${a.toFixed(4)},${b.toFixed(4)}`;
    $(".loop-btn").classList.add("on");
  }
  function stopLoop() {
    if (!loop) return;
    loop.node.stop(); loop.node.disconnect();
    loop = null;
    root.dataset.loop = "";
    $(".loop-btn").classList.remove("on");
  }

  // ---- wiring -----------------------------------------------------------------------------
  $(".sa3p-lane").addEventListener("pointerdown", onLaneDown);
  $(".play-btn").addEventListener("click", toggle);
  $(".stop-btn").addEventListener("click", () => { stopLoop(); active().pause(); seek(0); });
  $(".loop-btn").addEventListener("click", () => { if (loop) stopLoop(); else if (state.track) startLoop(); });
  $(".ruler-btn").addEventListener("click", () => { ruler = ruler === "bars" ? "seconds" : "bars"; render(); });
  $(".sa3p-ruler").addEventListener("pointermove", (e) => {
    e.target.style.cursor = nearDownbeat(e) ? "ew-resize" : "pointer";
  });
  $(".sa3p-foot input.addbars").addEventListener("change", (e) => {
    const r = { id: `r${nextId++}`, start: 0, end: 0, prompt: "" };
    if (!typeBars(r, e.target.value)) { e.target.classList.add("bad"); return; }
    e.target.classList.remove("bad"); e.target.value = "";
    state.regions.push(r); selected = r.id;
    render(); publish(); trigger("change");
  });
  $(".a-btn").addEventListener("click", () => setMode("A"));
  $(".b-btn").addEventListener("click", () => setMode("B"));
  $(".zin").addEventListener("click", () => setZoom(zoom * 2));
  $(".zout").addEventListener("click", () => setZoom(zoom / 2));
  $(".zfit").addEventListener("click", () => setZoom(1));
  $(".sa3p-foot input.cont").addEventListener("change", (e) => {
    state.continue_seconds = Math.max(0, parseFloat(e.target.value) || 0);
    renderOverlay(); publish(); trigger("change");
  });
  $(".sa3p-foot .clear").addEventListener("click", () => {
    state.regions = []; state.continue_seconds = 0; state.extend_start_seconds = 0; selected = null;
    render(); publish(); trigger("change");
  });
  $(".sa3p-scroll").addEventListener("wheel", (e) => {
    if (!e.ctrlKey && !e.metaKey) return;
    e.preventDefault();
    setZoom(zoom * (e.deltaY < 0 ? 1.25 : 0.8));
  }, { passive: false });
  function setZoom(z) {
    const sc = $(".sa3p-scroll"), centre = xt(sc.scrollLeft + sc.clientWidth / 2);
    zoom = Math.max(1, Math.min(MAX_ZOOM, z));
    root.dataset.zoom = String(zoom);
    render();
    sc.scrollLeft = tx(centre) - sc.clientWidth / 2;
  }
  document.addEventListener("keydown", (e) => {
    if (!root.isConnected || !state.track) return;
    // Keys typed into text go to the text; a focused radio or checkbox (the take just picked)
    // does not use space or B, so the painter's keys still work right after picking a take.
    const tag = (e.target.tagName || "").toLowerCase(), choice = ["radio", "checkbox"].includes(e.target.type);
    if ((tag === "input" && !choice) || tag === "textarea" || tag === "select" || e.target.isContentEditable) return;
    if (e.code === "Space") { e.preventDefault(); toggle(); }
    else if ((e.key === "Delete" || e.key === "Backspace") && selected) { e.preventDefault(); removeRegion(selected); }
    else if (e.key === "b" || e.key === "B") setMode(mode === "A" ? "B" : "A");
  });
  new ResizeObserver(() => state.track && render()).observe($(".sa3p-scroll"));
  watch("value", () => sync(props.value));
  sync(props.value);
  requestAnimationFrame(tick);
})();
