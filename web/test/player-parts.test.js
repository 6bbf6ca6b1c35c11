// The player's hls.js adapter, edge failover and event batching, each with a
// stand-in for what the browser provides (hls.js, XHR, fetch, sendBeacon).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { createAbrControllerClass, bufferAhead, levelName } from '../abr-hls.js';
import { EdgeRouter, baseOf } from '../edges.js';
import { EventBatcher, PlaybackTracker } from '../playback-events.js';
import { reference } from '../test-helpers/reference.js';

const Events = {
  MANIFEST_PARSED: 'manifestParsed', FRAG_LOADING: 'fragLoading', FRAG_LOADED: 'fragLoaded',
  FRAG_BUFFERED: 'fragBuffered', FRAG_LOAD_EMERGENCY_ABORTED: 'fragLoadEmergencyAborted', ERROR: 'error',
};
const { settings } = reference();
const LOW = settings.lowBufferSeconds;

function ranges(list) {
  return { length: list.length, start: (i) => list[i][0], end: (i) => list[i][1] };
}

class FakeHls {
  static Events = Events;
  constructor() {
    this.handlers = {};
    this.triggered = [];
    this.manualLevel = -1;
    this.media = { currentTime: 0, duration: 40, buffered: ranges([]) };
  }
  on(e, fn, ctx) { (this.handlers[e] ||= []).push(fn.bind(ctx)); }
  off(e) { delete this.handlers[e]; }
  emit(e, data) { for (const fn of this.handlers[e] || []) fn(e, data); }
  trigger(e, data) { this.triggered.push(e); this.emit(e, data); }
}

function frag(level, bytes, ms) {
  return { type: 'main', level, aborted: false, abortRequests() { this.aborted = true; },
           stats: { loaded: bytes, loading: { start: 1000, end: 1000 + ms } } };
}

const created = [];
after(() => created.forEach((abr) => abr.destroy()));   // their check timers would keep node alive

function setup(unavailable = []) {
  const switches = [];
  const Abr = createAbrControllerClass(FakeHls, settings,
                                       { onSwitch: (s, i) => switches.push({ ...s, index: i }), unavailable });
  const hls = new FakeHls();
  const abr = new Abr(hls);
  created.push(abr);
  // master order: 480p first, as framelog publishes it
  hls.emit(Events.MANIFEST_PARSED, { levels: [{ url: 'https://e/x/480p/playlist.m3u8', bitrate: 1_150_000, height: 480 },
                                              { url: 'https://e/x/360p/playlist.m3u8', bitrate: 640_000, height: 358 }] });
  return { hls, abr, switches };
}

test('levels are named by their playlist folder and bound to the ladder', () => {
  assert.equal(levelName({ url: 'https://edge/s/abc/hls/v/720p/playlist.m3u8?x=1' }), '720p');
  assert.equal(levelName({ url: 'https://edge/master', name: 'hi' }), 'hi');
  assert.equal(levelName({ url: 'https://edge/master', height: 240 }), '240p');
});

test('buffer ahead: seconds to the end of the range holding the playhead; Infinity at the end', () => {
  assert.equal(bufferAhead({ currentTime: 3, duration: 40, buffered: ranges([[0, 10]]) }), 7);
  assert.equal(bufferAhead({ currentTime: 12, duration: 40, buffered: ranges([[0, 10]]) }), 0);
  assert.equal(bufferAhead({ currentTime: 35, duration: 40, buffered: ranges([[0, 40]]) }), Infinity);
});

test('hls.js gets the lowest level first (startup), then the level the measured bandwidth fits', () => {
  const { hls, abr, switches } = setup();
  assert.equal(abr.firstAutoLevel, 1);
  assert.deepEqual([switches[0].fromQuality, switches[0].toQuality, switches[0].reason], ['auto', '360p', 'startup']);
  hls.media.buffered = ranges([[0, 10]]);
  const f = frag(1, 1_000_000, 1000);               // 8 Mbit/s: fits 480p
  hls.emit(Events.FRAG_LOADING, { frag: f });
  hls.emit(Events.FRAG_LOADED, { frag: f });
  assert.equal(switches.length, 1);                  // measured, not yet decided
  assert.equal(abr.nextAutoLevel, 0);                // hls.js asks for the next level: the sample decides it
  assert.deepEqual([switches[1].toQuality, switches[1].reason, switches[1].index], ['480p', 'bandwidth', 0]);
  assert.equal(switches[1].bandwidth, 8_000_000);
  hls.emit(Events.FRAG_BUFFERED, { frag: f });       // buffered after hls.js asked: decided again, no new switch
  assert.equal(switches.length, 2);
});

