// The creator upload page: Uppy's Dashboard and its tus plugin against framelog's tus 1.0.0 endpoint,
// bundled by esbuild (scripts/build_web.mjs) into web/dist/, served by the API (api/upload_page.py), no CDN.
// The token comes from the field, or once from the URL fragment (#token=...: never sent to a server).
// After an upload, the video's status (GET /videos/{id}) is polled and shown until it is ready or failed.
// window.framelogUpload exposes the Uppy instance and what the page saw, for the browser tests.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'

const settings = JSON.parse(document.getElementById('framelog-upload-config').textContent)
const tokenField = document.getElementById('token')
const fragment = new URLSearchParams(location.hash.slice(1))
if (fragment.get('token')) {
  tokenField.value = fragment.get('token')
  history.replaceState(null, '', location.pathname + location.search)    // keep it out of the history
}
const bearer = () => ({ Authorization: `Bearer ${tokenField.value.trim()}` })
const state = { videos: {}, errors: [], requests: [] }    // requests: what the tus client asked and was told

const uppy = new Uppy({
  autoProceed: false,
  restrictions: { maxFileSize: settings.maxSize, allowedFileTypes: ['video/*', '.mp4', '.mov', '.mkv', '.webm'] },
})
  .use(Dashboard, { inline: true, target: '#dashboard', height: 380, showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false })
  .use(Tus, { endpoint: settings.endpoint, retryDelays: [0, 1000, 3000, 5000], removeFingerprintOnSuccess: true,
    headers: () => bearer(),
    onAfterResponse: (req, res) => {
      state.requests.push({ method: req.getMethod(), status: res.getStatus(),
        offset: req.getHeader('Upload-Offset') ?? null, serverOffset: res.getHeader('Upload-Offset') ?? null })
    } })

uppy.on('file-added', (file) => {
  const visibility = document.getElementById('visibility').value
  uppy.setFileMeta(file.id, { filename: file.name, filetype: file.type || 'video/mp4',
    ...(visibility ? { visibility } : {}) })
})
uppy.on('upload-error', (file, error) => state.errors.push(String(error)))
uppy.on('upload-success', (file, response) => {
  const videoId = new URL(response.uploadURL, location.href).pathname.split('/')[2]
  state.videos[videoId] = { name: file.name, state: 'uploaded' }
  render()
  follow(videoId)
})

async function follow(videoId) {
  while (true) {
    try {
      const r = await fetch(`${settings.statusPath}${videoId}`, { headers: bearer(), cache: 'no-store' })
      if (r.ok) {
        const v = await r.json()
        state.videos[videoId].state = v.state
        state.videos[videoId].stage = v.current_stage
        render()
        if (v.state === 'ready' || v.state === 'failed') return
      }
    } catch (e) { /* the network comes back: poll again */ }
    await new Promise((ok) => setTimeout(ok, settings.statusPollMs))
  }
}

function render() {
  const list = document.getElementById('videos')
  list.replaceChildren(...Object.entries(state.videos).map(([id, v]) => {
    const li = document.createElement('li')
    li.dataset.videoId = id
    const s = document.createElement('span')
    s.className = 'state'
    s.textContent = v.state + (v.stage ? ` (${v.stage})` : '')
    li.append(`${v.name}: `, s, ` · ${id}`)
    return li
  }))
}

window.framelogUpload = { uppy, state }
