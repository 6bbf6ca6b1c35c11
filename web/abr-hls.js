// Plugs the seed's AdaptiveBitrateController (abr.js) into hls.js as its
// `abrController` component, replacing hls.js's own estimator:
// * every loaded fragment is a bandwidth sample (bits / load time); the
//   controller adjusts on it (the seed's measure + adjust pair) when hls.js
//   next asks for a level or when the fragment is buffered, whichever comes
//   first: with the audio a rendition of its own, hls.js asks for the next
//   video fragment before it reports the last one buffered;
// * every `checkIntervalMs` (the seed's 5 s timer) the controller adjusts on
//   the buffer alone: when it steps down under a low buffer while a fragment
//   of a higher level is still loading, that request is abandoned the way
//   hls.js's own emergency switch does it, so the lower level loads instead;
// * hls.js asks `nextAutoLevel` for the level of each fragment it loads.
// A manual choice puts hls.js itself in manual mode (hls.nextLevel), so it
// never consults this component until the viewer returns to auto.
//
// `Hls` is passed in (not imported) so node --test can drive the class with
// a stand-in; `onSwitch(switch, levelIndex)` reports each switch for the
// quality_switch events. `unavailable` names renditions the stream API said
// cannot be played now (archived or being restored): the static master
// playlist still lists them, so the controller leaves them out and never
// sends hls.js there.
import { AdaptiveBitrateController, AUTO } from './abr.js';

const EPSILON_SECONDS = 0.25;   // buffered this close to the end counts as buffered to the end

/** Seconds buffered ahead of the playhead; Infinity when the rest of the video is buffered. */
export function bufferAhead(media) {
  if (!media) return 0;
  const t = media.currentTime;
  const ranges = media.buffered;
  for (let i = 0; i < ranges.length; i++) {
    if (ranges.start(i) <= t + EPSILON_SECONDS && t <= ranges.end(i) + EPSILON_SECONDS) {
      const end = ranges.end(i);
      if (Number.isFinite(media.duration) && end >= media.duration - EPSILON_SECONDS) return Infinity;
      return Math.max(0, end - t);
    }
  }
  return 0;
}

