// The player's ABR controller against the Python reference (processors/abr.py):
// the settings and input/expected cases come from framelog's configuration
// through Python, so no threshold is written here either.
//   node --test web/test/        (FRAMELOG_PYTHON picks the interpreter; default .venv/bin/python)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AdaptiveBitrateController, AUTO, REASON, averageBandwidth, fittingQuality, lowerQuality, selectQuality,
} from '../abr.js';
import { reference } from '../test-helpers/reference.js';

const { settings, cases } = reference();
const ladder = settings.qualityLevels;
const asc = [...ladder].sort((a, b) => a.bandwidth - b.bandwidth);
const top = asc[asc.length - 1];
const low = settings.lowBufferSeconds;
const ok = low + 1;

test('every reference case of the Python controller gives the same quality', () => {
  assert.ok(cases.length > 10);
  for (const c of cases) {
    assert.equal(selectQuality(c.bandwidth, c.bufferLevel, c.current, settings, ladder), c.expected,
                 JSON.stringify(c));
  }
});

test('average covers only the last bandwidthHistory samples, 0 without any', () => {
  assert.equal(averageBandwidth([], settings), 0);
  const old = Array(settings.bandwidthHistory).fill(0);
  const recent = Array(settings.bandwidthHistory).fill(1000);
  assert.equal(averageBandwidth([...old, ...recent], settings), 1000);
  const c = new AdaptiveBitrateController(settings, ladder);
  for (let i = 0; i < settings.bandwidthHistory + 5; i++) c.measure(i < 5 ? 1 : 500, ok, i);
  assert.equal(c.history.length, settings.bandwidthHistory);
  assert.equal(c.averageBandwidth(), 500);
});

test('switch threshold: a level fits when its bandwidth times the threshold is at most the average', () => {
  for (const level of asc) {
    const edge = level.bandwidth * settings.switchThreshold;
    assert.equal(fittingQuality(edge, settings, ladder).name, level.name);
    if (level !== asc[0]) assert.notEqual(fittingQuality(edge - 1, settings, ladder).name, level.name);
  }
  assert.equal(fittingQuality(0, settings, ladder).name, asc[0].name);
});

test('low buffer steps exactly one level down, never up, and not below the bottom', () => {
  const c = new AdaptiveBitrateController(settings, ladder, top.name);
  c.measure(top.bandwidth * 10, low - 1, 1);
  const s = c.adjust(low - 1, 2);
  assert.deepEqual([s.fromQuality, s.toQuality, s.reason], [top.name, asc[asc.length - 2].name, REASON.LOW_BUFFER]);
  assert.equal(lowerQuality(asc[0].name, ladder), null);
  const bottom = new AdaptiveBitrateController(settings, ladder, asc[0].name);
  bottom.measure(top.bandwidth * 10, 0, 1);
  assert.equal(bottom.adjust(0, 2), null);      // starving at the bottom: stay, do not climb
});

test('first choice is a startup switch from auto; later ones record the quality they left', () => {
  const c = new AdaptiveBitrateController(settings, ladder);
  const first = c.adjust(ok, 1);
  assert.deepEqual([first.fromQuality, first.toQuality, first.reason], [AUTO, asc[0].name, REASON.STARTUP]);
  c.measure(top.bandwidth, ok, 2);
  const up = c.adjust(ok, 3);
  assert.equal(up.fromQuality, asc[0].name);
  assert.equal(up.toQuality, top.name);
  assert.equal(up.reason, REASON.BANDWIDTH);
  assert.equal(up.bandwidth, top.bandwidth / 1);
  assert.equal(c.adjust(ok, 4), null);          // no change, no switch
});

test('a manual choice overrides adaptation until auto is chosen again', () => {
  const c = new AdaptiveBitrateController(settings, ladder, top.name);
  const m = c.setManual(asc[0].name, ok, 1);
  assert.equal(m.reason, REASON.MANUAL);
  c.measure(top.bandwidth * 10, 0, 2);
  assert.equal(c.adjust(0, 3), null);
  assert.equal(c.current, asc[0].name);
  c.setAuto();
  assert.equal(c.adjust(ok, 4).toQuality, top.name);
  assert.throws(() => c.setManual('8K', ok, 5), /unknown quality/);
});

test('the controller refuses settings without thresholds and empty ladders', () => {
  assert.throws(() => new AdaptiveBitrateController({}, ladder), /missing/);
  assert.throws(() => new AdaptiveBitrateController(settings, []), /no quality levels/);
  assert.throws(() => new AdaptiveBitrateController(settings, ladder).measure(-1, 0, 0), /bandwidth/);
});
