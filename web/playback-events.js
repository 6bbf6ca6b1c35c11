// Playback events to POST /v1/events, batched (api/events.py documents the
// JSON shape). Each event gets its event_id and client_time when it is
// tracked, so a resent batch is counted once by the sink. Batches go out every
// `flushMs` or as soon as `batchMax` events wait; when the page is hidden or
// left, whatever waits goes with navigator.sendBeacon, which outlives the page.
// Every batch carries the playback session the stream API issued (header
// X-Playback-Session; in the body for a beacon, which cannot set headers):
// the server believes the events only as far as the session says.

export function newId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID();
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class EventBatcher {
  /**
   * @param {object} opts
   * @param {string} opts.endpoint     e.g. /v1/events
   * @param {number} opts.flushMs      send at least this often
   * @param {number} opts.batchMax     send as soon as this many wait
   * @param {typeof fetch} [opts.fetch]
   * @param {(url: string, body: string) => boolean} [opts.beacon]
   * @param {(events: object[], status: number) => void} [opts.onSent]
   * @param {() => string|null} [opts.session]  the current playback session (it changes with each renewal)
   */
  constructor({ endpoint, flushMs, batchMax, fetch = globalThis.fetch?.bind(globalThis),
                beacon = (url, body) => globalThis.navigator?.sendBeacon?.(url, body) ?? false,
                onSent = () => {}, onDropped = () => {}, session = () => null }) {
    Object.assign(this, { endpoint, flushMs, batchMax, fetch, beacon, onSent, onDropped, session });
    this.queue = [];
    this.inFlight = null;
    this.timer = setInterval(() => this.flush(), flushMs);
  }

  track(event) {
    const full = { event_id: newId(), client_time: Date.now(), ...event };
    this.queue.push(full);
    if (this.queue.length >= this.batchMax) this.flush();
    return full;
  }

  /** Send what waits; resolves once the batch was answered (or requeued). */
  async flush() {
    if (this.inFlight || !this.queue.length) return this.inFlight;
    const batch = this.queue.splice(0, this.batchMax);
    this.inFlight = this._send(batch).finally(() => { this.inFlight = null; });
    return this.inFlight;
  }

  async _send(batch) {
    let response;
    const headers = { 'Content-Type': 'application/json' };
    const session = this.session();
    if (session) headers['X-Playback-Session'] = session;
    try {
      response = await this.fetch(this.endpoint, {
        method: 'POST', headers, body: JSON.stringify({ events: batch }), keepalive: true,
      });
    } catch {
      this.queue.unshift(...batch);            // network: the same events (same ids) next time
      return;
    }
    if (response.status === 202) {
      this.onSent(batch, response.status);
    } else if (response.status === 400 || response.status === 403) {
      // the server names the first bad event (400, or 403 for another video's): drop it, resend the rest;
      // every API refusal is {"error": {"code", "message", "event_index"?, "field"?}}
      const answer = (await response.json().catch(() => ({}))).error ?? {};
      const bad = Number.isInteger(answer.event_index) ? answer.event_index : -1;
      if (bad >= 0 && bad < batch.length) {
        this.onDropped([batch[bad]], answer.code || 'invalid');
        this.queue.unshift(...batch.filter((_, i) => i !== bad));
      } else {
        this.onDropped(batch, answer.code || 'invalid');
      }
    } else if (response.status >= 500 || response.status === 429 || response.status === 408) {
      this.queue.unshift(...batch);
    } else {
      this.onDropped(batch, `http_${response.status}`);
    }
  }

  /** The page is going away: everything that waits, by beacon (batches of batchMax). */
  beaconAll() {
    while (this.queue.length) {
      const batch = this.queue.slice(0, this.batchMax);
      const session = this.session();
      const body = session ? { session, events: batch } : { events: batch };
      if (!this.beacon(this.endpoint, JSON.stringify(body))) return false;
      this.queue.splice(0, batch.length);
      this.onSent(batch, 0);
    }
    return true;
  }

  close() {
    clearInterval(this.timer);
  }
}

/**
 * Turns the media element's and the player's happenings into the events of
 * PlaybackEvent (view_start with the startup time at the first frame -- unless
 * the stream API already recorded the session's start,
 * progress heartbeats with the watch time since the previous event, pause,
 * seek, rebuffer_start/end, ended, error) and QualitySwitch.
 */