/** The quality name of an hls.js level: the folder of its playlist (720p/playlist.m3u8), else NAME, else height. */
export function levelName(level) {
  const url = Array.isArray(level.url) ? level.url[0] : level.url;
  const folder = /([^/?#]+)\/[^/?#]+\.m3u8(?:[?#]|$)/.exec(url || '');
  if (folder) return decodeURIComponent(folder[1]);
  if (level.name) return level.name;
  return `${level.height}p`;
}

/**
 * [{name, bandwidth, index}] for hls.js's levels. A name the configured ladder
 * knows takes the ladder's bandwidth (what the seed's rule compares);
 * otherwise the playlist's BANDWIDTH.
 */
export function controllerLevels(hlsLevels, ladder) {
  const byName = new Map(ladder.map((q) => [q.name, q.bandwidth]));
  return hlsLevels.map((level, index) => {
    const name = levelName(level);
    return { name, index, bandwidth: byName.get(name) ?? level.bitrate };
  });
}

/** The hls.js `abrController` class bound to the server's settings. */
export function createAbrControllerClass(Hls, settings,
                                        { onSwitch = () => {}, now = () => Date.now(), unavailable = [] } = {}) {
  const { Events } = Hls;
  const skip = new Set(unavailable);

  return class FramelogAbrController {
    constructor(hls) {
      this.hls = hls;
      this.controller = null;       // built when the manifest names the levels
      this.levels = [];
      this.loading = null;          // the fragment in flight, if any
      this.forced = -1;             // a level hls.js's error handling asked for, until the next decision
      this.undecided = false;       // a bandwidth sample came in since the last decision
      this.timer = null;
      this.bwEstimator = undefined;
      hls.on(Events.MANIFEST_PARSED, this.onManifestParsed, this);
      hls.on(Events.FRAG_LOADING, this.onFragLoading, this);
      hls.on(Events.FRAG_LOADED, this.onFragLoaded, this);
      hls.on(Events.FRAG_BUFFERED, this.onFragBuffered, this);
      hls.on(Events.FRAG_LOAD_EMERGENCY_ABORTED, this.onFragDone, this);
      hls.on(Events.ERROR, this.onError, this);
    }

    // ---------------------------------------------------------------- hls.js events

    onManifestParsed(_event, data) {
      const all = controllerLevels(data.levels, settings.qualityLevels);
      const playable = all.filter((l) => !skip.has(l.name));
      this.levels = playable.length ? playable : all;     // none playable: the stream API answers 409 first
      this.controller = new AdaptiveBitrateController(settings, this.levels);
      this.forced = -1;
      clearInterval(this.timer);
      this.timer = setInterval(() => this.tick(), settings.checkIntervalMs);
    }

    onFragLoading(_event, data) {
      if (data.frag && data.frag.type === 'main') this.loading = data.frag;
    }

    onFragDone() {
      this.loading = null;
    }

    onFragLoaded(_event, data) {
      const { frag } = data;
      if (!frag || frag.type !== 'main' || !this.controller) return;
      if (this.loading === frag) this.loading = null;
      const stats = data.part ? data.part.stats : frag.stats;
      const ms = stats.loading.end - stats.loading.start;
      if (stats.loaded > 0 && ms > 0) {
        this.controller.measure((stats.loaded * 8 * 1000) / ms, this.bufferLevel(), now());
        this.undecided = true;
      }
    }

    onFragBuffered(_event, data) {
      if (data.frag && data.frag.type === 'main') this.decide();
    }

    onError(_event, data) {
      if (data.frag && data.frag === this.loading && data.fatal !== false) this.loading = null;
    }

    // ---------------------------------------------------------------- decisions

    /** Seconds of the main (video) buffer ahead, as hls.js's own estimator reads it: with the audio as a
     *  rendition of its own, the media element's buffered ranges are audio AND video, and the audio is
     *  appended only after the video's first fragment, so they would read 0 right when the first
     *  decision is due and keep the lowest level for a whole fragment too long. */
    bufferLevel() {
      const media = this.hls.media;
      const info = this.hls.mainForwardBufferInfo;
      if (!media || !info) return bufferAhead(media);
      if (info.len > 0 && Number.isFinite(media.duration) && info.end >= media.duration - EPSILON_SECONDS) {
        return Infinity;
      }
      return info.len;
    }

    /** An adjust; reports a switch and returns it. */
    decide() {
      if (!this.controller || this.hls.manualLevel !== -1) return null;
      this.undecided = false;
      const buffer = this.bufferLevel();
      const change = this.controller.adjust(buffer, now());
      this.forced = -1;            // an error's level hint lasts until the controller decides again
      if (change) {
        change.bufferLevel = Number.isFinite(buffer) ? buffer : this.finiteBuffer();
        onSwitch(change, this.indexOf(change.toQuality));
      }
      return change;
    }

    /** The seed's timer: adjust on the buffer, and abandon a higher fragment after a step down. */
    tick() {
      const change = this.decide();
      const frag = this.loading;
      if (!change || !frag || !this.hls) return;
      const target = this.indexOf(change.toQuality);
      const loadingLevel = this.levels.find((l) => l.index === frag.level);
      const targetLevel = this.levels.find((l) => l.index === target);
      if (!loadingLevel || !targetLevel || targetLevel.bandwidth >= loadingLevel.bandwidth) return;
      frag.abortRequests();
      this.loading = null;
      this.hls.nextLoadLevel = target;
      this.hls.trigger(Events.FRAG_LOAD_EMERGENCY_ABORTED, { frag, part: null, stats: frag.stats });
    }

    finiteBuffer() {
      const media = this.hls.media;
      if (!media || !media.buffered.length) return 0;
      return Math.max(0, media.buffered.end(media.buffered.length - 1) - media.currentTime);
    }

    indexOf(name) {
      const level = this.levels.find((l) => l.name === name);
      return level ? level.index : -1;
    }

    /** Manual choice from the quality menu (a name), or AUTO; the switch made, if any. */
    choose(quality) {
      if (!this.controller) return null;
      if (quality === AUTO) {
        this.controller.setAuto();
        return null;
      }
      const buffer = this.bufferLevel();
      const change = this.controller.setManual(quality, buffer, now());
      if (change) change.bufferLevel = Number.isFinite(buffer) ? buffer : this.finiteBuffer();
      return change;
    }

    // ---------------------------------------------------------------- hls.js AbrComponentAPI

    get firstAutoLevel() {
      if (!this.controller) return -1;
      if (this.controller.current === null) this.decide();
      return this.indexOf(this.controller.current);
    }

    get forcedAutoLevel() {
      return this.forced;
    }

    get nextAutoLevel() {
      if (this.forced !== -1) return this.forced;
      if (!this.controller) return -1;
      if (this.controller.current === null || this.undecided) this.decide();
      return this.indexOf(this.controller.current);
    }

    set nextAutoLevel(index) {
      // hls.js's error handling moves away from a failing level this way (never onto one left out)
      this.forced = Number.isInteger(index) && this.levels.some((l) => l.index === index) ? index : -1;
    }

    resetEstimator() {}

    destroy() {
      clearInterval(this.timer);
      const hls = this.hls;
      if (hls) {
        hls.off(Events.MANIFEST_PARSED, this.onManifestParsed, this);
        hls.off(Events.FRAG_LOADING, this.onFragLoading, this);
        hls.off(Events.FRAG_LOADED, this.onFragLoaded, this);
        hls.off(Events.FRAG_BUFFERED, this.onFragBuffered, this);
        hls.off(Events.FRAG_LOAD_EMERGENCY_ABORTED, this.onFragDone, this);
        hls.off(Events.ERROR, this.onError, this);
      }
      this.hls = this.controller = this.loading = null;
    }
  };
}