test('with the audio a rendition of its own, the buffer is the video\'s, as hls.js reads it', () => {
  const { hls, abr, switches } = setup();
  abr.firstAutoLevel;
  hls.media.buffered = ranges([]);                  // the audio is not appended yet: audio AND video is empty
  hls.mainForwardBufferInfo = { len: 10, end: 10 };  // the video SourceBuffer holds the first fragment
  const f = frag(1, 1_000_000, 1000);
  hls.emit(Events.FRAG_LOADED, { frag: f });
  hls.emit(Events.FRAG_BUFFERED, { frag: f });
  assert.deepEqual([switches.at(-1).toQuality, switches.at(-1).bufferLevel], ['480p', 10]);
  hls.mainForwardBufferInfo = { len: 30, end: 40 };  // the video is buffered to its end
  assert.equal(abr.bufferLevel(), Infinity);
});

test('the timer steps down on a low buffer and abandons the higher fragment in flight', () => {
  const { hls, abr, switches } = setup();
  abr.firstAutoLevel;
  hls.media.buffered = ranges([[0, 10]]);
  const first = frag(1, 1_000_000, 1000);
  hls.emit(Events.FRAG_LOADED, { frag: first });
  hls.emit(Events.FRAG_BUFFERED, { frag: first });
  assert.equal(switches.at(-1).toQuality, '480p');
  const slow = frag(0, 0, 1);
  hls.emit(Events.FRAG_LOADING, { frag: slow });
  hls.media.currentTime = 10 - (LOW - 3);            // LOW - 3 s ahead: under lowBufferSeconds
  abr.tick();
  assert.equal(switches.at(-1).reason, 'low_buffer');
  assert.equal(switches.at(-1).toQuality, '360p');
  assert.equal(switches.at(-1).bufferLevel, LOW - 3);
  assert.ok(slow.aborted);
  assert.equal(hls.nextLoadLevel, 1);
  assert.ok(hls.triggered.includes(Events.FRAG_LOAD_EMERGENCY_ABORTED));
  assert.equal(abr.nextAutoLevel, 1);
});

test("a level hls.js's error handling asks for holds until the controller decides again", () => {
  const { hls, abr } = setup();
  abr.firstAutoLevel;
  abr.nextAutoLevel = 0;
  assert.equal(abr.forcedAutoLevel, 0);
  assert.equal(abr.nextAutoLevel, 0);
  hls.media.buffered = ranges([[0, 10]]);
  abr.tick();
  assert.equal(abr.forcedAutoLevel, -1);
  assert.equal(abr.nextAutoLevel, 1);                // no sample yet: the lowest level again
});

test('a rendition the stream API calls unavailable is never chosen, not even by error handling', () => {
  const { hls, abr, switches } = setup(['360p']);     // the lowest one archived: start on 480p
  assert.deepEqual(abr.levels.map((l) => l.name), ['480p']);
  assert.equal(abr.firstAutoLevel, 0);
  assert.deepEqual([switches[0].toQuality, switches[0].index], ['480p', 0]);
  hls.media.buffered = ranges([[0, 1]]);
  hls.media.currentTime = 0.5;                        // a low buffer would step down: there is nowhere to go
  abr.tick();
  assert.equal(abr.nextAutoLevel, 0);
  abr.nextAutoLevel = 1;                              // hls.js's error handling cannot send it there either
  assert.equal(abr.forcedAutoLevel, -1);
  assert.equal(abr.nextAutoLevel, 0);
});

test('when the stream API marks every rendition unavailable the controller keeps them all', () => {
  const { abr } = setup(['360p', '480p']);
  assert.deepEqual(abr.levels.map((l) => l.name), ['480p', '360p']);
});

test('in manual mode hls.js is not steered; the menu choice is a manual switch', () => {
  const { hls, abr, switches } = setup();
  abr.firstAutoLevel;
  const m = abr.choose('480p');
  assert.equal(m.reason, 'manual');
  hls.manualLevel = 0;
  hls.media.buffered = ranges([[0, 1]]);
  abr.tick();
  assert.equal(switches.length, 1);                  // only the startup one was reported by the adapter
  assert.equal(abr.choose('auto'), null);
});