export class PlaybackTracker {
  constructor({ batcher, media, videoId, sessionId, viewerId, heartbeatMs, device = 'web',
                rendition = () => null, now = () => Date.now(), sendViewStart = true }) {
    Object.assign(this, { batcher, media, videoId, sessionId, viewerId, heartbeatMs, device, rendition, now,
                          sendViewStart });
    this.requestedAt = now();     // the page asked to play: startup time counts from here
    this.started = false;
    this.playingSince = null;     // wall clock when the current stretch of playing began
    this.watched = 0;             // seconds watched since the previous event
    this.rebufferingSince = null;
    this.seeking = false;
    this.heartbeat = null;
    this._listen();
  }

  base(type, extra = {}) {
    const m = this.media;
    return {
      type, video_id: this.videoId, session_id: this.sessionId, viewer_id: this.viewerId,
      position_seconds: Math.max(0, m.currentTime || 0), watch_time_delta_seconds: this.takeWatched(),
      rendition: this.rendition(), device: this.device,
      duration_seconds: Number.isFinite(m.duration) ? m.duration : null, ...extra,
    };
  }

  track(type, extra) {
    return this.batcher.track(this.base(type, extra));
  }

  takeWatched() {
    if (this.playingSince !== null) {
      const t = this.now();
      this.watched += ((t - this.playingSince) / 1000) * (this.media.playbackRate || 1);
      this.playingSince = t;
    }
    const w = this.watched;
    this.watched = 0;
    return Math.max(0, w);
  }

  stopClock() {
    if (this.playingSince !== null) {
      this.watched += ((this.now() - this.playingSince) / 1000) * (this.media.playbackRate || 1);
      this.playingSince = null;
    }
  }

  qualitySwitch(change) {
    return this.batcher.track({
      type: 'quality_switch', video_id: this.videoId, session_id: this.sessionId, viewer_id: this.viewerId,
      from_quality: change.fromQuality, to_quality: change.toQuality, bandwidth: Math.round(change.bandwidth),
      buffer_level: Math.max(0, change.bufferLevel), reason: change.reason, client_time: change.timestamp,
    });
  }

  error(code) {
    this.stopClock();
    return this.track('error', { error_code: String(code).slice(0, 200) });
  }

  _listen() {
    const m = this.media;
    m.addEventListener('play', () => {
      if (!this.started && !this.playRequested) {    // startup counts from the play request (autoplay or a click)
        this.playRequested = true;
        this.requestedAt = this.now();
      }
    });
    m.addEventListener('playing', () => {
      if (!this.started) {
        this.started = true;
        this.startupMs = Math.max(0, Math.round(this.now() - this.requestedAt));
        // The stream API already recorded this session's view_start; then the startup
        // time rides on a first heartbeat (the rollups count startup_time_ms on any event).
        this.track(this.sendViewStart ? 'view_start' : 'progress', { startup_time_ms: this.startupMs });
        this.heartbeat = setInterval(() => { if (!m.paused) this.track('progress'); }, this.heartbeatMs);
      }
      if (this.rebufferingSince !== null) {
        const stalled = Math.round(this.now() - this.rebufferingSince);
        this.rebufferingSince = null;
        this.track('rebuffer_end', { rebuffer_duration_ms: Math.max(0, stalled) });
      }
      this.playingSince = this.now();
    });
    m.addEventListener('waiting', () => {
      this.stopClock();
      if (this.started && !this.seeking && !m.ended && this.rebufferingSince === null) {
        this.rebufferingSince = this.now();
        this.track('rebuffer_start');
      }
    });
    m.addEventListener('pause', () => {
      this.stopClock();
      if (this.started && !m.ended) this.track('pause');
    });
    m.addEventListener('seeking', () => {
      this.stopClock();
      this.seeking = true;
    });
    m.addEventListener('seeked', () => {
      this.seeking = false;
      if (this.started) this.track('seek');
      if (!m.paused) this.playingSince = this.now();
    });
    m.addEventListener('ended', () => {
      this.stopClock();
      this.track('ended');
      clearInterval(this.heartbeat);
    });
  }

  close() {
    clearInterval(this.heartbeat);
  }
}
