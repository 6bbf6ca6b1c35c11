// The owner's analytics page: totals, hourly or daily series, the retention curve, countries and
// quality of experience of one video, read from the analytics API with the signed-in user's token
// and drawn with uPlot (from node_modules, served by the API; no CDN).
//
// The page embeds its settings as JSON (#framelog-studio-config, written by api/studio.py from
// framelog.yaml); window.framelogAnalytics exposes what was read and drawn, for the browser tests.
import uPlot from './vendor/uplot.mjs';
import { analysisRows, chooseInterval, count, duration, percent, tiles } from './analytics-format.js';
import { viewerToken } from './viewer-token.js';

const COLORS = { views: '#4a8fe0', unique: '#f0a040', watch: '#50c080', retention: '#c070f0', startup: '#e0d050',
                 rebuffer: '#f06060' };

function say(text, isError = false) {
  const el = document.getElementById('status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

async function getJson(url, token) {
  const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    // the API's one error shape {"error": {"code", "message"}}; the older {"detail"} / {"error": "..."} too
    const why = answer.error?.message || answer.detail || answer.error || response.statusText;
    throw Object.assign(new Error(`${response.status}: ${typeof why === 'string' ? why : JSON.stringify(why)}`),
                        { status: response.status });
  }
  return answer;
}

function axis(values) {
  return { stroke: '#aab', grid: { stroke: '#2a2a2a', width: 1 }, ticks: { stroke: '#333' }, ...(values ? { values } : {}) };
}

function chart(el, opts, data) {
  el.replaceChildren();
  const width = Math.max(300, el.clientWidth || 460);
  return new uPlot({ width, height: 220, legend: { show: true }, cursor: { drag: { x: false, y: false } }, ...opts },
                   data, el);
}

function drawSeries(series, charts) {
  const x = series.time;
  const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
  charts.views = chart(document.getElementById('chart-views'), {
    series: [{}, { label: 'Views', stroke: COLORS.views, fill: 'rgba(74,143,224,.25)', width: 2 },
             { label: 'Unique viewers', stroke: COLORS.unique, width: 2 }],
    axes: [axis(), axis()],
  }, [x, series.views, series.unique_viewers]);
  charts.watch = chart(document.getElementById('chart-watch'), {
    series: [{}, { label: 'Watch time (min)', stroke: COLORS.watch, fill: 'rgba(80,192,128,.45)', paths: bars,
                   points: { show: false } }],
    axes: [axis(), axis()],
  }, [x, series.watch_time.map((s) => s / 60)]);
  charts.qoe = chart(document.getElementById('chart-qoe'), {
    series: [{}, { label: 'Startup (ms)', stroke: COLORS.startup, width: 2, scale: 'ms' },
             { label: 'Rebuffer (%)', stroke: COLORS.rebuffer, width: 2, scale: '%' }],
    axes: [axis(), { ...axis(), scale: 'ms' }, { ...axis(), scale: '%', side: 1, grid: { show: false } }],
  }, [x, series.average_startup_time_ms, series.rebuffer_ratio.map((r) => r * 100)]);
}

function drawRetention(retention, charts) {
  const x = retention.position.map((p) => p * 100);
  charts.retention = chart(document.getElementById('chart-retention'), {
    scales: { x: { time: false }, y: { range: [0, 100] } },
    series: [{ label: '% of the video', value: (_u, v) => (v == null ? '' : `${v.toFixed(0)} %`) },
             { label: 'Still watching', stroke: COLORS.retention, fill: 'rgba(192,112,240,.2)', width: 2,
               value: (_u, v) => (v == null ? '' : `${v.toFixed(1)} %`) }],
    axes: [axis((_u, ticks) => ticks.map((t) => `${t} %`)), axis((_u, ticks) => ticks.map((t) => `${t} %`))],
  }, [x, retention.retention.map((r) => r * 100)]);
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  if (!rows.length) {
    const cols = document.querySelectorAll(`#${id} thead th`).length || 2;
    body.innerHTML = `<tr><td class="empty" colspan="${cols}">No data in this range</td></tr>`;
    return;
  }
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    for (const cell of cells) {
      const td = document.createElement('td');
      if (cell && typeof cell === 'object' && 'bar' in cell) {
        td.className = 'meter';
        const span = document.createElement('span');
        span.style.width = `${Math.round(Math.max(0, Math.min(1, cell.bar)) * 100)}%`;
        td.append(span);
      } else {
        td.textContent = String(cell);
      }
      tr.append(td);
    }
    return tr;
  }));
}

