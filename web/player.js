// framelog's web player: asks the stream API for the video's edge URLs, plays
// them with hls.js driven by the seed's ABR controller, offers a manual
// quality menu and reports playback to the ingestion API.
//
// The edge URLs, the key grant and the playback session live minutes; the
// player renews them through the stream API (POST /v1/stream/renew) before
// they expire, and stops when a renewal is refused (a revoked share link, a
// video made private or deleted): what was issued then runs out at the edge.
//
// The page embeds its settings as JSON (#framelog-player-config, written by
// api/player.py from framelog.yaml); window.framelogPlayer exposes the state
// for the browser tests.
import Hls from './vendor/hls.mjs';
import { AUTO } from './abr.js';
import { createAbrControllerClass } from './abr-hls.js';
import { EdgeRouter } from './edges.js';
import { EventBatcher, PlaybackTracker, newId } from './playback-events.js';
import { showChapters } from './chapters.js';
import { viewerToken } from './viewer-token.js';

const VIEWER_KEY = 'framelog.viewer_id';
const LIKED_KEY = 'framelog.liked';          // videos this browser liked (one like per viewer and video)
const RENEW_RETRY_MS = 2_000;          // a renewal that failed for a network or server reason is tried again
const STREAM_REFUSALS = {
  401: 'Your sign-in is not valid any more',
  403: 'You do not have access to this video',
  404: 'This video does not exist or was deleted',
  409: 'This video is not ready to play yet',
};

/** What the page needs from GET /v1/stream's answer (api/stream.py). */
export function streamInfo(answer) {
  const analytics = answer.analytics || {};
  const encryption = answer.encryption || {};
  const fallback = answer.fallback?.manifest_url ?? null;
  return {
    manifestUrl: answer.manifest_url,
    fallbackManifestUrl: fallback && fallback !== answer.manifest_url ? fallback : null,
    keyUri: encryption.key_uri ?? null,
    keyGrant: encryption.grant ?? null,
    keyNeedsViewerToken: Boolean(encryption.grant_requires_viewer_token),
    qualities: (answer.qualities || []).map((q) => q.name),
    // listed in the master playlist but not playable now (archived, or being restored)
    unavailable: (answer.qualities || []).filter((q) => q.availability && q.availability !== 'available')
      .map((q) => q.name),
    posterUrl: answer.poster_url ?? null,
    chaptersUrl: answer.chapters_url ?? null,
    session: answer.session ?? null,              // sent with every event batch and each renewal
    renewUrl: answer.renewal?.url ?? null,
    renewAfterMs: answer.renewal ? Math.max(1_000, answer.renewal.after_seconds * 1000) : null,
    expiresAt: answer.expires_at ?? null,
    sessionId: analytics.session_id || answer.session_id || null,
    viewerId: analytics.viewer_id || null,
    eventsEndpoint: analytics.ingest_url || null,
    // the stream API already recorded this session's view_start: a second one would count the view twice
    streamStartRecorded: analytics.stream_start_recorded === true,
  };
}

function viewerId() {
  try {
    let id = localStorage.getItem(VIEWER_KEY);
    if (!id) localStorage.setItem(VIEWER_KEY, (id = `anon-${newId()}`));
    return id;
  } catch {
    return `anon-${newId()}`;
  }
}

function say(text, isError = false) {
  const el = document.getElementById('status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

async function fetchStream(config, token) {
  const query = new URLSearchParams(location.search);     // share=, quality=, country= pass through
  query.set('video_id', config.videoId);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(`${config.streamEndpoint}?${query}`, { headers, credentials: 'same-origin' });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const why = answer.error?.message || response.statusText;        // the API's one error shape
    throw Object.assign(new Error(`${response.status}: ${typeof why === 'string' ? why : JSON.stringify(why)}`),
                        { status: response.status });
  }
  return streamInfo(answer);
}

function buildMenu(menu, names, onChoose) {
  menu.replaceChildren();
  for (const name of [AUTO, ...names]) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name === AUTO ? 'Auto' : name;
    menu.append(option);
  }
  menu.value = AUTO;
  menu.disabled = false;
  menu.onchange = () => onChoose(menu.value);
}

