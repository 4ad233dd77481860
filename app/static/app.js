// Conveyor Playground: pick a pipeline, run it, watch its results arrive on a timeline.
// Plain browser JavaScript, no build step. Runs stream from POST /pipelines/{name}/stream as
// NDJSON read with fetch and a ReadableStream reader; nothing polls.
"use strict";

(() => {
  const MAX_RUNS = 2; // runs kept on screen, newest first
  const MAX_ROWS = 400; // rows drawn per run; the rest are counted
  const KEY_STORAGE = "conveyor.apiKey";

  const $ = (selector, root = document) => root.querySelector(selector);
  const state = {
    pipelines: [],
    current: null, // the selected pipeline's entry
    runs: [], // newest first
    controller: null, // AbortController of the run in progress
    nextRunId: 1,
    frame: 0,
  };

  // ---- HTTP ---------------------------------------------------------------------------------

  // The service's root: the page is served at "/" (or at ".../static/index.html").
  const API_BASE = location.pathname.replace(/static\/index\.html$/, "").replace(/[^/]*$/, "");

  function requestHeaders(extra) {
    const headers = { ...extra };
    const key = $("#api-key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    return headers;
  }

  async function describeFailure(response) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body && "detail" in body ? body.detail : body;
    } catch {
      /* not JSON: keep the status text */
    }
    if (Array.isArray(detail)) {
      detail = detail
        .map((e) => (e && e.loc ? `${e.loc.join(".")}: ${e.msg}` : JSON.stringify(e)))
        .join("; ");
    } else if (typeof detail !== "string") {
      detail = JSON.stringify(detail);
    }
    const hint = response.status === 401 ? " — enter a valid API key above" : "";
    return `${response.status} ${detail || response.statusText}${hint}`;
  }

  // ---- Pipelines ----------------------------------------------------------------------------

  async function loadPipelines() {
    const status = $("#pipelines-status");
    status.textContent = "Loading…";
    let response;
    try {
      response = await fetch(`${API_BASE}pipelines`, {
        headers: requestHeaders({ Accept: "application/json" }),
      });
    } catch (error) {
      status.textContent = `Service unreachable: ${error.message}`;
      return;
    }
    if (!response.ok) {
      state.pipelines = [];
      renderPipelineList();
      status.textContent = await describeFailure(response);
      status.classList.add("error-text");
      return;
    }
    status.classList.remove("error-text");
    state.pipelines = await response.json();
    status.textContent = `${state.pipelines.length} pipeline${state.pipelines.length === 1 ? "" : "s"}`;
    renderPipelineList();
    const wanted = decodeURIComponent(location.hash.slice(1)) || state.current?.name;
    const pick = state.pipelines.find((p) => p.name === wanted) || state.pipelines[0];
    if (pick) selectPipeline(pick.name);
  }

  function renderPipelineList() {
    const list = $("#pipeline-list");
    list.replaceChildren(
      ...state.pipelines.map((p) => {
        const button = el("button", { type: "button", className: "pipeline-item" });
        button.dataset.pipeline = p.name;
        button.append(
          el("span", { className: "pipeline-item-name", textContent: p.name }),
          el("span", {
            className: "pipeline-item-stages",
            textContent: (p.stages || []).map((s) => s.name).join(" → "),
          }),
        );
        button.addEventListener("click", () => selectPipeline(p.name));
        return el("li", {}, button);
      }),
    );
    if (!state.pipelines.length) $("#pipeline-card").hidden = true;
  }

  function selectPipeline(name) {
    const pipeline = state.pipelines.find((p) => p.name === name);
    if (!pipeline) return;
    state.current = pipeline;
    history.replaceState(null, "", `#${encodeURIComponent(name)}`);
    for (const button of document.querySelectorAll(".pipeline-item")) {
      button.classList.toggle("active", button.dataset.pipeline === name);
      button.setAttribute("aria-current", button.dataset.pipeline === name ? "true" : "false");
    }
    $("#pipeline-card").hidden = false;
    $("#pipeline-name").textContent = pipeline.name;
    $("#pipeline-description").textContent = pipeline.description || "No description.";
    $("#pipeline-stages").replaceChildren(
      ...(pipeline.stages || []).map((stage) => {
        const item = el("li", { className: `stage stage-${stage.kind || "single"}` });
        item.dataset.kind = stage.kind || "";
        const kind = stage.kind === "batch" && stage.max_size ? `batch ≤ ${stage.max_size}` : stage.kind;
        item.append(
          el("span", { className: "stage-name", textContent: stage.name }),
          el("span", { className: "stage-kind", textContent: kind || "" }),
        );
        if (stage.executor) {
          // where its calls run: a thread, a process pool, Ray actors or tasks
          item.dataset.executor = stage.executor;
          item.append(el("span", { className: "stage-executor", textContent: stage.executor }));
        }
        return item;
      }),
    );
    $("#input-schema").textContent = JSON.stringify(pipeline.input_schema ?? {}, null, 2);
    $("#output-schema").textContent = JSON.stringify(pipeline.output_schema ?? {}, null, 2);
    resetItems();
    hideRequestError();
  }

  function resetItems() {
    if (!state.current) return;
    $("#items").value = formatItems(exampleItems(state.current));
    checkItems();
  }

  function formatItems(items) {
    const compact = JSON.stringify(items);
    return compact.length <= 72 ? compact : JSON.stringify(items, null, 2);
  }

  function exampleItems(pipeline) {
    for (const key of ["example", "examples", "example_items"]) {
      if (Array.isArray(pipeline[key])) return pipeline[key];
    }
    const schema = pipeline.input_schema || {};
    if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples;
    return [0, 1, 2].map((i) => sampleValue(schema, i, schema));
  }

  // A plausible value of a JSON schema; `i` varies the values of a list of samples.
  function sampleValue(schema, i, root, depth = 0) {
    if (!schema || depth > 6) return i + 1;
    if (schema.$ref) {
      const name = schema.$ref.split("/").pop();
      return sampleValue((root.$defs || root.definitions || {})[name], i, root, depth + 1);
    }
    if (Array.isArray(schema.examples) && schema.examples.length) {
      return schema.examples[i % schema.examples.length];
    }
    if ("default" in schema) return schema.default;
    if (Array.isArray(schema.enum)) return schema.enum[i % schema.enum.length];
    const options = schema.anyOf || schema.oneOf || schema.allOf;
    if (options) {
      const choice = options.find((o) => o.type !== "null") || options[0];
      return sampleValue(choice, i, root, depth + 1);
    }
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
    switch (type) {
      case "integer":
        return (schema.minimum ?? 0) + i + 1;
      case "number":
        return Math.round(((schema.minimum ?? 0) + (i + 1) / 10) * 100) / 100;
      case "string":
        return `item ${i + 1}`;
      case "boolean":
        return i % 2 === 0;
      case "null":
        return null;
      case "array":
        return [sampleValue(schema.items, i, root, depth + 1)];
      case "object": {
        const value = {};
        for (const [key, sub] of Object.entries(schema.properties || {})) {
          value[key] = sampleValue(sub, i, root, depth + 1);
        }
        return value;
      }
      default:
        return i + 1;
    }
  }

  function parseItems() {
    let items;
    try {
      items = JSON.parse($("#items").value);
    } catch (error) {
      return { error: `Not valid JSON: ${error.message}` };
    }
    if (!Array.isArray(items)) return { error: "The input must be a JSON array of items." };
    return { items };
  }

  function checkItems() {
    const { error } = parseItems();
    $("#items-error").textContent = error || "";
    $("#items").classList.toggle("invalid", Boolean(error));
    return !error;
  }

  // ---- Runs ---------------------------------------------------------------------------------

  async function startRun(event) {
    event.preventDefault();
    if (!state.current || state.controller) return;
    const parsed = parseItems();
    if (parsed.error) {
      checkItems();
      return;
    }
    hideRequestError();
    const mode = document.querySelector('input[name="mode"]:checked').value;
    const run = {
      id: state.nextRunId++,
      pipeline: state.current.name,
      mode,
      inputs: parsed.items.length,
      status: "running",
      events: [],
      startedAt: new Date(),
      t0: performance.now(),
      elapsedMs: 0,
      message: "",
    };
    state.runs.unshift(run);
    state.runs.length = Math.min(state.runs.length, MAX_RUNS);
    const controller = new AbortController();
    state.controller = controller;
    setRunning(true);
    scheduleRender();
    try {
      const response = await fetch(
        `${API_BASE}pipelines/${encodeURIComponent(run.pipeline)}/stream`,
        {
          method: "POST",
          headers: requestHeaders({
            "Content-Type": "application/json",
            Accept: "application/x-ndjson",
          }),
          body: JSON.stringify({ items: parsed.items, mode }),
          signal: controller.signal,
        },
      );
      if (!response.ok) {
        run.status = "rejected";
        run.message = await describeFailure(response);
        showRequestError(run.message);
        return;
      }
      await readEvents(response.body, (ev) => receive(run, ev));
      if (run.status === "running") {
        run.status = "interrupted";
        run.message = "The stream ended before the run's end event.";
      }
    } catch (error) {
      if (error.name === "AbortError") {
        run.status = "stopped";
        run.message = "Stopped from the page: the service cancels the run.";
      } else {
        run.status = "interrupted";
        run.message = error.message;
      }
    } finally {
      run.elapsedMs = run.elapsedMs || performance.now() - run.t0;
      state.controller = null;
      setRunning(false);
      scheduleRender();
    }
  }

  // NDJSON from a ReadableStream: one JSON object per line, handed over as each line completes.
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) onEvent(JSON.parse(line));
      }
    }
  }

  function receive(run, event) {
    event.t = performance.now() - run.t0;
    run.events.push(event);
    if (event.type === "error") run.message = `${event.stage ? `${event.stage}: ` : ""}${event.error}`;
    if (event.type === "end") {
      run.status = event.status;
      run.stats = event.stats || {};
      run.elapsedMs = event.t;
    }
    scheduleRender();
  }

  function setRunning(running) {
    $("#run").disabled = running;
    $("#stop").disabled = !running;
    $("#run").textContent = running ? "Running…" : "Run";
  }

  // ---- Rendering ----------------------------------------------------------------------------

  function scheduleRender() {
    if (!state.frame) state.frame = requestAnimationFrame(renderRuns);
  }

  function renderRuns() {
    state.frame = 0;
    const container = $("#runs");
    $("#runs-empty").hidden = state.runs.length > 0;
    const now = performance.now();
    const scale = timeScale(
      Math.max(
        50,
        ...state.runs.map((run) =>
          Math.max(run.status === "running" ? now - run.t0 : run.elapsedMs, ...run.events.map((e) => e.t)),
        ),
      ),
    );
    const articles = state.runs.map((run, index) => renderRun(run, index, scale, now));
    container.replaceChildren($("#runs-empty"), ...articles);
    if (state.runs.some((run) => run.status === "running")) scheduleRender();
  }

  function renderRun(run, index, scale, now) {
    const { span } = scale;
    const article = $("#run-template").content.firstElementChild.cloneNode(true);
    Object.assign(article.dataset, {
      runId: run.id,
      pipeline: run.pipeline,
      mode: run.mode,
      status: run.status,
      position: index === 0 ? "latest" : "previous",
    });
    $(".run-label", article).textContent = index === 0 ? "Latest" : "Previous";
    $(".run-title", article).textContent =
      `${run.pipeline} · ${run.mode === "ordered" ? "ordered" : "as completed"} · ${run.inputs} item${run.inputs === 1 ? "" : "s"}`;
    const badge = $(".status", article);
    badge.textContent = run.status;
    badge.classList.add(`status-${run.status}`);
    $(".run-meta", article).textContent = `started ${run.startedAt.toLocaleTimeString()}`;

    $(".axis", article).replaceChildren(...axisTicks(scale));
    $(".overlay .grid", article).replaceChildren(...gridLines(scale));
    const rows = run.events.filter((e) => e.type !== "end");
    const list = $(".events", article);
    list.replaceChildren(...rows.slice(0, MAX_ROWS).map((e) => eventRow(e, span)));
    if (rows.length > MAX_ROWS) {
      list.append(el("li", { className: "more muted", textContent: `… ${rows.length - MAX_ROWS} more events` }));
    }
    const marker = el("div", { className: run.status === "running" ? "now" : "end-line" });
    marker.style.left = pct(run.status === "running" ? now - run.t0 : run.elapsedMs, span);
    marker.title = run.status === "running" ? "now" : `${run.status} at ${Math.round(run.elapsedMs)} ms`;
    $(".overlay .grid", article).append(marker);
    $(".summary", article).replaceChildren(...summaryFields(run));
    return article;
  }

  function eventRow(event, span) {
    const row = el("li", { className: `event event-${event.type}` });
    Object.assign(row.dataset, {
      type: event.type,
      seq: event.seq,
      tMs: Math.round(event.t),
      sources: JSON.stringify(event.sources || []),
    });
    if (event.action) row.dataset.action = event.action;
    const track = el("span", { className: "track" });
    const bar = el("span", { className: "bar" });
    bar.style.width = pct(event.t, span);
    const dot = el("span", { className: "dot" });
    dot.style.left = pct(event.t, span);
    dot.title = `${Math.round(event.t)} ms`;
    track.append(bar, dot);

    const value = el("span", { className: "value" });
    if (event.type === "result") {
      value.textContent = preview(event.value);
    } else {
      const tag = event.type === "item_error" ? event.action : "run failed";
      value.append(
        el("span", { className: "tag", textContent: tag }),
        `${event.stage ? `${event.stage}: ` : ""}${event.error}`,
      );
    }
    value.title = value.textContent;

    row.append(
      el("span", { className: "seq", textContent: `#${event.seq}` }),
      el("span", { className: "time", textContent: `${Math.round(event.t)} ms` }),
      track,
      el("span", { className: "sources" }, ...sourceChips(event.sources)),
      value,
    );
    return row;
  }

  function sourceChips(sources) {
    if (!sources || !sources.length) return [el("span", { className: "chip chip-none", textContent: "—" })];
    const shown = sources.length > 6 ? [...sources.slice(0, 5), `+${sources.length - 5}`] : sources;
    return shown.map((s) => el("span", { className: "chip", textContent: String(s) }));
  }

  function summaryFields(run) {
    const firstResult = run.events.find((e) => e.type === "result");
    const errors = run.events.filter((e) => e.type === "item_error").length;
    const fields = [["status", run.status]];
    if (run.stats) {
      for (const key of ["inputs", "results", "skipped", "dropped"]) fields.push([key, run.stats[key]]);
      fields.push(["elapsed", `${Math.round((run.stats.elapsed_s ?? 0) * 1000)} ms`]);
    } else {
      fields.push(["results", run.events.filter((e) => e.type === "result").length]);
    }
    fields.push(["first result", firstResult ? `${Math.round(firstResult.t)} ms` : "—"]);
    if (errors) fields.push(["item errors", errors]);
    if (run.message) fields.push(["message", run.message]);
    return fields.map(([name, value]) => {
      const box = el("div", { className: "summary-field" });
      box.dataset.field = name.replace(/ /g, "-");
      box.append(el("dt", { textContent: name }), el("dd", { textContent: String(value ?? "—") }));
      return box;
    });
  }

  // Ticks every `step` ms across `span` (both from `timeScale`).
  function axisTicks({ span, step }) {
    const ticks = [];
    for (let ms = 0; ms <= span + step / 2; ms += step) {
      const tick = el("span", { className: "tick", textContent: formatTick(ms, span) });
      tick.style.left = pct(ms, span);
      ticks.push(tick);
    }
    return ticks;
  }

  function gridLines({ span, step }) {
    const lines = [];
    for (let ms = step; ms <= span + step / 2; ms += step) {
      const line = el("span", { className: "gridline" });
      line.style.left = pct(ms, span);
      lines.push(line);
    }
    return lines;
  }

  // ---- Helpers ------------------------------------------------------------------------------

  // A round tick step giving about five ticks, and the span: a whole number of steps.
  function timeScale(ms) {
    const raw = (ms * 1.04) / 5;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((v) => v >= raw);
    return { step, span: step * Math.ceil((ms * 1.04) / step) };
  }

  function formatTick(ms, span) {
    if (span < 1000) return `${Math.round(ms)} ms`;
    return `${Number((ms / 1000).toFixed(2))} s`;
  }

  function pct(ms, span) {
    return `${Math.min(100, Math.max(0, (ms / span) * 100)).toFixed(2)}%`;
  }

  function preview(value) {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text;
  }

  function el(tag, props = {}, ...children) {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  }

  function showRequestError(message) {
    const banner = $("#request-error");
    banner.textContent = message;
    banner.hidden = false;
  }

  function hideRequestError() {
    $("#request-error").hidden = true;
  }

  // ---- Wiring -------------------------------------------------------------------------------

  function init() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) $("#api-key").value = key;
    $("#auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
      loadPipelines();
    });
    $("#run-form").addEventListener("submit", startRun);
    $("#stop").addEventListener("click", () => state.controller?.abort());
    $("#reset-items").addEventListener("click", resetItems);
    $("#items").addEventListener("input", checkItems);
    $("#items").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#run-form").requestSubmit();
    });
    window.addEventListener("hashchange", () => selectPipeline(decodeURIComponent(location.hash.slice(1))));
    loadPipelines();
  }

  init();
})();