test('key requests carry the grant; after an edge failure the fallback serves the same paths', () => {
  const failovers = [];
  const r = new EdgeRouter({
    manifestUrl: 'http://127.0.0.1:1/s/sig1/hls/v1/master.m3u8',
    fallbackManifestUrl: 'http://127.0.0.1:2/s/sig2/hls/v1/master.m3u8',
    keyGrant: 'video=v1&exp=9&sig=abc', keyPath: '/v1/keys/', onFailover: (f) => failovers.push(f),
  });
  assert.equal(baseOf('http://h/a/b/master.m3u8?q=1'), 'http://h/a/b/');
  assert.equal(r.resolve('http://api/v1/keys/v1'), 'http://api/v1/keys/v1?video=v1&exp=9&sig=abc');
  const seg = 'http://127.0.0.1:1/s/sig1/hls/v1/480p/segment_00001.ts';
  assert.equal(r.resolve(seg), seg);
  assert.equal(r.failed(seg, 403), false);           // refused, not down: stay
  assert.equal(r.failed(seg, 0), true);
  assert.equal(r.resolve(seg), 'http://127.0.0.1:2/s/sig2/hls/v1/480p/segment_00001.ts');
  assert.equal(failovers.length, 1);
  const none = new EdgeRouter({ manifestUrl: 'http://a/x/m.m3u8' });
  assert.equal(none.failed('http://a/x/s.ts', 0), false);
});

function answer(status, body = {}) {
  return { status, json: async () => body };
}

test('batches: 202 sent, 503 kept with the same ids, 400 drops only the named event, beacon sends the rest', async () => {
  const replies = [answer(503), answer(400, { error: { code: 'invalid_field', message: 'event 1: bad', event_index: 1 } }), answer(202)];
  const bodies = [];
  const sent = [];
  const dropped = [];
  const beacons = [];
  const b = new EventBatcher({
    endpoint: '/v1/events', flushMs: 60_000, batchMax: 10,
    fetch: async (_url, init) => { bodies.push(JSON.parse(init.body).events); return replies.shift(); },
    beacon: (url, body) => { beacons.push(JSON.parse(body).events); return true; },
    onSent: (events) => sent.push(...events), onDropped: (events) => dropped.push(...events),
  });
  b.track({ type: 'view_start' });
  b.track({ type: 'progress', position_seconds: -1 });
  b.track({ type: 'pause' });
  await b.flush();                                    // 503: requeued
  await b.flush();                                    // 400 on event 1
  await b.flush();                                    // 202
  assert.deepEqual(bodies[0].map((e) => e.event_id), bodies[1].map((e) => e.event_id));
  assert.deepEqual(dropped.map((e) => e.type), ['progress']);
  assert.deepEqual(sent.map((e) => e.type), ['view_start', 'pause']);
  b.track({ type: 'ended' });
  assert.ok(b.beaconAll());
  assert.deepEqual(beacons[0].map((e) => e.type), ['ended']);
  assert.equal(b.queue.length, 0);
  b.close();
});

test('the key URI from the stream API decides what a key request is; a viewer-bound grant adds the token', () => {
  const r = new EdgeRouter({
    manifestUrl: 'http://edge/s/x/hls/v1/master.m3u8', keyUri: 'http://api/v1/keys/v1',
    keyGrant: 'video=v1&sig=s', keyToken: 'tok',
  });
  assert.ok(r.isKeyRequest('http://api/v1/keys/v1'));
  assert.ok(!r.isKeyRequest('http://api/v1/keys/v2'));
  assert.equal(r.resolve('http://api/v1/keys/v1?sig=already'), 'http://api/v1/keys/v1?sig=already');
  const opened = [];
  const headers = {};
  const xhr = { status: 200, addEventListener() {}, open: (m, u) => opened.push(u),
                setRequestHeader: (k, v) => { headers[k] = v; } };
  r.xhrSetup()(xhr, 'http://api/v1/keys/v1');
  assert.deepEqual(opened, ['http://api/v1/keys/v1?video=v1&sig=s']);
  assert.equal(headers.Authorization, 'Bearer tok');
  r.xhrSetup()(xhr, 'http://edge/s/x/hls/v1/360p/segment_00000.ts');
  assert.equal(Object.keys(headers).length, 1);
});

/** A tracker on a stand-in media element: its listeners, the media, what it tracked. */
function tracker(options) {
  const listeners = {};
  const media = { currentTime: 0, duration: 20, paused: false, ended: false, playbackRate: 1,
                  addEventListener: (type, fn) => { listeners[type] = fn; } };
  const tracked = [];
  const t = new PlaybackTracker({ batcher: { track: (e) => tracked.push(e) }, media, videoId: 'v', sessionId: 's',
                                  viewerId: 'u', heartbeatMs: 60_000, ...options });
  return { t, listeners, media, tracked };
}