export async function start(config) {
  const video = document.getElementById('video');
  const menu = document.getElementById('quality');
  const state = window.framelogPlayer = {
    config, ready: false, error: null, failover: null, quality: null, playing: null, manual: false,
    switches: [], sent: [], dropped: [], levels: [], loadedFragments: [],
  };
  const token = viewerToken();
  let info;
  try {
    info = await fetchStream(config, token);
  } catch (err) {
    state.error = err.message;
    const why = STREAM_REFUSALS[err.status];
    say(why ? `${why} (${err.message})` : `The video cannot be played: ${err.message}`, true);
    return state;
  }
  state.session = info.session;
  state.renewals = [];                      // each renewal's answer: status, and the new URLs when granted
  state.renewal = { stopped: false, status: null, reason: null };
  const batcher = new EventBatcher({
    endpoint: info.eventsEndpoint || config.eventsEndpoint, flushMs: config.eventFlushMs, batchMax: config.eventBatchMax,
    session: () => state.session,
    onSent: (events) => state.sent.push(...events), onDropped: (events, reason) => state.dropped.push({ events, reason }),
  });
  const tracker = new PlaybackTracker({
    batcher, media: video, videoId: config.videoId, sessionId: info.sessionId || newId(),
    viewerId: info.viewerId || viewerId(), heartbeatMs: config.heartbeatMs,
    rendition: () => state.playing || state.quality,
    sendViewStart: !info.streamStartRecorded,
  });
  state.sessionId = tracker.sessionId;
  state.viewerId = tracker.viewerId;
  state.flush = () => batcher.flush();
  state.batcherQueue = () => batcher.queue.slice();
  state.batcher = batcher;                  // for the console and the browser tests, like state.hls
  engagement(state, tracker, batcher, config.videoId);
  state.chapters = [];
  state.chaptersLoaded = showChapters(video, document.getElementById('chapters'), info.chaptersUrl)
    .then((chapters) => { state.chapters = chapters; return chapters; });

  const leave = () => { tracker.stopClock(); batcher.beaconAll(); };
  addEventListener('pagehide', leave);
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') leave(); });

  if (!Hls.isSupported()) {
    state.error = 'this browser has no Media Source Extensions';
    say(state.error, true);
    tracker.error('mse_unsupported');
    return state;
  }
  const edges = new EdgeRouter({
    manifestUrl: info.manifestUrl, fallbackManifestUrl: info.fallbackManifestUrl, keyGrant: info.keyGrant,
    keyUri: info.keyUri, keyPath: config.keyPath, keyToken: info.keyNeedsViewerToken ? token : null,
    onFailover: (failover) => {
      state.failover = failover;
      say('The primary edge failed; playing from the fallback edge');
    },
  });
  const report = (change) => {
    const auto = menu.querySelector(`option[value="${AUTO}"]`);
    if (auto) auto.textContent = `Auto (${change.toQuality})`;
    state.quality = change.toQuality;
    state.switches.push(change);
    tracker.qualitySwitch(change);
  };
  const hls = new Hls({
    abrController: createAbrControllerClass(Hls, config.abr, { onSwitch: report, unavailable: info.unavailable }),
    xhrSetup: edges.xhrSetup(),
    capLevelToPlayerSize: false,
  });
  state.hls = hls;
  state.edges = edges;
  state.info = info;
  if (info.posterUrl) video.poster = info.posterUrl;

  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    state.levels = hls.abrController.levels;         // the playable ones, as the controller knows them
    buildMenu(menu, [...state.levels].sort((a, b) => b.bandwidth - a.bandwidth).map((l) => l.name), (choice) => {
      const abr = hls.abrController;
      if (choice === AUTO) {
        state.manual = false;
        abr.choose(AUTO);
        hls.nextLevel = -1;
        return;
      }
      state.manual = true;
      const change = abr.choose(choice);
      if (change) report(change);
      hls.nextLevel = state.levels.find((l) => l.name === choice).index;
    });
    state.ready = true;
    say('');
    video.play().catch(() => say('Press play'));
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_e, { level }) => {     // the rendition now on screen
    state.playing = (state.levels.find((l) => l.index === level) || {}).name || null;
  });
  hls.on(Hls.Events.FRAG_LOADED, (_e, { frag, networkDetails }) => {
    // the URL actually fetched (the fallback edge's after a failover), not the playlist's
    const url = (networkDetails && networkDetails.responseURL) || frag.url;
    if (frag.type === 'main') state.loadedFragments.push({ level: frag.level, sn: frag.sn, url });
  });
  hls.on(Hls.Events.ERROR, (_e, data) => {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !state.mediaRecovered) {
      state.mediaRecovered = true;           // once: a decoder hiccup is worth one recovery
      hls.recoverMediaError();
      return;
    }
    state.error = data.details;
    tracker.error(data.details);
    say(`Playback failed: ${data.details}`, true);
    batcher.flush();
  });
  hls.attachMedia(video);
  hls.loadSource(info.manifestUrl);
  scheduleRenewal(state, info, token, { edges, hls, video, batcher });
  return state;
}

