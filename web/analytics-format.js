// What the analytics page shows, as text: pure functions (web/test/analytics.test.js).

/** The series interval: the one asked for if its buckets over ``rangeSeconds`` stay within ``maxPoints``;
 *  'auto' (or one that does not fit): the finest that fits, hourly up to a week and coarser beyond. */
export function chooseInterval(rangeSeconds, maxPoints, intervals, wanted = 'auto') {
  const names = Object.keys(intervals).sort((a, b) => intervals[a] - intervals[b]);
  const fits = (name) => Math.ceil(rangeSeconds / intervals[name]) + 1 <= maxPoints;
  if (wanted !== 'auto' && intervals[wanted] && fits(wanted)) return wanted;
  const candidates = wanted === 'auto' && rangeSeconds > 7 * 86400 && names.length > 1 ? names.slice(1) : names;
  return candidates.find(fits) || names[names.length - 1];
}

export function duration(seconds) {
  const s = Math.round(Number(seconds) || 0);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export const percent = (ratio, digits = 1) => `${((Number(ratio) || 0) * 100).toFixed(digits)} %`;
export const count = (n) => (Number(n) || 0).toLocaleString('en-US');

/** The KPI tiles of the totals (GET /v1/videos/{id}/analytics). */
export function tiles(totals) {
  const q = totals.qoe || {};
  return [
    ['Views', count(totals.total_views)],
    ['Unique viewers', count(totals.unique_viewers)],
    ['Watch time', duration(totals.total_watch_time)],
    ['Average watch time', duration(totals.average_watch_time)],
    ['Completion rate', percent(totals.completion_rate)],
    ['Engagement rate', percent(totals.engagement_rate)],
    ['Likes', count(totals.likes)],
    ['Shares', count(totals.shares)],
    ['Startup time', `${Math.round(q.average_startup_time_ms || 0)} ms`],
    ['Rebuffer ratio', percent(q.rebuffer_ratio, 2)],
  ];
}


const span = (s) => `${clockOf(s.start)}–${clockOf(s.end)}`;

function clockOf(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Rows (label, text) of the AI stage's analysis (GET /v1/videos/{id}/analysis): what a creator checks
 *  before publishing (a black stretch, a silent gap, loudness far from the -14..-16 LUFS platforms use). */
export function analysisRows(a) {
  const l = a.loudness || {};
  const list = (items) => (items.length ? items.slice(0, 8).map(span).join(', ')
    + (items.length > 8 ? ` and ${items.length - 8} more` : '') : 'none');
  return [
    ['Chapters', `${(a.chapters || []).length}` + ((a.chapters || []).length
      ? ` (${a.chapters.map((c) => `${c.title} at ${clockOf(c.start)}`).slice(0, 6).join(', ')})` : '')],
    ['Scene changes', String((a.scene_changes || []).length)],
    ['Black stretches', list(a.black_segments || [])],
    ['Silent stretches', list(a.silence_segments || [])],
    ['Integrated loudness', l.integrated_lufs == null ? 'no audio above the gate' : `${l.integrated_lufs.toFixed(1)} LUFS`],
    ['Loudness range', l.loudness_range_lu == null ? '–' : `${l.loudness_range_lu.toFixed(1)} LU`],
    ['True peak', l.true_peak_dbfs == null ? '–' : `${l.true_peak_dbfs.toFixed(1)} dBFS`],
  ];
}
