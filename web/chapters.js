// Chapters in the player: the AI stage writes them as WebVTT (thumbnails/{id}/chapters.vtt,
// published with the video; GET /v1/stream signs its edge URL as chapters_url). The page
// fetches the file (the edges answer CORS), adds a "chapters" text track to the video (what
// a browser's own UI and assistive tools read) and lists the chapters beside the player:
// a click seeks to the chapter, the one playing is marked.

/** Seconds of a WebVTT timestamp ("01:02:03.500" or "02:03.500"); NaN when it is not one. */
export function vttSeconds(text) {
  const m = /^(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1] || 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

/** The cues of a WebVTT file as [{start, end, title}], in file order; anything unparsable is skipped. */
export function parseWebVtt(text) {
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  if (!/^WEBVTT/.test(lines[0] || '')) return [];
  const cues = [];
  for (let i = 1; i < lines.length; i++) {
    const arrow = lines[i].indexOf('-->');
    if (arrow < 0) continue;
    const start = vttSeconds(lines[i].slice(0, arrow));
    const end = vttSeconds(lines[i].slice(arrow + 3).trim().split(/\s+/)[0] || '');
    const body = [];
    while (i + 1 < lines.length && lines[i + 1].trim() !== '') body.push(lines[++i]);
    if (Number.isFinite(start) && Number.isFinite(end) && end > start) {
      cues.push({ start, end, title: body.join(' ').trim() || `Chapter ${cues.length + 1}` });
    }
  }
  return cues;
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hms = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const [h, m, sec] = hms.map((n) => String(n).padStart(2, '0'));
  return hms[0] ? `${h}:${m}:${sec}` : `${m}:${sec}`;
}

/** The index of the chapter holding ``time`` (-1 before the first). */
export function chapterAt(chapters, time) {
  let found = -1;
  chapters.forEach((c, i) => { if (time >= c.start) found = i; });
  return found;
}

/**
 * Fetch ``url``, add the chapters track to ``video`` and render the list into ``list`` (an <ol>).
 * Resolves to the chapters ([] when there are none or the file cannot be read: the player plays on).
 */
export async function showChapters(video, list, url, fetchImpl = globalThis.fetch?.bind(globalThis)) {
  if (!url || !fetchImpl) return [];
  let chapters;
  try {
    const response = await fetchImpl(url, { credentials: 'omit' });
    if (!response.ok) return [];
    chapters = parseWebVtt(await response.text());
  } catch {
    return [];
  }
  if (!chapters.length) return [];
  if (typeof video.addTextTrack === 'function' && typeof VTTCue === 'function') {
    const track = video.addTextTrack('chapters', 'Chapters', 'en');
    for (const c of chapters) track.addCue(new VTTCue(c.start, c.end, c.title));
    track.mode = 'hidden';                   // loaded and readable, never painted over the picture
  }
  list.replaceChildren(...chapters.map((c, i) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.index = String(i);
    button.innerHTML = '<span class="at"></span> <span class="name"></span>';
    button.querySelector('.at').textContent = clock(c.start);
    button.querySelector('.name').textContent = c.title;
    button.onclick = () => { video.currentTime = c.start; video.play().catch(() => {}); };
    item.append(button);
    return item;
  }));
  list.hidden = false;
  let current = -2;
  const mark = () => {
    const now = chapterAt(chapters, video.currentTime || 0);
    if (now === current) return;
    current = now;
    list.querySelectorAll('li').forEach((li, i) => li.classList.toggle('current', i === now));
  };
  video.addEventListener('timeupdate', mark);
  mark();
  return chapters;
}