function likedVideos() {
  try {
    const list = JSON.parse(localStorage.getItem(LIKED_KEY) || '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

/** The like and share buttons: each click is a PlaybackEvent (like / share) sent at once; a viewer likes
 *  a video once (remembered in this browser), shares it as often as they like. */
function engagement(state, tracker, batcher, videoId) {
  const like = document.getElementById('like');
  const share = document.getElementById('share');
  state.engagement = { liked: likedVideos().includes(videoId), shares: 0 };
  const showLiked = () => {
    like.disabled = state.engagement.liked;
    like.setAttribute('aria-pressed', String(state.engagement.liked));
    like.textContent = state.engagement.liked ? '♥ Liked' : '♡ Like';
  };
  showLiked();
  like.onclick = () => {
    if (state.engagement.liked) return;
    state.engagement.liked = true;
    try {
      localStorage.setItem(LIKED_KEY, JSON.stringify([...likedVideos(), videoId].slice(-500)));
    } catch { /* private mode: the like still counts once for this page */ }
    showLiked();
    tracker.track('like');
    batcher.flush();
  };
  share.disabled = false;
  share.onclick = async () => {
    const url = location.href.split('#')[0];          // never the fragment: it may hold the viewer's token
    let copied = false;
    try {
      await navigator.clipboard.writeText(url);
      copied = true;
    } catch { /* no clipboard permission: show the link instead */ }
    state.engagement.shares += 1;
    tracker.track('share');
    batcher.flush();
    say(copied ? 'Link copied' : `Share this link: ${url}`);
  };
}

/** Renew the signed URLs, key grant and session before they expire; stop when the stream API refuses. */
function scheduleRenewal(state, info, token, { edges, hls, video, batcher }) {
  if (!info.renewUrl || !info.session) return;
  const later = (ms) => { state.renewTimer = setTimeout(renew, ms); };
  const renew = async () => {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(info.renewUrl, { method: 'POST', headers, body: JSON.stringify({ session: state.session }) });
    } catch {
      later(RENEW_RETRY_MS);                      // network: again soon, the current URLs still hold
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      const next = streamInfo(answer);
      edges.renew(next);
      state.session = next.session;
      Object.assign(state.info, { manifestUrl: next.manifestUrl, fallbackManifestUrl: next.fallbackManifestUrl,
                                  keyGrant: next.keyGrant, posterUrl: next.posterUrl, expiresAt: next.expiresAt });
      if (next.posterUrl) video.poster = next.posterUrl;
      state.renewals.push({ status: response.status, manifestUrl: next.manifestUrl, posterUrl: next.posterUrl,
                            expiresAt: next.expiresAt, at: Date.now() });
      later(next.renewAfterMs);
    } else if (response.status === 429 || response.status >= 500) {
      const retry = Number(response.headers.get('Retry-After'));
      later(Number.isFinite(retry) && retry > 0 ? retry * 1000 : RENEW_RETRY_MS);
    } else {                                      // refused: access was withdrawn; no more URLs, no more playback
      const reason = answer.error?.message || response.statusText;
      state.renewal = { stopped: true, status: response.status, reason };
      state.renewals.push({ status: response.status, reason, at: Date.now() });
      hls.stopLoad();
      video.pause();
      batcher.flush();
      say(`Playback stopped: ${reason}`, true);
    }
  };
  later(info.renewAfterMs);
}

const configElement = document.getElementById('framelog-player-config');
if (configElement) start(JSON.parse(configElement.textContent));