function drawTotals(totals) {
  document.getElementById('kpis').replaceChildren(...tiles(totals).map(([label, value]) => {
    const tile = document.createElement('div');
    tile.className = 'tile';
    tile.innerHTML = '<div class="label"></div><div class="value"></div>';
    tile.querySelector('.label').textContent = label;
    tile.querySelector('.value').textContent = value;
    return tile;
  }));
  const geo = totals.geographic_distribution || [];
  const top = Math.max(1, ...geo.map((g) => g.views));
  fillTable('countries', geo.map((g) => [g.country || 'unknown', count(g.views), count(g.unique_viewers),
                                         duration(g.watch_time), { bar: g.views / top }]));
  const q = totals.qoe || {};
  const renditions = Object.entries(q.playing_time_per_rendition || {});
  const all = renditions.reduce((sum, [, s]) => sum + s, 0) || 1;
  fillTable('renditions', renditions.map(([name, s]) => [name, duration(s), percent(s / all), { bar: s / all }]));
  fillTable('qoe', [
    ['Average startup time', `${Math.round(q.average_startup_time_ms || 0)} ms`],
    ['Rebuffer ratio', percent(q.rebuffer_ratio, 2)],
    ['Rebuffers', `${count(q.rebuffer_count)} (${duration(q.rebuffer_seconds)})`],
    ['Playback failures', count(q.playback_failures)],
    ['Quality switches', `${count(q.quality_switches)} (${count(q.quality_switches_up)} up, `
                         + `${count(q.quality_switches_down)} down)`],
  ]);
}

/** The AI stage's results; a video not analysed yet (404, 409) says so instead. */
async function loadAnalysis(config, token, state) {
  try {
    state.analysis = await getJson(config.analysisPath, token);
    fillTable('analysis', analysisRows(state.analysis));
  } catch (err) {
    state.analysis = null;
    const body = document.querySelector('#analysis tbody');
    body.innerHTML = '<tr><td class="empty"></td></tr>';
    body.querySelector('td').textContent = err.status === 404 ? 'Not analysed yet (the video is still processing)'
      : `The analysis cannot be read: ${err.message}`;
  }
}

export async function load(config, state) {
  const token = viewerToken();
  const rangeSeconds = Number(document.getElementById('range').value);
  const wanted = document.getElementById('interval').value;
  const interval = chooseInterval(rangeSeconds, config.maxSeriesPoints, config.intervals, wanted);
  const to = Math.floor(Date.now() / 1000);
  const from = to - rangeSeconds;
  const range = `from=${from}&to=${to}`;
  state.ready = false;
  say('Loading…');
  try {
    const [totals, series, retention] = await Promise.all([
      getJson(`${config.analyticsPath}?${range}`, token),
      getJson(`${config.analyticsPath}/series?interval=${interval}&${range}`, token),
      getJson(`${config.analyticsPath}/retention?${range}`, token),
    ]);
    Object.assign(state, { totals, series, retention, interval, error: null });
    drawTotals(totals);
    drawSeries(series, state.charts);
    drawRetention(retention, state.charts);
    say(`${series.time.length} ${interval === '1d' ? 'days' : 'hours'} · ${retention.sessions} sessions with `
        + 'watch time · times in UTC');
    state.ready = true;
  } catch (err) {
    state.error = err.message;
    say(err.status === 401 ? `Sign in as the video's owner (open this page with #viewer_token=…): ${err.message}`
      : `The analytics cannot be read: ${err.message}`, true);
  }
  return state;
}

export function start(config) {
  const state = window.framelogAnalytics = { config, ready: false, error: null, charts: {} };
  const link = document.getElementById('player-link');
  link.href = config.playerPath;
  const range = document.getElementById('range');
  range.value = String([...range.options].map((o) => Number(o.value))
    .reduce((best, v) => (Math.abs(v - config.defaultTimeframeSeconds) < Math.abs(best - config.defaultTimeframeSeconds)
      ? v : best)));
  range.onchange = () => load(config, state);
  document.getElementById('interval').onchange = () => load(config, state);
  state.loaded = load(config, state);
  state.analysisLoaded = loadAnalysis(config, viewerToken(), state);
  return state;
}

const configElement = typeof document !== 'undefined' && document.getElementById('framelog-studio-config');
if (configElement) start(JSON.parse(configElement.textContent));
