// The player's chapters (WebVTT parsing, the chapter at a time) and the analytics page's text.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { chapterAt, clock, parseWebVtt, vttSeconds } from '../chapters.js';
import { chooseInterval, duration, percent, tiles } from '../analytics-format.js';

test('WebVTT timestamps, with and without hours', () => {
  assert.equal(vttSeconds('00:01.500'), 1.5);
  assert.equal(vttSeconds('01:02:03.250'), 3723.25);
  assert.ok(Number.isNaN(vttSeconds('1.5')));
});

test('chapters as the analysis stage writes them (captions.webvtt), titles kept, junk skipped', () => {
  const vtt = 'WEBVTT\n\n1\n00:00:00.000 --> 00:00:06.000\nChapter 1\n\n2\n00:00:06.000 --> 00:00:12.480\n'
    + 'Chapter 2\n\n3\n00:00:12.480 --> 00:00:12.000\nbackwards\n\nnot a cue\n';
  assert.deepEqual(parseWebVtt(vtt), [{ start: 0, end: 6, title: 'Chapter 1' },
                                      { start: 6, end: 12.48, title: 'Chapter 2' }]);
  assert.deepEqual(parseWebVtt('<html>no</html>'), []);
  assert.deepEqual(parseWebVtt('WEBVTT\r\n\r\n00:01.000 --> 00:02.000 align:start\r\nIntro\r\n'),
                   [{ start: 1, end: 2, title: 'Intro' }]);
});

test('the chapter playing, and a clock for the list', () => {
  const chapters = [{ start: 0, end: 6 }, { start: 6, end: 12 }];
  assert.equal(chapterAt(chapters, 0), 0);
  assert.equal(chapterAt(chapters, 7.5), 1);
  assert.equal(chapterAt([{ start: 2, end: 3 }], 1), -1);
  assert.equal(clock(65), '01:05');
  assert.equal(clock(3725), '01:02:05');
});

test('the series interval: hourly up to a week, daily beyond, never past the bound', () => {
  const intervals = { '1h': 3600, '1d': 86400 };
  assert.equal(chooseInterval(86400, 2000, intervals), '1h');
  assert.equal(chooseInterval(30 * 86400, 2000, intervals), '1d');
  assert.equal(chooseInterval(30 * 86400, 2000, intervals, '1h'), '1h');     // 721 buckets fit
  assert.equal(chooseInterval(365 * 86400, 2000, intervals, '1h'), '1d');    // 8761 do not
  assert.equal(chooseInterval(3 * 86400, 24, intervals), '1d');
});

test('tiles show the totals the API answers', () => {
  const shown = Object.fromEntries(tiles({
    total_views: 1234, unique_viewers: 1000, total_watch_time: 3725, average_watch_time: 42.4,
    completion_rate: 0.5, engagement_rate: 0.125, likes: 100, shares: 54,
    qoe: { average_startup_time_ms: 412.6, rebuffer_ratio: 0.0123 },
  }));
  assert.equal(shown.Views, '1,234');
  assert.equal(shown['Watch time'], '1 h 2 min');
  assert.equal(shown['Engagement rate'], '12.5 %');
  assert.equal(shown['Startup time'], '413 ms');
  assert.equal(shown['Rebuffer ratio'], '1.23 %');
  assert.equal(duration(59), '59 s');
  assert.equal(percent(1), '100.0 %');
});

test('the analysis rows: chapters, stretches as m:ss, loudness with units, silence without audio', async () => {
  const { analysisRows } = await import('../analytics-format.js');
  const rows = Object.fromEntries(analysisRows({
    chapters: [{ title: 'Chapter 1', start: 0, end: 6 }, { title: 'Chapter 2', start: 6, end: 75 }],
    scene_changes: [6.0], black_segments: [{ start: 0, end: 1.5 }], silence_segments: [],
    loudness: { integrated_lufs: -23.04, loudness_range_lu: 4.2, true_peak_dbfs: -1.0 },
  }));
  assert.equal(rows.Chapters, '2 (Chapter 1 at 0:00, Chapter 2 at 0:06)');
  assert.equal(rows['Black stretches'], '0:00–0:02');
  assert.equal(rows['Silent stretches'], 'none');
  assert.equal(rows['Integrated loudness'], '-23.0 LUFS');
  assert.equal(analysisRows({ loudness: null })[4][1], 'no audio above the gate');
});