test('the tracker: watch time between events, rebuffer with its duration, pause, seek, ended', () => {
  let clock = 1_000;
  const { t, listeners, media, tracked } = tracker({ now: () => clock, sendViewStart: true });
  listeners.play();
  clock += 400;
  listeners.playing();
  clock += 3_000; media.currentTime = 3;
  listeners.waiting();
  clock += 800;
  listeners.playing();
  clock += 2_000; media.currentTime = 5; media.paused = true;
  listeners.pause();
  listeners.seeking(); listeners.seeked();
  media.ended = true; listeners.ended();
  t.close();
  assert.deepEqual(tracked.map((e) => e.type), ['view_start', 'rebuffer_start', 'rebuffer_end', 'pause', 'seek', 'ended']);
  assert.equal(tracked[0].startup_time_ms, 400);
  assert.equal(tracked[1].watch_time_delta_seconds, 3);
  assert.equal(tracked[2].rebuffer_duration_ms, 800);
  assert.equal(tracked[3].watch_time_delta_seconds, 2);
  assert.equal(tracked[4].watch_time_delta_seconds, 0);
  assert.ok(tracked.every((e) => e.session_id === 's' && e.viewer_id === 'u' && e.video_id === 'v'));
});

test('no view_start from the player when the stream API already recorded the session start', () => {
  const { t, listeners, tracked } = tracker({ sendViewStart: false });
  listeners.playing();
  t.close();
  // the startup time still reaches the analytics, on a first heartbeat with no watch time
  assert.deepEqual(tracked.map((e) => [e.type, e.watch_time_delta_seconds, typeof e.startup_time_ms]),
                   [['progress', 0, 'number']]);
});

test('heartbeats: a progress event every heartbeatMs while playing, none while paused', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const { t: tr, listeners, media, tracked } = tracker({ sendViewStart: false, heartbeatMs: 20 });
  listeners.playing();
  t.mock.timers.tick(65);      // the first frame's heartbeat (startup time), then one every 20 ms
  assert.deepEqual(tracked.map((e) => e.type), ['progress', 'progress', 'progress', 'progress']);
  media.paused = true;
  listeners.pause();
  t.mock.timers.tick(100);
  assert.deepEqual(tracked.map((e) => e.type), ['progress', 'progress', 'progress', 'progress', 'pause']);
  tr.close();
});

test('a renewal moves every request under any issued base onto the new signed base, failover included', () => {
  const r = new EdgeRouter({
    manifestUrl: 'http://127.0.0.1:1/s/sig1/100/hls/v1/master.m3u8',
    fallbackManifestUrl: 'http://127.0.0.1:2/s/sig2/100/hls/v1/master.m3u8',
    keyGrant: 'video=v1&exp=100&sig=a', keyPath: '/v1/keys/',
  });
  const seg = 'http://127.0.0.1:1/s/sig1/100/hls/v1/480p/segment_00001.ts';   // what hls.js resolved at first
  r.renew({ manifestUrl: 'http://127.0.0.1:1/s/sig3/200/hls/v1/master.m3u8',
            fallbackManifestUrl: 'http://127.0.0.1:2/s/sig4/200/hls/v1/master.m3u8', keyGrant: 'video=v1&exp=200&sig=b' });
  assert.equal(r.resolve(seg), 'http://127.0.0.1:1/s/sig3/200/hls/v1/480p/segment_00001.ts');
  assert.equal(r.resolve('http://api/v1/keys/v1'), 'http://api/v1/keys/v1?video=v1&exp=200&sig=b');
  assert.equal(r.resolve('http://elsewhere/x.ts'), 'http://elsewhere/x.ts');
  assert.equal(r.failed(seg, 0), true);                 // an old primary URL failing still means the primary
  assert.equal(r.resolve(seg), 'http://127.0.0.1:2/s/sig4/200/hls/v1/480p/segment_00001.ts');
  r.renew({ manifestUrl: 'http://127.0.0.1:1/s/sig5/300/hls/v1/master.m3u8',
            fallbackManifestUrl: 'http://127.0.0.1:2/s/sig6/300/hls/v1/master.m3u8' });
  assert.equal(r.resolve(seg), 'http://127.0.0.1:2/s/sig6/300/hls/v1/480p/segment_00001.ts');
});

test('every batch carries the current playback session: a header for fetch, a body field for a beacon', async () => {
  let session = 's1';
  const headers = [];
  const beacons = [];
  const b = new EventBatcher({
    endpoint: '/v1/events', flushMs: 60_000, batchMax: 10, session: () => session,
    fetch: async (_url, init) => { headers.push(init.headers['X-Playback-Session']); return answer(202); },
    beacon: (_url, body) => { beacons.push(JSON.parse(body)); return true; },
  });
  b.track({ type: 'progress' });
  await b.flush();
  session = 's2';                                       // renewed
  b.track({ type: 'pause' });
  assert.ok(b.beaconAll());
  assert.deepEqual(headers, ['s1']);
  assert.equal(beacons[0].session, 's2');
  b.close();
});
