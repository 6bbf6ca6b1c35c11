// The seed's AdaptiveBitrateController (§5.2) for the browser: the decision
// rule without any player, so node --test can replay the Python reference
// (framelog.processors.abr) case by case. Every threshold comes from the
// server's configuration (abr.*), handed to the page as `settings`; none is
// written here.
//
// The rule, as in processors/abr.py:
// * average the last `bandwidthHistory` bandwidth samples (0 if none);
// * under `lowBufferSeconds` buffered, step one level down from the current
//   quality (never up; an even lower level the bandwidth rule asks for is
//   taken at once);
// * otherwise the highest level whose bandwidth * `switchThreshold` fits the
//   average, else the lowest level;
// * a quality picked by hand is kept until the viewer returns to auto.
// A switch records the quality it left ("auto" and reason "startup" for the
// first choice), fixing the seed's from == to bug.

export const AUTO = 'auto';
export const REASON = Object.freeze({
  BANDWIDTH: 'bandwidth',
  LOW_BUFFER: 'low_buffer',
  MANUAL: 'manual',
  STARTUP: 'startup',
});

/** Levels sorted by ascending bandwidth (a copy). */
export function ascending(levels) {
  return [...levels].sort((a, b) => a.bandwidth - b.bandwidth);
}

/** Mean of the last `settings.bandwidthHistory` samples (numbers, bits/s); 0 when there are none. */
export function averageBandwidth(samples, settings) {
  const recent = samples.slice(-settings.bandwidthHistory);
  return recent.length ? recent.reduce((sum, bw) => sum + bw, 0) / recent.length : 0;
}

/** Highest level with bandwidth * switchThreshold <= `bandwidth`; else the lowest. */
export function fittingQuality(bandwidth, settings, levels) {
  const asc = ascending(levels);
  if (!asc.length) throw new Error('no quality levels to choose from');
  for (let i = asc.length - 1; i >= 0; i--) {
    if (asc[i].bandwidth * settings.switchThreshold <= bandwidth) return asc[i];
  }
  return asc[0];
}

/** The next level down from `current` (the seed's findLowerQuality), or null at the bottom. */
export function lowerQuality(current, levels) {
  const asc = ascending(levels);
  const i = asc.findIndex((level) => level.name === current);
  return i > 0 ? asc[i - 1] : null;
}

/** The seed's selectOptimalQuality with the reason of the choice: {quality, reason}. */
export function decideQuality(bandwidth, bufferLevel, current, settings, levels) {
  const fit = fittingQuality(bandwidth, settings, levels);
  const here = levels.find((level) => level.name === current);
  if (bufferLevel < settings.lowBufferSeconds && here) {
    let target = lowerQuality(current, levels) || here;
    if (fit.bandwidth < target.bandwidth) target = fit;
    return { quality: target.name, reason: REASON.LOW_BUFFER };
  }
  return { quality: fit.name, reason: REASON.BANDWIDTH };
}

export function selectQuality(bandwidth, bufferLevel, current, settings, levels) {
  return decideQuality(bandwidth, bufferLevel, current, settings, levels).quality;
}

/**
 * Feed it measurements, ask it to adjust; it returns the switch it made
 * ({fromQuality, toQuality, bandwidth, bufferLevel, reason, timestamp}) or null.
 * `levels`: [{name, bandwidth}] of the renditions this video actually has.
 */
export class AdaptiveBitrateController {
  constructor(settings, levels, current = null) {
    for (const key of ['bandwidthHistory', 'lowBufferSeconds', 'switchThreshold']) {
      if (typeof settings[key] !== 'number') throw new Error(`ABR setting ${key} is missing`);
    }
    this.settings = settings;
    this.levels = ascending(levels);
    if (!this.levels.length) throw new Error('no quality levels to choose from');
    this.current = current;
    this.manual = false;
    this.history = [];   // [{bandwidth, bufferLevel, timestamp}], the last bandwidthHistory
  }

  measure(bandwidth, bufferLevel, timestamp) {
    if (!(bandwidth >= 0)) throw new Error(`bandwidth must be >= 0, got ${bandwidth}`);
    this.history.push({ bandwidth, bufferLevel, timestamp });
    if (this.history.length > this.settings.bandwidthHistory) this.history.shift();
  }

  averageBandwidth() {
    return averageBandwidth(this.history.map((s) => s.bandwidth), this.settings);
  }

  _switch(to, bufferLevel, reason, timestamp) {
    const previous = this.current;      // read before it is overwritten (the seed's from == to bug)
    if (to === previous) return null;
    this.current = to;
    if (previous === null && reason !== REASON.MANUAL) reason = REASON.STARTUP;
    return {
      fromQuality: previous ?? AUTO, toQuality: to, bandwidth: this.averageBandwidth(),
      bufferLevel, reason, timestamp,
    };
  }

  /** One tick of the seed's adjustQuality. */
  adjust(bufferLevel, timestamp) {
    if (this.manual) return null;
    const d = decideQuality(this.averageBandwidth(), bufferLevel, this.current, this.settings, this.levels);
    return this._switch(d.quality, bufferLevel, d.reason, timestamp);
  }

  /** The viewer picked `quality`: switch to it and stop adapting. */
  setManual(quality, bufferLevel, timestamp) {
    if (!this.levels.some((level) => level.name === quality)) {
      throw new Error(`unknown quality ${quality}; available: ${this.levels.map((l) => l.name)}`);
    }
    this.manual = true;
    return this._switch(quality, bufferLevel, REASON.MANUAL, timestamp);
  }

  /** Back to automatic selection from the next adjust. */
  setAuto() {
    this.manual = false;
  }
}
