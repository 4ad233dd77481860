// Conveyor Playground: pick a pipeline, run it, watch its results arrive on a timeline and,
// traced, each item's path through the stages on a waterfall. Plain browser JavaScript, no
// build step. Runs stream from POST /pipelines/{name}/stream (or, as jobs, from
// GET /jobs/{id}/events, resumed with Last-Event-ID) as NDJSON read with fetch and a
// ReadableStream reader; nothing polls.
"use strict";

(() => {
  const MAX_RUNS = 2; // runs kept on screen, newest first
  const ROW_H = 28; // px of a timeline row
  const WF_ROW_H = 22; // px of a waterfall row
  const OVERSCAN = 6; // rows drawn beyond the view, above and below
  const JOB_RETRIES = 8; // reconnections of a job's stream without progress
  const PERSIST_MAX = 5000; // events of a job kept for a reload (beyond: it replays)
  const PERSIST_EVERY_MS = 250; // ... written at most this often (and when the page goes)
  const JOBS_SHOWN = 20; // jobs in the jobs panel
  const KEY_STORAGE = "conveyor.apiKey";
  const JOB_STORAGE = "conveyor.job.";

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
    history.replaceState(null, "", `${location.search}#${encodeURIComponent(name)}`);
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

  function newRun(fields) {
    const run = {
      id: state.nextRunId++,
      status: "running",
      events: [], // every event, in seq order; `t`: ms after the run started, on this page
      rows: [], // the events shown on the timeline (all but stage and end)
      results: 0,
      itemErrors: 0,
      firstResultMs: null,
      lastSeq: -1,
      lastT: 0,
      startedAt: new Date(),
      t0: performance.now(),
      elapsedMs: 0,
      message: "",
      jobId: null,
      trace: false,
      // the waterfall's index: input position -> its stage events, results; batches once
      stageEvents: 0,
      bySource: new Map(),
      dom: null,
      ...fields,
    };
    state.runs.unshift(run);
    for (const old of state.runs.splice(MAX_RUNS)) old.dom?.remove();
    return run;
  }

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
    const trace = $("#trace").checked;
    const asJob = $("#as-job").checked;
    const run = newRun({ pipeline: state.current.name, mode, inputs: parsed.items.length, trace });
    const controller = new AbortController();
    state.controller = controller;
    setRunning(true);
    scheduleRender();
    const body = JSON.stringify({ items: parsed.items, mode, trace });
    try {
      if (asJob) {
        const response = await fetch(`${API_BASE}pipelines/${encodeURIComponent(run.pipeline)}/jobs`, {
          method: "POST",
          headers: requestHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
          body,
          signal: controller.signal,
        });
        if (!response.ok) return reject(run, response);
        run.jobId = (await response.json()).job_id;
        setJobInUrl(run.jobId);
        persistJob(run);
        loadJobs();
        await followJob(run, controller);
      } else {
        setJobInUrl(null);
        const response = await fetch(`${API_BASE}pipelines/${encodeURIComponent(run.pipeline)}/stream`, {
          method: "POST",
          headers: requestHeaders({ "Content-Type": "application/json", Accept: "application/x-ndjson" }),
          body,
          signal: controller.signal,
        });
        if (!response.ok) return reject(run, response);
        await readEvents(response.body, (ev) => receive(run, ev));
        if (run.status === "running") interrupted(run, "The stream ended before the run's end event.");
      }
    } catch (error) {
      if (error.name === "AbortError") {
        run.status = "stopped";
        run.message = run.jobId
          ? "Stopped following from the page: the job goes on (Cancel job stops it)."
          : "Stopped from the page: the service cancels the run.";
      } else {
        interrupted(run, error.message);
      }
    } finally {
      finishRun(run, controller);
    }
  }

  async function reject(run, response) {
    run.status = "rejected";
    run.message = await describeFailure(response);
    showRequestError(run.message);
  }

  function interrupted(run, message) {
    run.status = "interrupted";
    run.message = message;
  }

  function finishRun(run, controller) {
    run.elapsedMs = run.elapsedMs || performance.now() - run.t0;
    if (state.controller === controller) {
      state.controller = null;
      setRunning(false);
    }
    if (run.jobId) loadJobs();
    scheduleRender();
  }

  // A job's events from the service's log: after the last seq this page has (Last-Event-ID),
  // reconnecting when the stream breaks, so that no event is missed or shown twice.
  async function followJob(run, controller) {
    let failures = 0;
    while (run.status === "running" && !controller.signal.aborted) {
      const headers = requestHeaders({ Accept: "application/x-ndjson" });
      if (run.lastSeq >= 0) headers["Last-Event-ID"] = String(run.lastSeq);
      let response;
      try {
        response = await fetch(`${API_BASE}jobs/${encodeURIComponent(run.jobId)}/events`, {
          headers,
          signal: controller.signal,
        });
        if (!response.ok) return reject(run, response);
        const before = run.lastSeq;
        await readEvents(response.body, (ev) => {
          if (ev.seq > run.lastSeq) receive(run, ev); // never twice
        });
        if (run.lastSeq > before) failures = 0;
      } catch (error) {
        if (error.name === "AbortError") throw error;
      }
      if (run.status !== "running") break;
      if (++failures > JOB_RETRIES) return interrupted(run, "The job's stream broke; reload to rejoin it.");
      await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** failures, 3000)));
    }
  }

  // Opening a job: from the URL (a reload, another browser) or the jobs panel. Events this
  // page kept for it are shown at once, the rest follow after them.
  async function openJob(jobId) {
    if (state.controller) state.controller.abort();
    let response;
    try {
      response = await fetch(`${API_BASE}jobs/${encodeURIComponent(jobId)}`, {
        headers: requestHeaders({ Accept: "application/json" }),
      });
    } catch (error) {
      return showRequestError(`Service unreachable: ${error.message}`);
    }
    if (!response.ok) {
      showRequestError(await describeFailure(response));
      if (response.status === 404) setJobInUrl(null);
      return;
    }
    const job = await response.json();
    $("#as-job").checked = true; // the next run is a job too, unless unticked
    if (state.pipelines.some((p) => p.name === job.pipeline)) selectPipeline(job.pipeline);
    const run = newRun({ pipeline: job.pipeline, mode: job.mode, inputs: job.items, jobId });
    restoreJob(run);
    setJobInUrl(jobId);
    const controller = new AbortController();
    state.controller = controller;
    setRunning(true);
    scheduleRender();
    try {
      await followJob(run, controller);
    } catch (error) {
      if (error.name === "AbortError") {
        run.status = "stopped";
        run.message = "Stopped following from the page: the job goes on.";
      } else interrupted(run, error.message);
    } finally {
      finishRun(run, controller);
    }
  }

  async function cancelJob() {
    const run = state.runs.find((r) => r.jobId && r.status === "running");
    if (!run) return;
    const response = await fetch(`${API_BASE}jobs/${encodeURIComponent(run.jobId)}`, {
      method: "DELETE",
      headers: requestHeaders({ Accept: "application/json" }),
    });
    if (!response.ok) showRequestError(await describeFailure(response));
  }

  function setJobInUrl(jobId) {
    const url = new URL(location.href);
    if (jobId) url.searchParams.set("job", jobId);
    else url.searchParams.delete("job");
    history.replaceState(null, "", url);
  }

  // What this page saw of a job, kept in sessionStorage so that a reload resumes after it;
  // up to PERSIST_MAX events (beyond, a reload replays the job from its start).
  function persistJob(run) {
    if (!run.jobId || run.persistOff) return;
    if (run.events.length > PERSIST_MAX) {
      run.persistOff = true;
      sessionStorage.removeItem(JOB_STORAGE + run.jobId);
      return;
    }
    try {
      const kept = { startedAt: run.startedAt.getTime(), trace: run.trace, events: run.events };
      sessionStorage.setItem(JOB_STORAGE + run.jobId, JSON.stringify(kept));
    } catch {
      run.persistOff = true; // storage full: a reload replays from the start
    }
  }

  function restoreJob(run) {
    let kept = null;
    try {
      kept = JSON.parse(sessionStorage.getItem(JOB_STORAGE + run.jobId) || "null");
    } catch {
      kept = null;
    }
    if (!kept || !Array.isArray(kept.events)) return;
    run.startedAt = new Date(kept.startedAt);
    run.t0 = performance.now() - (Date.now() - kept.startedAt);
    run.restored = kept.events.length;
    for (const event of kept.events) receive(run, event, event.t);
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

  function receive(run, event, at) {
    event.t = at ?? performance.now() - run.t0;
    run.events.push(event);
    run.lastSeq = event.seq;
    run.lastT = Math.max(run.lastT, event.t);
    switch (event.type) {
      case "stage":
        run.trace = true;
        run.stageEvents++;
        run.lastT = Math.max(run.lastT, event.ended_s * 1000);
        for (const source of event.sources) entryOf(run, source).stages.push(event);
        break;
      case "result":
        run.results++;
        if (run.firstResultMs === null) run.firstResultMs = event.t;
        for (const source of event.sources) entryOf(run, source).results.push(event);
        run.rows.push(event);
        break;
      case "item_error":
        run.itemErrors++;
        run.rows.push(event);
        break;
      case "error":
        run.message = `${event.stage ? `${event.stage}: ` : ""}${event.error}`;
        run.rows.push(event);
        break;
      case "end":
        run.status = event.status;
        run.stats = event.stats || {};
        run.elapsedMs = event.t;
        break;
    }
    if (run.jobId && at === undefined) {
      if (event.type === "end") persistJob(run);
      else if (!run.persistTimer) {
        run.persistTimer = setTimeout(() => {
          run.persistTimer = 0;
          persistJob(run);
        }, PERSIST_EVERY_MS);
      }
    }
    scheduleRender();
  }

  function entryOf(run, source) {
    let entry = run.bySource.get(source);
    if (!entry) run.bySource.set(source, (entry = { stages: [], results: [] }));
    return entry;
  }

  function setRunning(running) {
    $("#run").disabled = running;
    $("#stop").disabled = !running;
    $("#run").textContent = running ? "Running…" : "Run";
    const job = state.runs.find((r) => r.jobId && r.status === "running");
    $("#cancel-job").hidden = !(running && job);
  }

  // ---- Jobs panel ---------------------------------------------------------------------------

  async function loadJobs() {
    const status = $("#jobs-status");
    let response;
    try {
      response = await fetch(`${API_BASE}jobs?limit=${JOBS_SHOWN}`, {
        headers: requestHeaders({ Accept: "application/json" }),
      });
    } catch (error) {
      status.textContent = `Service unreachable: ${error.message}`;
      return;
    }
    if (!response.ok) {
      $("#job-list").replaceChildren();
      status.textContent = response.status === 401 ? "" : await describeFailure(response);
      return;
    }
    const { jobs } = await response.json();
    status.textContent = jobs.length ? "" : "No jobs yet: tick Run as job.";
    $("#job-list").replaceChildren(
      ...jobs.map((job) => {
        const button = el("button", { type: "button", className: "job-item" });
        Object.assign(button.dataset, { jobId: job.job_id, status: job.status, pipeline: job.pipeline });
        const created = new Date(job.created_at);
        button.append(
          el("span", { className: "job-item-name", textContent: job.pipeline }),
          el("span", { className: `badge status-${job.status}`, textContent: job.status }),
          el("span", {
            className: "job-item-meta",
            textContent: `${created.toLocaleTimeString()} · ${job.items} item${job.items === 1 ? "" : "s"} · ${job.job_id.slice(0, 8)}`,
          }),
        );
        button.title = `job ${job.job_id}`;
        button.addEventListener("click", () => openJob(job.job_id));
        return el("li", {}, button);
      }),
    );
  }

  // ---- Rendering ----------------------------------------------------------------------------
  // Each run's card is built once and updated; its timeline and waterfall draw only the rows
  // in view (plus a few), so a run of any size keeps the page's DOM small.

  function scheduleRender() {
    if (!state.frame) state.frame = requestAnimationFrame(renderRuns);
  }

  function renderRuns() {
    state.frame = 0;
    const container = $("#runs");
    $("#runs-empty").hidden = state.runs.length > 0;
    const now = performance.now();
    const scale = timeScale(
      Math.max(50, ...state.runs.map((run) => Math.max(run.status === "running" ? now - run.t0 : run.elapsedMs, run.lastT))),
    );
    state.runs.forEach((run, index) => {
      if (!run.dom) run.dom = buildRun(run);
      renderRun(run, index, scale, now);
    });
    const wanted = [$("#runs-empty"), ...state.runs.map((run) => run.dom)];
    if (wanted.some((node, i) => container.children[i] !== node) || container.children.length !== wanted.length) {
      container.replaceChildren(...wanted);
    }
    setRunning(Boolean(state.controller));
    if (state.runs.some((run) => run.status === "running")) scheduleRender();
  }

  function buildRun(run) {
    const article = $("#run-template").content.firstElementChild.cloneNode(true);
    for (const viewport of article.querySelectorAll(".viewport")) {
      viewport.addEventListener("scroll", () => {
        run.drawn = null;
        scheduleRender();
      });
    }
    article.addEventListener("mouseover", (e) => showEvent(run, e));
    article.addEventListener("mousemove", moveTooltip);
    article.addEventListener("mouseleave", hideTooltip);
    return article;
  }

  function renderRun(run, index, scale, now) {
    const article = run.dom;
    const { span } = scale;
    Object.assign(article.dataset, {
      runId: run.id,
      pipeline: run.pipeline,
      mode: run.mode,
      status: run.status,
      position: index === 0 ? "latest" : "previous",
      trace: run.trace ? "true" : "false",
    });
    if (run.jobId) article.dataset.jobId = run.jobId;
    $(".run-label", article).textContent = index === 0 ? "Latest" : "Previous";
    $(".run-title", article).textContent =
      `${run.pipeline} · ${run.mode === "ordered" ? "ordered" : "as completed"} · ${run.inputs} item${run.inputs === 1 ? "" : "s"}${run.jobId ? " · job" : ""}`;
    const badge = $(".status", article);
    badge.textContent = run.status;
    badge.className = `badge status status-${run.status}`;
    $(".run-meta", article).textContent =
      `started ${run.startedAt.toLocaleTimeString()}${run.jobId ? ` · job ${run.jobId.slice(0, 8)}` : ""}`;

    const drawn = run.drawn;
    const changed = !drawn || drawn.events !== run.events.length || drawn.span !== span;
    if (changed) {
      for (const axis of article.querySelectorAll(".axis")) axis.replaceChildren(...axisTicks(scale));
      const grid = $(".overlay .grid", article);
      grid.replaceChildren(...gridLines(scale));
      run.marker = el("div");
      grid.append(run.marker);
      const rows = run.rows;
      const viewport = $(".events-viewport", article);
      drawWindow(viewport, rows.length, ROW_H, (i) => eventRow(rows[i], span));
      const waterfall = $(".waterfall", article);
      waterfall.hidden = !run.trace;
      if (run.trace) drawWaterfall(run, waterfall, span);
      $(".summary", article).replaceChildren(...summaryFields(run));
      run.drawn = { events: run.events.length, span };
    }
    const marker = run.marker;
    marker.className = run.status === "running" ? "now" : "end-line";
    marker.style.left = pct(run.status === "running" ? now - run.t0 : run.elapsedMs, span);
    marker.title = run.status === "running" ? "now" : `${run.status} at ${Math.round(run.elapsedMs)} ms`;
  }

  // Rows [first, last) of `count` rows of `rowHeight` px: those in view and OVERSCAN around.
  function drawWindow(viewport, count, rowHeight, makeRow) {
    const height = viewport.clientHeight || rowHeight * 14;
    const first = Math.max(0, Math.floor(viewport.scrollTop / rowHeight) - OVERSCAN);
    const last = Math.min(count, Math.ceil((viewport.scrollTop + height) / rowHeight) + OVERSCAN);
    $(".spacer", viewport).style.height = `${count * rowHeight}px`;
    const list = viewport.children[1];
    list.style.transform = `translateY(${first * rowHeight}px)`;
    const rows = [];
    for (let i = first; i < last; i++) rows.push(makeRow(i));
    list.replaceChildren(...rows);
    return [first, last];
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

    row.append(
      el("span", { className: "seq", textContent: `#${event.seq}` }),
      el("span", { className: "time", textContent: `${Math.round(event.t)} ms` }),
      track,
      el("span", { className: "sources" }, ...sourceChips(event.sources)),
      value,
    );
    return row;
  }

  // The waterfall: a row per input item with its calls (queued, then running; each attempt
  // a segment), a batch as one bar across its members' rows, the results' arrival marked.
  function drawWaterfall(run, section, span) {
    let count = run.inputs || 0;
    for (const source of run.bySource.keys()) count = Math.max(count, source + 1);
    const stageIndex = new Map(
      (state.pipelines.find((p) => p.name === run.pipeline)?.stages || []).map((s, i) => [s.name, i]),
    );
    const batches = new Set();
    const viewport = $(".wf-viewport", section);
    const [first, last] = drawWindow(viewport, count, WF_ROW_H, (i) => {
      const row = el("div", { className: "wf-row" });
      row.dataset.source = i;
      const track = el("div", { className: "wf-track" });
      const entry = run.bySource.get(i);
      let results = 0;
      if (entry) {
        for (const event of entry.stages) {
          if (event.kind === "batch") batches.add(event);
          else track.append(...callSegments(event, span, stageIndex));
        }
        for (const result of entry.results) {
          const mark = el("span", { className: "wf-result" });
          mark.style.left = pct(result.t, span);
          mark.dataset.seq = result.seq;
          track.append(mark);
        }
        results = entry.results.length;
      }
      row.dataset.results = results;
      row.append(
        el("span", { className: "wf-label", textContent: `#${i}` }),
        track,
        el("span", { className: "wf-count", textContent: results > 1 ? `×${results}` : "" }),
      );
      return row;
    });
    const layer = el("div", { className: "wf-batches" });
    for (const event of batches) {
      const members = event.sources.filter((s) => s >= first && s < last);
      const low = Math.min(...members);
      const high = Math.max(...members);
      const bar = el("div", { className: "wf-batch" }, ...callSegments(event, span, stageIndex));
      bar.style.top = `${(low - first) * WF_ROW_H + 2}px`;
      bar.style.height = `${(high - low + 1) * WF_ROW_H - 4}px`;
      bar.dataset.seq = event.seq;
      bar.dataset.sources = JSON.stringify(event.sources);
      layer.append(bar);
    }
    $(".wf-rows", section).append(layer);
  }

  function callSegments(event, span, stageIndex) {
    const queued = el("span", { className: "seg seg-queued" });
    queued.style.left = pct(event.queued_s * 1000, span);
    queued.style.width = pct((event.started_s - event.queued_s) * 1000, span);
    const running = el("span", {
      className: `seg seg-run outcome-${event.outcome} stage-${(stageIndex.get(event.stage) ?? 0) % 6}`,
    });
    running.style.left = pct(event.started_s * 1000, span);
    running.style.width = pct((event.ended_s - event.started_s) * 1000, span);
    for (const seg of [queued, running]) {
      Object.assign(seg.dataset, { seq: event.seq, stage: event.stage, attempt: event.attempt, outcome: event.outcome });
    }
    return [queued, running];
  }

  function showEvent(run, e) {
    const target = e.target.closest("[data-seq]");
    const event = target ? run.events[Number(target.dataset.seq)] : null;
    if (!event) return hideTooltip();
    const { t, ...fields } = event;
    const tooltip = $("#tooltip");
    tooltip.textContent = `${JSON.stringify(fields)}  (arrived at ${Math.round(t)} ms)`;
    tooltip.dataset.seq = event.seq;
    tooltip.hidden = false;
    moveTooltip(e);
  }

  function moveTooltip(e) {
    const tooltip = $("#tooltip");
    if (tooltip.hidden) return;
    tooltip.style.left = `${Math.min(e.clientX + 14, innerWidth - tooltip.offsetWidth - 8)}px`;
    tooltip.style.top = `${e.clientY + 16}px`;
  }

  function hideTooltip() {
    $("#tooltip").hidden = true;
  }

  function sourceChips(sources) {
    if (!sources || !sources.length) return [el("span", { className: "chip chip-none", textContent: "—" })];
    const shown = sources.length > 6 ? [...sources.slice(0, 5), `+${sources.length - 5}`] : sources;
    return shown.map((s) => el("span", { className: "chip", textContent: String(s) }));
  }

  function summaryFields(run) {
    const fields = [["status", run.status]];
    if (run.stats) {
      for (const key of ["inputs", "results", "skipped", "dropped"]) fields.push([key, run.stats[key]]);
      fields.push(["elapsed", `${Math.round((run.stats.elapsed_s ?? 0) * 1000)} ms`]);
    } else {
      fields.push(["results", run.results]);
    }
    fields.push(["first result", run.firstResultMs === null ? "—" : `${Math.round(run.firstResultMs)} ms`]);
    if (run.itemErrors) fields.push(["item errors", run.itemErrors]);
    if (run.trace) fields.push(["stage calls", run.stageEvents]);
    if (run.jobId) fields.push(["job", run.jobId]);
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
    $("#auth-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
      await loadPipelines();
      loadJobs();
    });
    $("#run-form").addEventListener("submit", startRun);
    $("#stop").addEventListener("click", () => state.controller?.abort());
    $("#cancel-job").addEventListener("click", cancelJob);
    $("#jobs-refresh").addEventListener("click", loadJobs);
    $("#as-job").addEventListener("change", () => {
      if (!$("#as-job").checked) setJobInUrl(null);
    });
    $("#reset-items").addEventListener("click", resetItems);
    $("#items").addEventListener("input", checkItems);
    $("#items").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#run-form").requestSubmit();
    });
    window.addEventListener("pagehide", () => state.runs.forEach(persistJob)); // a reload
    window.addEventListener("hashchange", () => selectPipeline(decodeURIComponent(location.hash.slice(1))));
    loadPipelines().then(() => {
      loadJobs();
      const jobId = new URL(location.href).searchParams.get("job");
      if (jobId) openJob(jobId); // a reload, or a shared link: rejoin the job
    });
  }

  // for the browser tests: the page's state
  window.conveyorPlayground = { state };

  init();
})();
